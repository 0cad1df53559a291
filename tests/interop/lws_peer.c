/* libwebsockets as a peer of the interop matrix, following the peer rules of
 * tests/interop/conversation.py: echo each whole message with its type, answer
 * "fragment me" with "frag" "men" "ted" in three frames, answer "close me" by closing with
 * 4002 "peer bye", and record each message and the close frame received.
 *
 *   usage: lws_peer client URL [--ca FILE]
 *          lws_peer server [--cert FILE --key FILE]
 *
 * The server prints "listening on PORT" and serves one connection. When the connection
 * ends, prints one line "record {JSON}" (messages as [kind, length], the close received)
 * and exits: 0 after a WebSocket connection, 1 if none was made. */
#define _POSIX_C_SOURCE 200809L

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SIZE (1u << 21) /* the largest message received */
#define MAX_RECORDS 64      /* messages recorded */
#define MAX_QUEUED 8        /* replies waiting for a writable socket */
#define RUN_SECONDS 60      /* the whole run */

struct reply {
    unsigned char *buffer; /* LWS_PRE bytes, then the payload */
    size_t length;
    enum lws_write_protocol flags;
};

struct peer {
    unsigned char *message; /* the message being received */
    size_t length;
    int binary;
    struct reply queue[MAX_QUEUED];
    size_t queued;
    int closing; /* "close me" received: close once the replies are out */
    struct {
        int binary;
        size_t length;
    } records[MAX_RECORDS];
    size_t recorded;
    int close_code; /* -1 until a close frame arrives */
    char close_reason[124];
    int connected, finished;
};

static struct peer peer = {.close_code = -1};

static void fail(const char *what) {
    fprintf(stderr, "lws_peer: %s\n", what);
    exit(1);
}

static void enqueue(struct lws *wsi, const void *data, size_t length,
                    enum lws_write_protocol flags) {
    struct reply *reply;
    if (peer.queued == MAX_QUEUED) {
        fail("too many replies queued");
    }
    reply = &peer.queue[peer.queued++];
    reply->buffer = malloc(LWS_PRE + length + 1);
    if (reply->buffer == NULL) {
        fail("out of memory");
    }
    memcpy(reply->buffer + LWS_PRE, data, length);
    reply->length = length;
    reply->flags = flags;
    lws_callback_on_writable(wsi);
}

static void message_received(struct lws *wsi) {
    static const char *const fragments[] = {"frag", "men", "ted"};
    const char *text = (const char *)peer.message;
    if (peer.recorded == MAX_RECORDS) {
        fail("too many messages");
    }
    peer.records[peer.recorded].binary = peer.binary;
    peer.records[peer.recorded++].length = peer.length;
    if (!peer.binary && peer.length == 8 && memcmp(text, "close me", 8) == 0) {
        peer.closing = 1;
        lws_callback_on_writable(wsi);
    } else if (!peer.binary && peer.length == 11 && memcmp(text, "fragment me", 11) == 0) {
        enqueue(wsi, fragments[0], 4, LWS_WRITE_TEXT | LWS_WRITE_NO_FIN);
        enqueue(wsi, fragments[1], 3, LWS_WRITE_CONTINUATION | LWS_WRITE_NO_FIN);
        enqueue(wsi, fragments[2], 3, LWS_WRITE_CONTINUATION);
    } else {
        enqueue(wsi, peer.message, peer.length, peer.binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    }
    peer.length = 0;
}

static void received(struct lws *wsi, const void *data, size_t length) {
    if (peer.length == 0 && lws_is_first_fragment(wsi)) {
        peer.binary = lws_frame_is_binary(wsi);
    }
    if (length > MAX_SIZE - peer.length) {
        fail("message over the size limit");
    }
    memcpy(peer.message + peer.length, data, length);
    peer.length += length;
    if (lws_is_final_fragment(wsi)) {
        message_received(wsi);
    }
}

/* Sends the next reply; once they are all out, closes if asked to. -1 closes. */
static int writable(struct lws *wsi) {
    if (peer.queued > 0) {
        struct reply reply = peer.queue[0];
        memmove(peer.queue, peer.queue + 1, --peer.queued * sizeof peer.queue[0]);
        if (lws_write(wsi, reply.buffer + LWS_PRE, reply.length, reply.flags) <
            (int)reply.length) {
            fail("lws_write failed");
        }
        free(reply.buffer);
        if (peer.queued > 0 || peer.closing) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    if (peer.closing) {
        lws_close_reason(wsi, 4002, (unsigned char *)"peer bye", 8);
        return -1;
    }
    return 0;
}

static void close_received(const unsigned char *payload, size_t length) {
    size_t reason_length = length > 2 ? length - 2 : 0;
    if (length < 2) {
        return; /* a close frame without a code */
    }
    if (reason_length >= sizeof peer.close_reason) {
        reason_length = sizeof peer.close_reason - 1;
    }
    peer.close_code = payload[0] << 8 | payload[1];
    memcpy(peer.close_reason, payload + 2, reason_length);
    peer.close_reason[reason_length] = '\0';
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t length) {
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        peer.connected = 1;
        break;
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        received(wsi, in, length);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return writable(wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        close_received(in, length);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf(stderr, "lws_peer: connection error: %s\n", in ? (const char *)in : "");
        peer.finished = 1;
        break;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        peer.finished = 1;
        break;
    default:
        break;
    }
    return 0;
}

static void print_record(void) {
    size_t i;
    printf("record {\"messages\": [");
    for (i = 0; i < peer.recorded; i++) {
        printf("%s[\"%s\", %zu]", i ? ", " : "", peer.records[i].binary ? "binary" : "text",
               peer.records[i].length);
    }
    printf("], \"frames\": null, \"close\": ");
    if (peer.close_code < 0) {
        printf("null}\n");
    } else {
        printf("[%d, \"", peer.close_code);
        for (i = 0; peer.close_reason[i]; i++) {
            unsigned char c = (unsigned char)peer.close_reason[i];
            printf(c == '"' || c == '\\' ? "\\%c" : c < 0x20 ? "\\u%04x" : "%c", c);
        }
        printf("\"]}\n");
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    static const struct lws_protocols protocols[] = {
        {"matrix", callback, 0, 65536, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};
    struct lws_context_creation_info info;
    struct lws_context *context;
    const char *ca = NULL, *cert = NULL, *key = NULL;
    char *url = NULL;
    int client, i;
    time_t deadline = time(NULL) + RUN_SECONDS;

    if (argc < 2 || (strcmp(argv[1], "client") != 0 && strcmp(argv[1], "server") != 0)) {
        fail("usage: lws_peer client URL [--ca FILE] | server [--cert FILE --key FILE]");
    }
    client = strcmp(argv[1], "client") == 0;
    for (i = 2; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--ca") == 0) {
            ca = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--cert") == 0) {
            cert = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--key") == 0) {
            key = argv[++i];
        } else if (client && url == NULL) {
            url = argv[i];
        } else {
            fail("unexpected argument");
        }
    }
    if (client ? url == NULL : (cert == NULL) != (key == NULL)) {
        fail(client ? "a client needs a URL" : "--cert and --key go together");
    }
    peer.message = malloc(MAX_SIZE);
    if (peer.message == NULL) {
        fail("out of memory");
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    memset(&info, 0, sizeof info);
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (client) {
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.client_ssl_ca_filepath = ca;
    } else {
        info.port = 0;
        info.iface = "127.0.0.1";
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
    }
    context = lws_create_context(&info);
    if (context == NULL) {
        fail("lws_create_context failed");
    }

    if (client) {
        struct lws_client_connect_info connect;
        const char *scheme, *address, *path;
        char full_path[256];
        int port;
        if (lws_parse_uri(url, &scheme, &address, &port, &path) != 0) {
            fail("bad URL");
        }
        snprintf(full_path, sizeof full_path, "/%s", path);
        memset(&connect, 0, sizeof connect);
        connect.context = context;
        connect.address = address;
        connect.port = port;
        connect.path = full_path;
        connect.host = address;
        connect.origin = address;
        connect.ssl_connection = strcmp(scheme, "wss") == 0 ? LCCSCF_USE_SSL : 0;
        connect.local_protocol_name = "matrix";
        if (lws_client_connect_via_info(&connect) == NULL) {
            fail("lws_client_connect_via_info failed");
        }
    } else {
        printf("listening on %d\n", lws_get_vhost_listen_port(lws_get_vhost_by_name(context, "default")));
        fflush(stdout);
    }

    while (!peer.finished && time(NULL) < deadline) {
        lws_service(context, 0);
    }
    lws_context_destroy(context);
    if (!peer.finished) {
        fail("no end within the run's time");
    }
    print_record();
    return peer.connected ? 0 : 1;
}
