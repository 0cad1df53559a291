/* Echo round trips per second with the ferrows C client (blocking API).
 * usage: ferrows_rtt URL SIZE ROUNDS   -> prints "<round trips per second>" */
#define _POSIX_C_SOURCE 200809L
#include <ferrows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, ferrows_result result) {
    char message[256];
    ferrows_last_error_message(message, sizeof message, NULL);
    fprintf(stderr, "%s: %s (%s)\n", what, ferrows_result_str(result), message);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL SIZE ROUNDS\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)atol(argv[2]);
    long rounds = atol(argv[3]);
    unsigned char *payload = malloc(size ? size : 1);
    memset(payload, 'x', size);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_result result = ferrows_config_new(&config);
    if (result != FERROWS_OK) return fail("config", result);
    ferrows_config_set_keepalive_ms(config, 0, 0);
    ferrows_config_set_max_message_size(config, 0);
    result = ferrows_connect_blocking(config, argv[1], 10000, NULL, &conn);
    if (result != FERROWS_OK) return fail("connect", result);
    double started = now();
    for (long i = 0; i < rounds; i++) {
        result = ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, payload, size, 10000);
        if (result != FERROWS_OK) return fail("send", result);
        ferrows_event *event = NULL;
        result = ferrows_conn_recv(conn, 10000, &event);
        if (result != FERROWS_OK) return fail("recv", result);
        ferrows_event_free(event);
    }
    printf("%.0f\n", (double)rounds / (now() - started));
    ferrows_conn_close(conn, 1000, NULL);
    ferrows_conn_wait_closed(conn, 5000);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    free(payload);
    return 0;
}
