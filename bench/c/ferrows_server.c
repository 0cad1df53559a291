/* The ferrows C server in the benchmark suite: every connection echoed (see bench.h) from
 * one event queue, either by one thread taking its events (ferrows_queue_next) or, with
 * --callback, by a callback the runtime calls (ferrows_queue_set_callback).
 *   usage: ferrows_server [--callback] PORT */
#include "ferrows_bench.h"

#include <unistd.h>

/* Set with --callback: events are handled on runtime threads. */
static int on_runtime;

static int fail(const char *what, ferrows_result result) {
    return bench_ferrows_fail("ferrows_server", what, result);
}

/* Echoes a message, adopts an accepted connection, frees a closed one; frees the event. */
static void handle(ferrows_event *event) {
    uint32_t type = ferrows_event_type(event);
    ferrows_conn *conn = ferrows_event_userdata(event);
    if (type == FERROWS_EVENT_ACCEPT) {
        conn = ferrows_event_take_conn(event);
        ferrows_conn_set_userdata(conn, conn);
    } else if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
        size_t length = 0;
        const uint8_t *data = ferrows_event_data(event, &length);
        uint32_t kind = type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
        /* A callback may not wait for room (the suite's loads never fill it). */
        ferrows_result result = ferrows_conn_send(conn, kind, data, length, on_runtime ? 0 : -1);
        if (result != FERROWS_OK && result != FERROWS_CLOSED) fail("send", result);
    } else if (type == FERROWS_EVENT_CLOSED) {
        ferrows_conn_free(conn);
    }
    ferrows_event_free(event);
}

static void on_event(void *context, ferrows_event *event) {
    (void)context;
    handle(event);
}

int main(int argc, char **argv) {
    int port;
    on_runtime = argc > 1 && strcmp(argv[1], "--callback") == 0;
    port = bench_server_port(argc - on_runtime, argv + on_runtime);
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_server *server = NULL;
    ferrows_result result;
    if (port < 0) return 2;
    bench_raise_file_limit();
    if ((result = ferrows_config_new(&config)) != FERROWS_OK) return fail("config", result);
    ferrows_config_set_keepalive_ms(config, 0, 0);
    ferrows_config_set_max_message_size(config, 0);
    ferrows_config_set_max_connections(config, 100000);
    if ((result = ferrows_queue_new(&queue)) != FERROWS_OK) return fail("queue", result);
    if (on_runtime) {
        ferrows_event_callback echo = {NULL, on_event, NULL};
        if ((result = ferrows_queue_set_callback(queue, echo)) != FERROWS_OK) return fail("callback", result);
    }
    result = ferrows_server_listen(config, "127.0.0.1", (uint16_t)port, queue, &server);
    if (result != FERROWS_OK) return fail("listen", result);
    bench_ready();
    if (on_runtime) {
        for (;;) pause();
    }
    for (;;) {
        ferrows_event *event = NULL;
        if ((result = ferrows_queue_next(queue, -1, &event)) != FERROWS_OK) return fail("next", result);
        handle(event);
    }
}
