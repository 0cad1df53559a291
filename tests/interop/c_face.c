/* The C face of ferrows in the interop matrix: plays the scripted conversation of
 * tests/interop/conversation.py on the C ABI, as a client or as a one-connection server.
 *
 *   usage: c_face client URL [--ca FILE] [--peer-fragments] [--peer-closes]
 *          c_face server [--cert FILE --key FILE] [--peer-fragments] [--peer-closes]
 *
 * The server prints "listening on PORT" and plays with the first client. The C ABI sends
 * whole messages only, so this face never sends a fragmented one; --peer-fragments asks
 * the peer for one. Exits 0 when every step went as scripted, else 1 with the failing step
 * on stderr. Every wait is bounded. */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 10000       /* any one step of the conversation */
#define ACCEPT_MS 30000     /* the peer's process start and handshake */
#define MAX_SIZE (1u << 21) /* room for the 1 MiB messages */
#define ONE_MIB (1u << 20)
#define MAX_PEM (1u << 20)
#define MESSAGE_COUNT 7

struct plan {
    int peer_fragments;
    int peer_closes;
};

struct message {
    uint32_t type;
    uint8_t *data;
    size_t length;
};

static void fail(const char *format, ...) {
    va_list args;
    fputs("c_face: ", stderr);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    exit(1);
}

/* Fails unless `result` is FERROWS_OK, with the library's last error message. */
static void check(const char *what, ferrows_result result) {
    char message[1024] = "";
    size_t length = 0;
    if (result == FERROWS_OK) {
        return;
    }
    if (ferrows_last_error_message(message, sizeof message, &length) != FERROWS_OK) {
        snprintf(message, sizeof message, "(%zu-byte message)", length);
    }
    fail("%s: %s (%s)", what, ferrows_result_str(result), message);
}

static struct message make_message(uint32_t type, const void *data, size_t length) {
    struct message message = {type, malloc(length ? length : 1), length};
    if (message.data == NULL) {
        fail("out of memory");
    }
    memcpy(message.data, data, length);
    return message;
}

/* 1 MiB of `pattern` repeated. */
static struct message mib_message(uint32_t type, const uint8_t *pattern, size_t pattern_length) {
    struct message message = {type, malloc(ONE_MIB), ONE_MIB};
    size_t i;
    if (message.data == NULL) {
        fail("out of memory");
    }
    for (i = 0; i < ONE_MIB; i++) {
        message.data[i] = pattern[i % pattern_length];
    }
    return message;
}

/* The messages of conversation.MESSAGES, in order. */
static size_t make_messages(struct message *out) {
    static const char non_ascii[] = "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9d\x84\x9e"; /* café ☕ 𝄞 */
    static const uint8_t small_binary[] = {0x00, 0x01, 0xfe, 0xff};
    static const uint8_t e_acute[] = {0xc3, 0xa9};
    uint8_t every_byte[256];
    size_t i;
    for (i = 0; i < sizeof every_byte; i++) {
        every_byte[i] = (uint8_t)i;
    }
    out[0] = make_message(FERROWS_MESSAGE_TEXT, "hello", 5);
    out[1] = make_message(FERROWS_MESSAGE_TEXT, non_ascii, sizeof non_ascii - 1);
    out[2] = make_message(FERROWS_MESSAGE_BINARY, small_binary, sizeof small_binary);
    out[3] = make_message(FERROWS_MESSAGE_TEXT, "", 0);
    out[4] = make_message(FERROWS_MESSAGE_BINARY, "", 0);
    out[5] = mib_message(FERROWS_MESSAGE_TEXT, e_acute, sizeof e_acute);
    out[6] = mib_message(FERROWS_MESSAGE_BINARY, every_byte, sizeof every_byte);
    return MESSAGE_COUNT;
}

static const char *type_name(uint32_t type) {
    return type == FERROWS_EVENT_TEXT ? "text" : type == FERROWS_EVENT_BINARY ? "binary" : "other";
}

/* Receives the next message and fails unless it is `type` with `length` bytes of `data`. */
static void expect(ferrows_conn *conn, uint32_t type, const uint8_t *data, size_t length) {
    ferrows_event *event = NULL;
    size_t received = 0;
    const uint8_t *bytes;
    uint32_t expected_event = type == FERROWS_MESSAGE_TEXT ? FERROWS_EVENT_TEXT
                                                           : FERROWS_EVENT_BINARY;
    check("ferrows_conn_recv", ferrows_conn_recv(conn, WAIT_MS, &event));
    bytes = ferrows_event_data(event, &received);
    if (ferrows_event_type(event) != expected_event || received != length ||
        (length > 0 && memcmp(bytes, data, length) != 0)) {
        fail("sent %s of %zu bytes, got %s of %zu bytes (or other bytes)",
             type_name(expected_event), length, type_name(ferrows_event_type(event)), received);
    }
    ferrows_event_free(event);
}

static void send_text(ferrows_conn *conn, const char *text) {
    check("ferrows_conn_send",
          ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)text, strlen(text),
                            WAIT_MS));
}

/* The peer closes: the CLOSED event carries its code and reason, and the close is clean. */
static void expect_peer_close(ferrows_conn *conn) {
    ferrows_event *event = NULL;
    char reason[256] = "";
    send_text(conn, "close me");
    check("ferrows_conn_recv (the close)", ferrows_conn_recv(conn, WAIT_MS, &event));
    if (ferrows_event_type(event) != FERROWS_EVENT_CLOSED) {
        fail("expected the peer's close, got a %s message", type_name(ferrows_event_type(event)));
    }
    check("ferrows_event_message", ferrows_event_message(event, reason, sizeof reason, NULL));
    if (ferrows_event_result(event) != FERROWS_OK) {
        fail("the peer's close ended in %s: %s (code %u)",
             ferrows_result_str(ferrows_event_result(event)), reason,
             ferrows_event_close_code(event));
    }
    if (ferrows_event_close_code(event) != 4002 || strcmp(reason, "peer bye") != 0) {
        fail("expected the close 4002 'peer bye', got %u '%s'", ferrows_event_close_code(event),
             reason);
    }
    ferrows_event_free(event);
}

static void play(ferrows_conn *conn, const struct plan *plan) {
    struct message messages[MESSAGE_COUNT];
    size_t count = make_messages(messages), i;
    uint64_t latency_us = 0;
    for (i = 0; i < count; i++) {
        check("ferrows_conn_send", ferrows_conn_send(conn, messages[i].type, messages[i].data,
                                                     messages[i].length, WAIT_MS));
        expect(conn, messages[i].type, messages[i].data, messages[i].length);
        free(messages[i].data);
    }
    if (plan->peer_fragments) {
        send_text(conn, "fragment me");
        expect(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"fragmented", 10);
    }
    check("ferrows_conn_ping", ferrows_conn_ping(conn, (const uint8_t *)"ping", 4, WAIT_MS,
                                                 &latency_us));
    if (plan->peer_closes) {
        expect_peer_close(conn);
    } else {
        check("ferrows_conn_close", ferrows_conn_close(conn, 4001, "bye"));
        check("ferrows_conn_wait_closed", ferrows_conn_wait_closed(conn, WAIT_MS));
    }
}

static uint8_t *read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    uint8_t *data = malloc(MAX_PEM);
    if (file == NULL || data == NULL) {
        fail("cannot read %s", path);
    }
    *length = fread(data, 1, MAX_PEM, file);
    if (ferror(file) || !feof(file)) {
        fail("%s: unreadable, or over %u bytes", path, MAX_PEM);
    }
    fclose(file);
    return data;
}

int main(int argc, char **argv) {
    struct plan plan = {0, 0};
    const char *ca = NULL, *cert = NULL, *key = NULL, *url = NULL;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    int client, i;

    if (argc < 2 || (strcmp(argv[1], "client") != 0 && strcmp(argv[1], "server") != 0)) {
        fail("usage: c_face client URL [--ca FILE] | server [--cert FILE --key FILE] "
             "[--peer-fragments] [--peer-closes]");
    }
    client = strcmp(argv[1], "client") == 0;
    for (i = 2; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--peer-fragments") == 0) {
            plan.peer_fragments = 1;
        } else if (strcmp(argv[i], "--peer-closes") == 0) {
            plan.peer_closes = 1;
        } else if (next != NULL && strcmp(argv[i], "--ca") == 0) {
            ca = argv[++i];
        } else if (next != NULL && strcmp(argv[i], "--cert") == 0) {
            cert = argv[++i];
        } else if (next != NULL && strcmp(argv[i], "--key") == 0) {
            key = argv[++i];
        } else if (client && url == NULL && argv[i][0] != '-') {
            url = argv[i];
        } else {
            fail("unexpected argument %s", argv[i]);
        }
    }
    if (client ? url == NULL : (cert == NULL) != (key == NULL)) {
        fail(client ? "a client needs a URL" : "--cert and --key go together");
    }

    check("ferrows_config_new", ferrows_config_new(&config));
    check("ferrows_config_set_max_message_size",
          ferrows_config_set_max_message_size(config, MAX_SIZE));
    check("ferrows_config_set_timeouts_ms", ferrows_config_set_timeouts_ms(config, WAIT_MS, WAIT_MS));
    if (ca != NULL) {
        size_t length;
        uint8_t *pem = read_file(ca, &length);
        check("ferrows_config_tls_add_ca_pem", ferrows_config_tls_add_ca_pem(config, pem, length));
        free(pem);
    }
    if (cert != NULL) {
        size_t cert_length, key_length;
        uint8_t *cert_pem = read_file(cert, &cert_length), *key_pem = read_file(key, &key_length);
        check("ferrows_config_tls_set_server_cert_pem",
              ferrows_config_tls_set_server_cert_pem(config, cert_pem, cert_length, key_pem,
                                                     key_length));
        free(cert_pem);
        free(key_pem);
    }

    if (client) {
        check("ferrows_connect_blocking", ferrows_connect_blocking(config, url, WAIT_MS, NULL, &conn));
        play(conn, &plan);
    } else {
        ferrows_server *server = NULL;
        check("ferrows_server_listen", ferrows_server_listen(config, "127.0.0.1", 0, NULL, &server));
        printf("listening on %u\n", (unsigned)ferrows_server_port(server));
        fflush(stdout);
        check("ferrows_server_accept", ferrows_server_accept(server, ACCEPT_MS, &conn));
        play(conn, &plan);
        ferrows_server_free(server);
    }
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    puts("conversation played");
    return 0;
}
