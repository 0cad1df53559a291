/* echo_server: a WebSocket echo server, one thread per client, with blocking calls.
 *
 *   usage: echo_server HOST PORT        (PORT 0 picks a free port)
 *          FERROWS_CERT_FILE=cert.pem FERROWS_KEY_FILE=key.pem echo_server ...   (wss://)
 *
 * Prints "listening on PORT" once it listens, then echoes every message of every client
 * with its type (text or binary). SIGINT or SIGTERM stop it cleanly: it stops accepting,
 * closes every connection with 1001 (going away), waits for the client threads, and exits 0.
 *
 * Signals: SIGINT and SIGTERM are blocked before any thread starts (ferrows' runtime
 * threads included), and one thread takes them with sigwait(). That thread may then call
 * ferrows freely, which a signal handler may not. */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHUTDOWN_MS 5000    /* how long closing handshakes may take when stopping */
#define DRAIN_SECONDS 15    /* how long to wait for client threads after that */

static void report(const char *what, ferrows_result result) {
    size_t length = 0;
    char *message = NULL;
    ferrows_last_error_message(NULL, 0, &length);
    message = malloc(length + 1);
    if (message == NULL || ferrows_last_error_message(message, length + 1, NULL) != FERROWS_OK) {
        free(message);
        message = NULL;
    }
    fprintf(stderr, "echo_server: %s: %s (%s)\n", what, ferrows_result_str(result),
            message != NULL && message[0] != '\0' ? message : "no details");
    free(message);
}

/* Client threads are detached; main waits for this count to reach 0 before exiting. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int active;
} clients = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void client_count_add(int delta) {
    pthread_mutex_lock(&clients.lock);
    clients.active += delta;
    pthread_cond_broadcast(&clients.changed);
    pthread_mutex_unlock(&clients.lock);
}

/* Echoes until the connection ends; owns and frees `conn`. */
static void *serve_client(void *arg) {
    ferrows_conn *conn = arg;
    char peer[64] = "?";
    unsigned long messages = 0;
    ferrows_conn_peer_address(conn, peer, sizeof peer, NULL);
    printf("%s: connected\n", peer);
    for (;;) {
        ferrows_event *event = NULL;
        ferrows_result result = ferrows_conn_recv(conn, -1, &event);
        uint32_t type;
        if (result != FERROWS_OK) {
            /* FERROWS_CLOSED only comes after the CLOSED event, which ends the loop. */
            report("ferrows_conn_recv", result);
            break;
        }
        type = ferrows_event_type(event);
        if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
            size_t length = 0;
            const uint8_t *data = ferrows_event_data(event, &length);
            uint32_t kind = type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
            /* -1: wait while the client is slow to read; keepalive ends dead peers. */
            result = ferrows_conn_send(conn, kind, data, length, -1);
            ferrows_event_free(event);
            messages++;
            if (result != FERROWS_OK && result != FERROWS_CLOSED) {
                report("ferrows_conn_send", result);
                ferrows_conn_close(conn, 1011, "send failed");
            }
            /* On FERROWS_CLOSED the connection is closing: its CLOSED event comes next. */
            continue;
        }
        if (type == FERROWS_EVENT_CLOSED) {
            char reason[128] = "";
            ferrows_event_message(event, reason, sizeof reason, NULL);
            printf("%s: closed with code %u after %lu messages (%s%s%s)\n", peer,
                   (unsigned)ferrows_event_close_code(event), messages,
                   ferrows_result_str(ferrows_event_result(event)), reason[0] ? ": " : "", reason);
            ferrows_event_free(event);
            break;
        }
        ferrows_event_free(event);
    }
    ferrows_conn_free(conn);
    client_count_add(-1);
    return NULL;
}

struct signal_waiter {
    sigset_t signals;
    ferrows_server *server;
    int signal;
};

/* Waits for SIGINT or SIGTERM, then shuts the server down: ferrows_server_accept in main
 * returns FERROWS_CLOSED, and every client's ferrows_conn_recv its CLOSED event. */
static void *wait_for_signal(void *arg) {
    struct signal_waiter *waiter = arg;
    ferrows_result result;
    sigwait(&waiter->signals, &waiter->signal);
    result = ferrows_server_shutdown(waiter->server, SHUTDOWN_MS);
    if (result == FERROWS_TIMEOUT) {
        fprintf(stderr, "echo_server: some clients did not finish closing in time\n");
    } else if (result != FERROWS_OK) {
        report("ferrows_server_shutdown", result);
    }
    return NULL;
}

static int parse_port(const char *text, uint16_t *port) {
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < 0 || value > 65535) {
        return -1;
    }
    *port = (uint16_t)value;
    return 0;
}

/* With FERROWS_CERT_FILE and FERROWS_KEY_FILE set, the server speaks TLS (wss://). */
static unsigned char *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    unsigned char *data = NULL;
    long end;
    if (file == NULL) {
        perror(path);
        return NULL;
    }
    if (fseek(file, 0, SEEK_END) == 0 && (end = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0) {
        data = malloc((size_t)end + 1);
        if (data != NULL && fread(data, 1, (size_t)end, file) == (size_t)end) {
            *size = (size_t)end;
        } else {
            free(data);
            data = NULL;
        }
    }
    if (data == NULL) {
        perror(path);
    }
    fclose(file);
    return data;
}

static int configure_tls(ferrows_config *config) {
    const char *cert_file = getenv("FERROWS_CERT_FILE");
    const char *key_file = getenv("FERROWS_KEY_FILE");
    size_t cert_size = 0, key_size = 0;
    unsigned char *cert, *key;
    ferrows_result result;
    if (cert_file == NULL || key_file == NULL || !cert_file[0] || !key_file[0]) {
        return 0;
    }
    cert = read_file(cert_file, &cert_size);
    key = read_file(key_file, &key_size);
    result = cert && key ? ferrows_config_tls_set_server_cert_pem(config, cert, cert_size, key, key_size)
                         : FERROWS_ERR_INVALID_ARG;
    free(cert);
    free(key);
    if (result != FERROWS_OK) {
        if (cert && key) {
            report("ferrows_config_tls_set_server_cert_pem", result);
        }
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct signal_waiter waiter;
    pthread_t signal_thread;
    ferrows_config *config = NULL;
    ferrows_server *server = NULL;
    ferrows_result result;
    uint16_t port = 0;
    int status = 0;
    struct timespec deadline;

    if (argc != 3 || parse_port(argv[2], &port) != 0) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe */

    /* Before any thread exists, so that every thread inherits the mask. */
    sigemptyset(&waiter.signals);
    sigaddset(&waiter.signals, SIGINT);
    sigaddset(&waiter.signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &waiter.signals, NULL);

    result = ferrows_config_new(&config);
    if (result != FERROWS_OK) {
        report("ferrows_config_new", result);
        return 1;
    }
    if (configure_tls(config) != 0) {
        ferrows_config_free(config);
        return 1;
    }
    /* No queue: connections are taken with ferrows_server_accept. */
    result = ferrows_server_listen(config, argv[1], port, NULL, &server);
    if (result != FERROWS_OK) {
        report("ferrows_server_listen", result);
        ferrows_config_free(config);
        return 1;
    }
    printf("listening on %u\n", (unsigned)ferrows_server_port(server));
    fflush(stdout);

    waiter.server = server;
    waiter.signal = 0;
    if (pthread_create(&signal_thread, NULL, wait_for_signal, &waiter) != 0) {
        fprintf(stderr, "echo_server: cannot start the signal thread\n");
        ferrows_server_free(server);
        ferrows_config_free(config);
        return 1;
    }

    for (;;) {
        ferrows_conn *conn = NULL;
        pthread_t thread;
        pthread_attr_t attributes;
        result = ferrows_server_accept(server, -1, &conn);
        if (result == FERROWS_CLOSED) {
            break; /* shut down by the signal thread */
        }
        if (result != FERROWS_OK) {
            report("ferrows_server_accept", result);
            status = 1;
            pthread_kill(signal_thread, SIGTERM); /* stop the same way a signal would */
            break;
        }
        client_count_add(1);
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attributes, serve_client, conn) != 0) {
            fprintf(stderr, "echo_server: cannot start a client thread\n");
            ferrows_conn_free(conn); /* closes it with 1001 */
            client_count_add(-1);
        }
        pthread_attr_destroy(&attributes);
    }
    pthread_join(signal_thread, NULL);

    /* Every connection is closing or closed: wait (bounded) for the client threads. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DRAIN_SECONDS;
    pthread_mutex_lock(&clients.lock);
    while (clients.active > 0) {
        if (pthread_cond_timedwait(&clients.changed, &clients.lock, &deadline) != 0) {
            break;
        }
    }
    if (clients.active > 0) {
        fprintf(stderr, "echo_server: %d client threads still running\n", clients.active);
        status = 1;
    }
    pthread_mutex_unlock(&clients.lock);

    ferrows_server_free(server);
    ferrows_config_free(config);
    printf("stopped (signal %d)\n", waiter.signal);
    return status;
}
