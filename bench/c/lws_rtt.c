/* Echo round trips per second with a libwebsockets client, for comparison with ferrows.
 * usage: lws_rtt HOST PORT SIZE ROUNDS   -> prints "<round trips per second>" */
#define _POSIX_C_SOURCE 200809L
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t size;
static long rounds, done;
static unsigned char *buffer; /* LWS_PRE bytes of headroom, then the payload */
static size_t received;
static double started, finished;
static int failed, writable_pending = 1;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    (void)user;
    (void)in;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        started = now();
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (writable_pending) {
            writable_pending = 0;
            if (lws_write(wsi, buffer + LWS_PRE, size, LWS_WRITE_BINARY) < (int)size) {
                failed = 1;
                return -1;
            }
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        received += len;
        if (lws_is_final_fragment(wsi) && received >= size) {
            received = 0;
            if (++done == rounds) {
                finished = now();
                return -1; /* close */
            }
            writable_pending = 1;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        failed = 1;
        finished = now();
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!finished) finished = now();
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback, 0, 1 << 20, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT SIZE ROUNDS\n", argv[0]);
        return 2;
    }
    size = (size_t)atol(argv[3]);
    rounds = atol(argv[4]);
    buffer = calloc(1, LWS_PRE + size + 1);
    memset(buffer + LWS_PRE, 'x', size);
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    struct lws_context *context = lws_create_context(&info);
    if (!context) return 1;
    struct lws_client_connect_info connect;
    memset(&connect, 0, sizeof connect);
    connect.context = context;
    connect.address = argv[1];
    connect.port = atoi(argv[2]);
    connect.path = "/";
    connect.host = argv[1];
    connect.origin = argv[1];
    connect.protocol = NULL;
    if (!lws_client_connect_via_info(&connect)) return 1;
    double deadline = now() + 120;
    while (!finished && !failed && now() < deadline) lws_service(context, 0);
    lws_context_destroy(context);
    if (failed || done != rounds) {
        fprintf(stderr, "libwebsockets client failed after %ld round trips\n", done);
        return 1;
    }
    printf("%.0f\n", (double)rounds / (finished - started));
    free(buffer);
    return 0;
}
