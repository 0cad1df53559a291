/* The ferrows C client (blocking calls) in the benchmark suite: see bench.h. */
#include "ferrows_bench.h"

static int fail(const char *what, ferrows_result result) {
    return bench_ferrows_fail("ferrows_client", what, result);
}

int main(int argc, char **argv) {
    struct bench_args args;
    char url[64];
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_result result;
    unsigned char *payload;
    struct bench_meter meter;
    long outstanding;
    if (bench_client_args(argc, argv, &args) != 0) return 2;
    payload = bench_payload(args.size, 0);
    if (payload == NULL) return 1;
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", args.port);
    if ((result = ferrows_config_new(&config)) != FERROWS_OK) return fail("config", result);
    ferrows_config_set_keepalive_ms(config, 0, 0);
    ferrows_config_set_max_message_size(config, 0);
    result = ferrows_connect_blocking(config, url, 10000, NULL, &conn);
    if (result != FERROWS_OK) return fail("connect", result);
    meter = bench_meter(args.warmup, args.seconds);
    for (outstanding = 0; outstanding < args.inflight; outstanding++) {
        result = ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, payload, args.size, 10000);
        if (result != FERROWS_OK) return fail("send", result);
    }
    while (outstanding > 0) {
        ferrows_event *event = NULL;
        size_t length = 0;
        result = ferrows_conn_recv(conn, 10000, &event);
        if (result != FERROWS_OK) return fail("recv", result);
        ferrows_event_data(event, &length);
        ferrows_event_free(event);
        if (length != args.size) {
            fprintf(stderr, "ferrows_client: an echo of %zu bytes, sent %zu\n", length, args.size);
            return 1;
        }
        outstanding--;
        if (bench_echoed(&meter)) {
            result = ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, payload, args.size, 10000);
            if (result != FERROWS_OK) return fail("send", result);
            outstanding++;
        }
    }
    ferrows_conn_close(conn, 1000, NULL);
    ferrows_conn_wait_closed(conn, 5000);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    free(payload);
    return bench_report(&meter);
}
