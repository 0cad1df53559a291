/* The C server of the suite's broadcast part (bench/suite.py), with the protocol of
 * bench/broadcast.py: accepts CONNECTIONS connections, then on each "round"
 * line of stdin sends one SIZE-byte binary message to all of them, with ferrows_broadcast
 * or with a loop of ferrows_conn_send (MODE "broadcast" or "send-loop"), and prints the
 * call's time; on "done" it prints the process's CPU time since just before the call.
 *   usage: ferrows_broadcast MODE CONNECTIONS SIZE        (prints {"port": P} first) */
#include "ferrows_bench.h"

#include <string.h>

static int fail(const char *what, ferrows_result result) {
    return bench_ferrows_fail("ferrows_broadcast", what, result);
}

int main(int argc, char **argv) {
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_server *server = NULL;
    ferrows_conn **conns;
    ferrows_result result;
    unsigned char *message;
    char line[64];
    size_t count = 0, wanted, size;
    int broadcast;
    if (argc != 4 || atoi(argv[2]) <= 0 || atoi(argv[3]) <= 0) {
        fprintf(stderr, "usage: %s broadcast|send-loop CONNECTIONS SIZE\n", argv[0]);
        return 2;
    }
    broadcast = strcmp(argv[1], "broadcast") == 0;
    wanted = (size_t)atoi(argv[2]);
    size = (size_t)atoi(argv[3]);
    conns = calloc(wanted, sizeof *conns);
    message = bench_payload(size, 0);
    if (conns == NULL || message == NULL) return 1;
    bench_raise_file_limit();
    if ((result = ferrows_config_new(&config)) != FERROWS_OK) return fail("config", result);
    ferrows_config_set_keepalive_ms(config, 0, 0);
    ferrows_config_set_max_connections(config, (uint32_t)wanted + 100);
    if ((result = ferrows_queue_new(&queue)) != FERROWS_OK) return fail("queue", result);
    result = ferrows_server_listen(config, "127.0.0.1", 0, queue, &server);
    if (result != FERROWS_OK) return fail("listen", result);
    printf("{\"port\": %u}\n", (unsigned)ferrows_server_port(server));
    fflush(stdout);
    while (count < wanted) {
        ferrows_event *event = NULL;
        if ((result = ferrows_queue_next(queue, -1, &event)) != FERROWS_OK) return fail("next", result);
        if (ferrows_event_type(event) == FERROWS_EVENT_ACCEPT) conns[count++] = ferrows_event_take_conn(event);
        ferrows_event_free(event);
    }
    while (fgets(line, sizeof line, stdin) != NULL && strcmp(line, "round\n") == 0) {
        double cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
        double started = bench_clock(CLOCK_MONOTONIC);
        if (broadcast) {
            ferrows_broadcast_result counts;
            result = ferrows_broadcast(conns, count, FERROWS_MESSAGE_BINARY, message, size, 0, NULL,
                                       NULL, &counts);
            if (result != FERROWS_OK) return fail("broadcast", result);
            if (counts.sent != count) {
                fprintf(stderr, "ferrows_broadcast: sent to %zu of %zu\n", counts.sent, count);
                return 1;
            }
        } else {
            for (size_t i = 0; i < count; i++) {
                result = ferrows_conn_send(conns[i], FERROWS_MESSAGE_BINARY, message, size, -1);
                if (result != FERROWS_OK) return fail("send", result);
            }
        }
        printf("{\"started\": %.6f, \"call_s\": %.6f}\n", started, bench_clock(CLOCK_MONOTONIC) - started);
        fflush(stdout);
        if (fgets(line, sizeof line, stdin) == NULL || strcmp(line, "done\n") != 0) break;
        printf("{\"cpu_s\": %.6f}\n", bench_clock(CLOCK_PROCESS_CPUTIME_ID) - cpu);
        fflush(stdout);
    }
    return 0;
}
