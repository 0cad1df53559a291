/* The libwebsockets client in the benchmark suite, for comparison with ferrows (bench.h). */
#include "bench.h"

#include <libwebsockets.h>

static struct bench_args args;
static struct bench_meter meter;
static unsigned char *payload; /* LWS_PRE bytes of headroom, then the payload */
static long to_send, outstanding;
static size_t received;
static int failed, finished;

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    (void)user;
    (void)in;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        to_send = args.inflight;
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (to_send > 0) {
            if (lws_write(wsi, payload + LWS_PRE, args.size, LWS_WRITE_BINARY) < (int)args.size) {
                failed = 1;
                return -1;
            }
            to_send--;
            outstanding++;
            if (to_send > 0) lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        received += len;
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            if (received != args.size) {
                fprintf(stderr, "lws_client: an echo of %zu bytes, sent %zu\n", received, args.size);
                failed = 1;
                return -1;
            }
            received = 0;
            outstanding--;
            if (bench_echoed(&meter)) {
                to_send++;
                lws_callback_on_writable(wsi);
            } else if (outstanding == 0 && to_send == 0) {
                finished = 1;
                return -1; /* close */
            }
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        failed = 1;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!finished) failed = 1;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback, 0, 256 * 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv) {
    struct lws_context_creation_info info;
    struct lws_client_connect_info connect;
    struct lws_context *context;
    double deadline;
    if (bench_client_args(argc, argv, &args) != 0) return 2;
    payload = bench_payload(args.size, LWS_PRE);
    if (payload == NULL) return 1;
    meter = bench_meter(args.warmup, args.seconds);
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    context = lws_create_context(&info);
    if (context == NULL) return 1;
    memset(&connect, 0, sizeof connect);
    connect.context = context;
    connect.address = "127.0.0.1";
    connect.port = args.port;
    connect.path = "/";
    connect.host = "127.0.0.1";
    connect.origin = "127.0.0.1";
    if (lws_client_connect_via_info(&connect) == NULL) return 1;
    deadline = bench_clock(CLOCK_MONOTONIC) + 60 + args.warmup + args.seconds;
    while (!finished && !failed && bench_clock(CLOCK_MONOTONIC) < deadline) lws_service(context, 0);
    lws_context_destroy(context);
    free(payload);
    if (failed || !finished) {
        fprintf(stderr, "lws_client: failed after %ld echoes\n", meter.count);
        return 1;
    }
    return bench_report(&meter);
}
