/* The ferrows C server in the benchmark suite: one thread, one event queue, every
 * connection echoed (see bench.h). */
#include "ferrows_bench.h"

static int fail(const char *what, ferrows_result result) {
    return bench_ferrows_fail("ferrows_server", what, result);
}

int main(int argc, char **argv) {
    int port = bench_server_port(argc, argv);
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
    result = ferrows_server_listen(config, "127.0.0.1", (uint16_t)port, queue, &server);
    if (result != FERROWS_OK) return fail("listen", result);
    bench_ready();
    for (;;) {
        ferrows_event *event = NULL;
        ferrows_conn *conn;
        uint32_t type;
        if ((result = ferrows_queue_next(queue, -1, &event)) != FERROWS_OK) return fail("next", result);
        type = ferrows_event_type(event);
        conn = ferrows_event_userdata(event);
        if (type == FERROWS_EVENT_ACCEPT) {
            conn = ferrows_event_take_conn(event);
            ferrows_conn_set_userdata(conn, conn);
        } else if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
            size_t length = 0;
            const uint8_t *data = ferrows_event_data(event, &length);
            uint32_t kind = type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
            result = ferrows_conn_send(conn, kind, data, length, -1);
            if (result != FERROWS_OK && result != FERROWS_CLOSED) fail("send", result);
        } else if (type == FERROWS_EVENT_CLOSED) {
            ferrows_conn_free(conn);
        }
        ferrows_event_free(event);
    }
}
