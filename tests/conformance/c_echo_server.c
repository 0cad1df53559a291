/* Echo server on the ferrows C ABI, for the Autobahn fuzzingclient.
 *
 *   usage: c_echo_server PORT
 *
 * Limits are raised as every project does for this suite (section 9 sends 16 MiB
 * messages): no message size limit; keepalive is off so pings don't mix into the cases.
 * One thread per connection, blocking calls; prints "listening on PORT". Runs until killed. */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void report(const char *what, ferrows_result result) {
    char message[1024] = "";
    size_t length = 0;
    if (ferrows_last_error_message(message, sizeof message, &length) != FERROWS_OK) {
        snprintf(message, sizeof message, "(%zu-byte message)", length);
    }
    fprintf(stderr, "c_echo_server: %s: %s (%s)\n", what, ferrows_result_str(result), message);
}

static void *echo(void *arg) {
    ferrows_conn *conn = arg;
    for (;;) {
        ferrows_event *event = NULL;
        ferrows_result result = ferrows_conn_recv(conn, -1, &event);
        uint32_t type;
        if (result != FERROWS_OK) {
            report("ferrows_conn_recv", result);
            break;
        }
        type = ferrows_event_type(event);
        if (type == FERROWS_EVENT_CLOSED) {
            ferrows_event_free(event);
            break;
        }
        if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
            size_t length = 0;
            const uint8_t *data = ferrows_event_data(event, &length);
            result = ferrows_conn_send(conn,
                                       type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT
                                                                  : FERROWS_MESSAGE_BINARY,
                                       data, length, -1);
            if (result != FERROWS_OK && result != FERROWS_CLOSED) {
                report("ferrows_conn_send", result);
            }
        }
        ferrows_event_free(event);
    }
    ferrows_conn_free(conn);
    return NULL;
}

static int check(const char *what, ferrows_result result) {
    if (result != FERROWS_OK) {
        report(what, result);
        exit(1);
    }
    return 0;
}

int main(int argc, char **argv) {
    ferrows_config *config = NULL;
    ferrows_server *server = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    check("ferrows_config_new", ferrows_config_new(&config));
    check("ferrows_config_set_max_message_size", ferrows_config_set_max_message_size(config, 0));
    check("ferrows_config_set_keepalive_ms", ferrows_config_set_keepalive_ms(config, 0, 0));
    check("ferrows_server_listen",
          ferrows_server_listen(config, "127.0.0.1", (uint16_t)atoi(argv[1]), NULL, &server));
    printf("listening on %u\n", (unsigned)ferrows_server_port(server));
    fflush(stdout);
    for (;;) {
        ferrows_conn *conn = NULL;
        pthread_t thread;
        ferrows_result result = ferrows_server_accept(server, -1, &conn);
        if (result == FERROWS_CLOSED) {
            break;
        }
        if (result != FERROWS_OK) {
            report("ferrows_server_accept", result);
            continue;
        }
        if (pthread_create(&thread, NULL, echo, conn) != 0) {
            fprintf(stderr, "c_echo_server: pthread_create failed\n");
            ferrows_conn_free(conn);
            continue;
        }
        pthread_detach(thread);
    }
    ferrows_server_free(server);
    ferrows_config_free(config);
    return 0;
}
