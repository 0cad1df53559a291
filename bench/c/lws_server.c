/* The libwebsockets echo server in the benchmark suite (bench.h): one thread, each
 * connection's echoes queued until it is writable. */
#include "bench.h"

#include <libwebsockets.h>

struct message {
    struct message *next;
    size_t length;
    int binary;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
};

struct session {
    struct message *head, *tail;
    unsigned char *partial; /* the message being received, with LWS_PRE headroom */
    size_t partial_length, partial_capacity;
};

static int take(struct session *session, const void *in, size_t len) {
    if (session->partial_length + len > session->partial_capacity) {
        size_t capacity = 2 * (session->partial_length + len);
        unsigned char *grown = realloc(session->partial, LWS_PRE + capacity);
        if (grown == NULL) return -1;
        session->partial = grown;
        session->partial_capacity = capacity;
    }
    memcpy(session->partial + LWS_PRE + session->partial_length, in, len);
    session->partial_length += len;
    return 0;
}

static int queue_echo(struct session *session, int binary) {
    struct message *message = malloc(sizeof *message + LWS_PRE + session->partial_length);
    if (message == NULL) return -1;
    message->next = NULL;
    message->length = session->partial_length;
    message->binary = binary;
    memcpy(message->data + LWS_PRE, session->partial + LWS_PRE, session->partial_length);
    session->partial_length = 0;
    if (session->tail != NULL) {
        session->tail->next = message;
    } else {
        session->head = message;
    }
    session->tail = message;
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    struct session *session = user;
    struct message *message;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(session, 0, sizeof *session);
        break;
    case LWS_CALLBACK_RECEIVE:
        if (take(session, in, len) != 0) return -1;
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            if (queue_echo(session, lws_frame_is_binary(wsi)) != 0) return -1;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        message = session->head;
        if (message == NULL) break;
        if (lws_write(wsi, message->data + LWS_PRE, message->length,
                      message->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)message->length) {
            return -1;
        }
        session->head = message->next;
        if (session->head == NULL) session->tail = NULL;
        free(message);
        if (session->head != NULL) lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLOSED:
        while ((message = session->head) != NULL) {
            session->head = message->next;
            free(message);
        }
        free(session->partial);
        memset(session, 0, sizeof *session);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback, sizeof(struct session), 64 * 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv) {
    int port = bench_server_port(argc, argv);
    struct lws_context_creation_info info;
    struct lws_context *context;
    if (port < 0) return 2;
    bench_raise_file_limit();
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    context = lws_create_context(&info);
    if (context == NULL) return 1;
    bench_ready();
    for (;;) {
        if (lws_service(context, 0) < 0) break;
    }
    lws_context_destroy(context);
    return 1;
}
