/* poll_server: a WebSocket echo server on one thread, serving every client at once through
 * an event queue whose file descriptor sits in a poll() loop.
 *
 *   usage: poll_server HOST PORT        (PORT 0 picks a free port)
 *
 * Prints "listening on PORT", then echoes every message of every client. The same loop
 * could watch any other descriptor (sockets, pipes, timers): here it also watches a
 * self-pipe that the SIGINT/SIGTERM handler writes to, and stops cleanly on it.
 *
 * The pattern: poll the queue's fd for POLLIN, then take events with
 * ferrows_queue_next(queue, 0, ...) until it returns FERROWS_AGAIN. Never read the fd. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <ferrows.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEND_TIMEOUT_MS 1000 /* a client that reads nothing for this long is dropped */
#define SHUTDOWN_MS 5000

static void report(const char *what, ferrows_result result) {
    size_t length = 0;
    char *message = NULL;
    ferrows_last_error_message(NULL, 0, &length);
    message = malloc(length + 1);
    if (message == NULL || ferrows_last_error_message(message, length + 1, NULL) != FERROWS_OK) {
        free(message);
        message = NULL;
    }
    fprintf(stderr, "poll_server: %s: %s (%s)\n", what, ferrows_result_str(result),
            message != NULL && message[0] != '\0' ? message : "no details");
    free(message);
}

/* One per connection, in a doubly linked list; each connection's events carry its client
 * as userdata. */
struct client {
    ferrows_conn *conn;
    char peer[64];
    unsigned long messages;
    struct client *prev, *next;
};

struct state {
    ferrows_queue *queue;
    struct client *clients;
    unsigned connected;
};

static int signal_pipe[2] = {-1, -1};

static void on_signal(int signo) {
    int saved = errno;
    unsigned char byte = (unsigned char)signo;
    ssize_t ignored = write(signal_pipe[1], &byte, 1); /* async-signal-safe */
    (void)ignored;
    errno = saved;
}

static void add_client(struct state *state, ferrows_conn *conn) {
    struct client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        fprintf(stderr, "poll_server: out of memory\n");
        ferrows_conn_free(conn);
        return;
    }
    client->conn = conn;
    strcpy(client->peer, "?");
    ferrows_conn_peer_address(conn, client->peer, sizeof client->peer, NULL);
    /* From now on this connection's events carry `client`. */
    ferrows_conn_set_userdata(conn, client);
    client->next = state->clients;
    if (state->clients != NULL) {
        state->clients->prev = client;
    }
    state->clients = client;
    state->connected++;
    printf("%s: connected (%u clients)\n", client->peer, state->connected);
}

static void remove_client(struct state *state, struct client *client) {
    if (client->prev != NULL) {
        client->prev->next = client->next;
    } else {
        state->clients = client->next;
    }
    if (client->next != NULL) {
        client->next->prev = client->prev;
    }
    state->connected--;
    ferrows_conn_free(client->conn);
    free(client);
}

static void echo(struct client *client, ferrows_event *event, uint32_t type) {
    size_t length = 0;
    const uint8_t *data = ferrows_event_data(event, &length);
    uint32_t kind = type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
    /* A send only waits when more than the send watermark (1 MiB by default) is unwritten;
     * bound that wait, since every client shares this thread. */
    ferrows_result result = ferrows_conn_send(client->conn, kind, data, length, SEND_TIMEOUT_MS);
    client->messages++;
    if (result == FERROWS_TIMEOUT) {
        fprintf(stderr, "poll_server: %s reads too slowly: closing it\n", client->peer);
        ferrows_conn_close(client->conn, 1008, "too slow");
    } else if (result != FERROWS_OK && result != FERROWS_CLOSED) {
        report("ferrows_conn_send", result);
        ferrows_conn_close(client->conn, 1011, "send failed");
    }
    /* FERROWS_CLOSED: the connection is closing; its CLOSED event will come. */
}

/* Handles one event and frees it. */
static void handle(struct state *state, ferrows_event *event) {
    uint32_t type = ferrows_event_type(event);
    struct client *client = ferrows_event_userdata(event);
    switch (type) {
    case FERROWS_EVENT_ACCEPT: {
        ferrows_conn *conn = ferrows_event_take_conn(event); /* ours now */
        if (conn != NULL) {
            add_client(state, conn);
        }
        break;
    }
    case FERROWS_EVENT_TEXT:
    case FERROWS_EVENT_BINARY:
        if (client != NULL) {
            echo(client, event, type);
        }
        break;
    case FERROWS_EVENT_CLOSED:
        if (client != NULL) {
            char reason[128] = "";
            ferrows_event_message(event, reason, sizeof reason, NULL);
            printf("%s: closed with code %u after %lu messages (%s%s%s)\n", client->peer,
                   (unsigned)ferrows_event_close_code(event), client->messages,
                   ferrows_result_str(ferrows_event_result(event)), reason[0] ? ": " : "", reason);
            remove_client(state, client);
        }
        break;
    default: /* OPEN and ERROR are for client connections made with ferrows_connect */
        break;
    }
    ferrows_event_free(event);
}

/* Takes every ready event without waiting; -1 on an error. */
static int drain(struct state *state) {
    for (;;) {
        ferrows_event *event = NULL;
        ferrows_result result = ferrows_queue_next(state->queue, 0, &event);
        if (result == FERROWS_AGAIN) {
            return 0; /* nothing left: back to poll() */
        }
        if (result != FERROWS_OK) {
            report("ferrows_queue_next", result);
            return -1;
        }
        handle(state, event);
    }
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

static int install_signal_handlers(void) {
    struct sigaction action;
    int i;
    if (pipe(signal_pipe) != 0) {
        perror("pipe");
        return -1;
    }
    for (i = 0; i < 2; i++) {
        fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
        fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
    }
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
        perror("sigaction");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct state state = {NULL, NULL, 0};
    ferrows_config *config = NULL;
    ferrows_server *server = NULL;
    ferrows_result result;
    struct pollfd fds[2];
    uint16_t port = 0;
    int queue_fd = -1;
    int status = 0;

    if (argc != 3 || parse_port(argv[2], &port) != 0) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (install_signal_handlers() != 0) {
        return 1;
    }
    result = ferrows_config_new(&config);
    if (result != FERROWS_OK) {
        report("ferrows_config_new", result);
        return 1;
    }
    result = ferrows_queue_new(&state.queue);
    if (result != FERROWS_OK) {
        report("ferrows_queue_new", result);
        ferrows_config_free(config);
        return 1;
    }
    ferrows_queue_fd(state.queue, &queue_fd);
    /* With a queue, accepted connections arrive as ACCEPT events, and report their own
     * events to the same queue. */
    result = ferrows_server_listen(config, argv[1], port, state.queue, &server);
    if (result != FERROWS_OK) {
        report("ferrows_server_listen", result);
        ferrows_queue_free(state.queue);
        ferrows_config_free(config);
        return 1;
    }
    printf("listening on %u\n", (unsigned)ferrows_server_port(server));
    fflush(stdout);

    fds[0].fd = queue_fd;
    fds[0].events = POLLIN;
    fds[1].fd = signal_pipe[0];
    fds[1].events = POLLIN;
    for (;;) {
        int ready = poll(fds, 2, -1);
        if (ready < 0) {
            if (errno == EINTR) {
                continue; /* the handler wrote to the pipe: the next poll sees it */
            }
            perror("poll");
            status = 1;
            break;
        }
        if (fds[1].revents & POLLIN) {
            break; /* SIGINT or SIGTERM */
        }
        if ((fds[0].revents & POLLIN) && drain(&state) != 0) {
            status = 1;
            break;
        }
    }

    /* Stop accepting, close every connection with 1001 and wait for the handshakes; then
     * take their CLOSED events, which free the clients. */
    result = ferrows_server_shutdown(server, SHUTDOWN_MS);
    if (result != FERROWS_OK && result != FERROWS_TIMEOUT) {
        report("ferrows_server_shutdown", result);
        status = 1;
    }
    drain(&state);
    while (state.clients != NULL) {
        remove_client(&state, state.clients); /* still closing: freeing finishes it */
    }
    ferrows_server_free(server);
    ferrows_queue_free(state.queue); /* after every connection reporting to it */
    ferrows_config_free(config);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    printf("stopped\n");
    return status;
}
