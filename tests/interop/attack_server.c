/* attack_server: the C face's server for the attack tests.
 *
 *   usage: attack_server [MAX_FRAGMENTS]
 *
 * Listens on 127.0.0.1 (a free port), prints "listening on PORT", then serves one thread per
 * connection until killed. A connection that chose the subprotocol "busy" is never read (its
 * thread waits for the connection to end, as an application busy elsewhere would); every
 * other connection is echoed. MAX_FRAGMENTS sets the frames-per-message limit (0: none). */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_LIMIT_MS 120000

static void fail(const char *what, ferrows_result result) {
    char message[256] = "";
    ferrows_last_error_message(message, sizeof message, NULL);
    fprintf(stderr, "attack_server: %s: %s (%s)\n", what, ferrows_result_str(result), message);
    exit(1);
}

static void *echo(void *arg) {
    ferrows_conn *conn = arg;
    for (;;) {
        ferrows_event *event = NULL;
        uint32_t type;
        if (ferrows_conn_recv(conn, -1, &event) != FERROWS_OK) {
            break;
        }
        type = ferrows_event_type(event);
        if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
            size_t length = 0;
            const uint8_t *data = ferrows_event_data(event, &length);
            uint32_t kind = type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
            ferrows_conn_send(conn, kind, data, length, -1);
        }
        ferrows_event_free(event);
        if (type == FERROWS_EVENT_CLOSED) {
            break;
        }
    }
    ferrows_conn_free(conn);
    return NULL;
}

static void *busy(void *arg) {
    ferrows_conn *conn = arg;
    ferrows_conn_wait_closed(conn, BUSY_LIMIT_MS);
    ferrows_conn_free(conn);
    return NULL;
}

int main(int argc, char **argv) {
    ferrows_config *config = NULL;
    ferrows_server *server = NULL;
    ferrows_result result;
    if ((result = ferrows_config_new(&config)) != FERROWS_OK) {
        fail("ferrows_config_new", result);
    }
    if ((result = ferrows_config_add_subprotocol(config, "busy")) != FERROWS_OK) {
        fail("ferrows_config_add_subprotocol", result);
    }
    if (argc > 1 && (result = ferrows_config_set_max_fragments(
                         config, (size_t)strtoul(argv[1], NULL, 10))) != FERROWS_OK) {
        fail("ferrows_config_set_max_fragments", result);
    }
    if ((result = ferrows_server_listen(config, "127.0.0.1", 0, NULL, &server)) != FERROWS_OK) {
        fail("ferrows_server_listen", result);
    }
    printf("listening on %u\n", (unsigned)ferrows_server_port(server));
    fflush(stdout);
    for (;;) {
        ferrows_conn *conn = NULL;
        pthread_t thread;
        char subprotocol[16] = "";
        if ((result = ferrows_server_accept(server, -1, &conn)) != FERROWS_OK) {
            fail("ferrows_server_accept", result);
        }
        ferrows_conn_subprotocol(conn, subprotocol, sizeof subprotocol, NULL);
        if (pthread_create(&thread, NULL, strcmp(subprotocol, "busy") == 0 ? busy : echo, conn)
            != 0) {
            fprintf(stderr, "attack_server: pthread_create failed\n");
            return 1;
        }
        pthread_detach(thread);
    }
}
