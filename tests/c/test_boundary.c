/* The boundary: NULL pointers, NULL frees, invalid arguments, and the last error message. */
#include "harness.h"

#include <string.h>
#include <unistd.h>

/* The last error message must say something after a refused call. */
#define CHECK_LAST_ERROR()                                                                 \
    do {                                                                                   \
        char e_[256] = "";                                                                 \
        h_last_error(e_, sizeof e_);                                                       \
        CHECKF(e_[0] != '\0', "no last error message after a failed call");                \
    } while (0)

#define CHECK_NULL_PARAM(expr)                                                             \
    do {                                                                                   \
        CHECK_RC(expr, FERROWS_ERR_NULL_PARAM);                                            \
        CHECK_LAST_ERROR();                                                                \
    } while (0)

static void noop_call(void *context, ferrows_event *event) {
    (void)context;
    ferrows_event_free(event);
}

void test_null_arguments_are_refused(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_conn *conn = NULL, *out_conn = NULL;
    ferrows_server *out_server = NULL;
    ferrows_event *event = NULL;
    ferrows_event_callback callback = {NULL, noop_call, NULL};
    char url[64], buf[64];
    size_t len = 0;
    int fd = -1;
    size_t data_len = 123;
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));

    /* config */
    CHECK_NULL_PARAM(ferrows_config_new(NULL));
    CHECK_NULL_PARAM(ferrows_config_set_max_message_size(NULL, 10));
    CHECK_NULL_PARAM(ferrows_config_set_max_frame_size(NULL, 10));
    CHECK_NULL_PARAM(ferrows_config_set_timeouts_ms(NULL, 10, 10));
    CHECK_NULL_PARAM(ferrows_config_set_keepalive_ms(NULL, 10, 10));
    CHECK_NULL_PARAM(ferrows_config_set_send_watermarks(NULL, 1, 10));
    CHECK_NULL_PARAM(ferrows_config_set_recv_watermarks(NULL, 1, 10));
    CHECK_NULL_PARAM(ferrows_config_add_subprotocol(NULL, "chat"));
    CHECK_NULL_PARAM(ferrows_config_add_subprotocol(config, NULL));
    CHECK_NULL_PARAM(ferrows_config_add_request_header(NULL, "X-A", "b"));
    CHECK_NULL_PARAM(ferrows_config_add_request_header(config, NULL, "b"));
    CHECK_NULL_PARAM(ferrows_config_add_request_header(config, "X-A", NULL));
    CHECK_NULL_PARAM(ferrows_config_add_response_header(NULL, "X-A", "b"));
    CHECK_NULL_PARAM(ferrows_config_add_response_header(config, NULL, "b"));
    CHECK_NULL_PARAM(ferrows_config_add_response_header(config, "X-A", NULL));
    CHECK_NULL_PARAM(ferrows_config_set_origin(NULL, "https://a"));
    CHECK_NULL_PARAM(ferrows_config_set_origin(config, NULL));
    CHECK_NULL_PARAM(ferrows_config_add_allowed_origin(NULL, "https://a"));
    CHECK_NULL_PARAM(ferrows_config_set_max_connections(NULL, 10));
    CHECK_NULL_PARAM(ferrows_config_tls_use_system_roots(NULL, true));
    CHECK_NULL_PARAM(ferrows_config_tls_add_ca_pem(NULL, (const uint8_t *)"x", 1));
    CHECK_NULL_PARAM(ferrows_config_tls_add_ca_pem(config, NULL, 5));
    CHECK_NULL_PARAM(ferrows_config_tls_set_client_cert_pem(NULL, (const uint8_t *)"c", 1,
                                                            (const uint8_t *)"k", 1));
    CHECK_NULL_PARAM(
        ferrows_config_tls_set_client_cert_pem(config, NULL, 1, (const uint8_t *)"k", 1));
    CHECK_NULL_PARAM(
        ferrows_config_tls_set_client_cert_pem(config, (const uint8_t *)"c", 1, NULL, 1));
    CHECK_NULL_PARAM(ferrows_config_tls_set_server_cert_pem(NULL, (const uint8_t *)"c", 1,
                                                            (const uint8_t *)"k", 1));
    CHECK_NULL_PARAM(
        ferrows_config_tls_set_server_cert_pem(config, NULL, 1, (const uint8_t *)"k", 1));
    CHECK_NULL_PARAM(
        ferrows_config_tls_set_server_cert_pem(config, (const uint8_t *)"c", 1, NULL, 1));
    CHECK_NULL_PARAM(ferrows_config_tls_set_server_name(NULL, "a"));
    CHECK_NULL_PARAM(ferrows_config_tls_set_server_name(config, NULL));
    CHECK_NULL_PARAM(ferrows_config_tls_skip_verification(NULL, false));
    /* NULL with a zero length is an empty buffer, not a missing one. */
    CHECK_OK(ferrows_config_tls_add_ca_pem(config, NULL, 0));

    /* connecting */
    CHECK_NULL_PARAM(ferrows_connect(NULL, url, queue, NULL, &out_conn));
    CHECK_NULL_PARAM(ferrows_connect(config, NULL, queue, NULL, &out_conn));
    CHECK_NULL_PARAM(ferrows_connect(config, url, NULL, NULL, &out_conn));
    CHECK_NULL_PARAM(ferrows_connect(config, url, queue, NULL, NULL));
    CHECK_NULL_PARAM(ferrows_connect_blocking(NULL, url, 100, NULL, &out_conn));
    CHECK_NULL_PARAM(ferrows_connect_blocking(config, NULL, 100, NULL, &out_conn));
    CHECK_NULL_PARAM(ferrows_connect_blocking(config, url, 100, NULL, NULL));
    CHECK(out_conn == NULL);

    /* connections */
    CHECK_NULL_PARAM(ferrows_conn_attach(NULL, queue));
    CHECK_NULL_PARAM(ferrows_conn_attach(conn, NULL));
    CHECK_NULL_PARAM(ferrows_conn_set_userdata(NULL, NULL));
    CHECK_NULL_PARAM(ferrows_conn_send(NULL, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0));
    CHECK_NULL_PARAM(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, NULL, 5, 0));
    CHECK_NULL_PARAM(ferrows_conn_recv(NULL, 0, &event));
    CHECK_NULL_PARAM(ferrows_conn_recv(conn, 0, NULL));
    CHECK_NULL_PARAM(ferrows_conn_ping(NULL, NULL, 0, 0, NULL));
    CHECK_NULL_PARAM(ferrows_conn_ping(conn, NULL, 3, 0, NULL));
    CHECK_NULL_PARAM(ferrows_conn_close(NULL, 1000, NULL));
    CHECK_NULL_PARAM(ferrows_conn_wait_closed(NULL, 0));
    CHECK_EQ(ferrows_conn_close_code(NULL), 0);
    CHECK_NULL_PARAM(ferrows_conn_close_reason(NULL, buf, sizeof buf, &len));
    CHECK_NULL_PARAM(ferrows_conn_subprotocol(NULL, buf, sizeof buf, &len));
    CHECK_NULL_PARAM(ferrows_conn_peer_address(NULL, buf, sizeof buf, &len));
    CHECK_EQ(ferrows_conn_buffered_amount(NULL), 0);
    /* A NULL buffer is a buffer too small, with the needed length. */
    len = 99;
    CHECK_RC(ferrows_conn_peer_address(conn, NULL, 0, &len), FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK(len > 0 && len < 99);
    CHECK_RC(ferrows_conn_peer_address(conn, NULL, 0, NULL), FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_RC(ferrows_conn_close_reason(conn, NULL, 0, &len), FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ(len, 0);
    CHECK_RC(ferrows_conn_subprotocol(conn, NULL, 0, NULL), FERROWS_ERR_BUFFER_TOO_SMALL);
    /* The connection is unharmed by all this. */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"ok", 2,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, "ok", 2));
    ferrows_event_free(event);
    event = NULL;

    /* events: documented defaults for NULL */
    CHECK_EQ(ferrows_event_type(NULL), 0);
    CHECK(ferrows_event_userdata(NULL) == NULL);
    CHECK_EQ(ferrows_event_close_code(NULL), 0);
    CHECK(ferrows_event_take_conn(NULL) == NULL);
    ferrows_event_data(NULL, &data_len);
    CHECK_EQ(data_len, 0);
    ferrows_event_data(NULL, NULL);
    /* Not documented for NULL, but must not crash nor claim success. */
    CHECK(ferrows_event_result(NULL) != FERROWS_OK);
    CHECK_NULL_PARAM(ferrows_event_message(NULL, buf, sizeof buf, &len));

    /* queues */
    CHECK_NULL_PARAM(ferrows_queue_new(NULL));
    CHECK_NULL_PARAM(ferrows_queue_fd(NULL, &fd));
    CHECK_NULL_PARAM(ferrows_queue_fd(queue, NULL));
    CHECK_NULL_PARAM(ferrows_queue_next(NULL, 0, &event));
    CHECK_NULL_PARAM(ferrows_queue_next(queue, 0, NULL));
    CHECK_NULL_PARAM(ferrows_queue_wakeup(NULL));
    CHECK_NULL_PARAM(ferrows_queue_set_callback(NULL, callback));

    /* servers */
    CHECK_NULL_PARAM(ferrows_server_listen(NULL, "127.0.0.1", 0, NULL, &out_server));
    CHECK_NULL_PARAM(ferrows_server_listen(config, NULL, 0, NULL, &out_server));
    CHECK_NULL_PARAM(ferrows_server_listen(config, "127.0.0.1", 0, NULL, NULL));
    CHECK(out_server == NULL);
    CHECK_EQ(ferrows_server_port(NULL), 0);
    CHECK_NULL_PARAM(ferrows_server_accept(NULL, 0, &out_conn));
    CHECK_NULL_PARAM(ferrows_server_accept(echo_ferrows_server(server), 0, NULL));
    CHECK_NULL_PARAM(ferrows_server_shutdown(NULL, 0));

    /* last error: NULL buffer and NULL length are allowed */
    CHECK_RC(ferrows_last_error_message(NULL, 0, NULL), FERROWS_ERR_BUFFER_TOO_SMALL);
    len = 0;
    CHECK_RC(ferrows_last_error_message(NULL, 0, &len), FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK(len > 0);
    CHECK_OK(ferrows_last_error_message(buf, sizeof buf, NULL));
done:
    ferrows_event_free(event);
    ferrows_conn_free(out_conn);
    ferrows_server_free(out_server);
    ferrows_conn_free(conn);
    ferrows_queue_free(queue);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_free_null_is_a_no_op(void) {
    ferrows_config_free(NULL);
    ferrows_conn_free(NULL);
    ferrows_event_free(NULL);
    ferrows_queue_free(NULL);
    ferrows_server_free(NULL);
    CHECK(true); /* reaching here is the test */
done:;
}

void test_invalid_message_type(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64];
    static const uint32_t bad[] = {0, 3, 7, 0xffffffffu};
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(ferrows_conn_send(conn, bad[i], (const uint8_t *)"x", 1, 0),
                 FERROWS_ERR_INVALID_ARG);
        CHECK_LAST_ERROR();
    }
    /* Nothing was sent. */
    CHECK_RC(ferrows_conn_recv(conn, 200, &event), FERROWS_TIMEOUT);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_text_must_be_utf8(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64];
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "abc\xc3",          /* truncated sequence */
        "\xc0\xaf",         /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
    };
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)bad[i],
                                   strlen(bad[i]), 0),
                 FERROWS_ERR_INVALID_ARG);
        CHECK_LAST_ERROR();
        /* The same bytes as binary are fine. */
        CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, (const uint8_t *)bad[i],
                                   strlen(bad[i]), long_wait_ms()));
        event = recv_event_of(conn, FERROWS_EVENT_BINARY, long_wait_ms());
        CHECK(event);
        CHECK(event_data_is(event, bad[i], strlen(bad[i])));
        ferrows_event_free(event);
        event = NULL;
    }
    /* Embedded NULs are valid UTF-8. */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"a\0b", 3,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, "a\0b", 3));
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_invalid_close_codes(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64], long_reason[200];
    /* 1005 is covered by close_with_1005_sends_no_status. */
    static const uint16_t bad[] = {0, 999, 1004, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t rc = ferrows_conn_close(conn, bad[i], "x");
        CHECKF(rc == FERROWS_ERR_INVALID_ARG, "ferrows_conn_close(%u) returned %d (%s)",
               (unsigned)bad[i], (int)rc, ferrows_result_str(rc));
        CHECK_LAST_ERROR();
    }
    /* A reason over 123 bytes does not fit in a close frame. */
    memset(long_reason, 'r', 124);
    long_reason[124] = '\0';
    CHECK_RC(ferrows_conn_close(conn, 1000, long_reason), FERROWS_ERR_INVALID_ARG);
    /* A reason that is not UTF-8. */
    CHECK_RC(ferrows_conn_close(conn, 1000, "\xff"), FERROWS_ERR_INVALID_ARG);
    /* Still open after all the refused closes. */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"open", 4,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    ferrows_event_free(event);
    event = NULL;
    /* The longest reason, and a code from the private range, are fine. */
    long_reason[123] = '\0';
    CHECK_OK(ferrows_conn_close(conn, 4999, long_reason));
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 4999);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_invalid_config_values(void) {
    ferrows_config *config = NULL;
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_send_watermarks(config, 10, 5), FERROWS_ERR_INVALID_ARG);
    CHECK_LAST_ERROR();
    CHECK_RC(ferrows_config_set_send_watermarks(config, 0, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_recv_watermarks(config, 10, 5), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_recv_watermarks(config, 0, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_OK(ferrows_config_set_send_watermarks(config, 0, 1));
    CHECK_OK(ferrows_config_set_recv_watermarks(config, 5, 5));
    CHECK_RC(ferrows_config_set_max_connections(config, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_add_subprotocol(config, "\xff"), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_origin(config, "\xfe"), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_tls_set_server_name(config, "\xfe"), FERROWS_ERR_INVALID_ARG);
    /* Valid values are accepted. */
    CHECK_OK(ferrows_config_add_subprotocol(config, "chat"));
    CHECK_OK(ferrows_config_set_max_message_size(config, 0));
    CHECK_OK(ferrows_config_set_max_frame_size(config, 0));
    CHECK_OK(ferrows_config_set_timeouts_ms(config, 0, 0));
    CHECK_OK(ferrows_config_set_keepalive_ms(config, 0, 0));
    CHECK_OK(ferrows_config_add_allowed_origin(config, NULL));
done:
    ferrows_config_free(config);
}

/* Both header setters hold to the handshake's rule: a name is an HTTP token, a value has no
 * control character but tab. The last error names what is wrong. */
void test_invalid_headers(void) {
    static const struct {
        const char *name, *value, *complaint;
    } bad[] = {
        {"X-Bad", "a\r\nInjected: yes", "invalid value for header X-Bad"},
        {"X-Bad", "a\nb", "invalid value for header X-Bad"},
        {"X-Bad", "bell\a", "invalid value for header X-Bad"},
        {"X-Bad: x", "a", "invalid header name"},
        {"Bad Name", "a", "invalid header name"},
        {"", "a", "invalid header name"},
        {"X-\xc3\xa9", "a", "invalid header name"},
        {"X-Bad", "\xff", "not UTF-8"},
    };
    ferrows_result (*const setters[])(ferrows_config *, const char *, const char *) = {
        ferrows_config_add_request_header,
        ferrows_config_add_response_header,
    };
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char message[256];
    CHECK_OK(ferrows_config_new(&config));
    for (size_t s = 0; s < 2; s++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            CHECK_RC(setters[s](config, bad[i].name, bad[i].value), FERROWS_ERR_INVALID_ARG);
            h_last_error(message, sizeof message);
            CHECKF(strstr(message, bad[i].complaint) != NULL,
                   "setter %zu, header %zu: \"%s\" does not say \"%s\"", s, i, message,
                   bad[i].complaint);
        }
        /* Tabs and spaces inside a value, UTF-8 beyond ASCII, and empty values are fine. */
        CHECK_OK(setters[s](config, "X-Good", "a\tb c \xc3\xa9"));
        CHECK_OK(setters[s](config, "X-Empty", ""));
    }
    /* A header the handshake sets itself is refused when a client starts with it. */
    CHECK_OK(ferrows_config_add_request_header(config, "Sec-WebSocket-Key", "mine"));
    CHECK_RC(ferrows_connect_blocking(config, "ws://127.0.0.1:1/", long_wait_ms(), NULL, &conn),
             FERROWS_ERR_INVALID_ARG);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "Sec-WebSocket-Key") != NULL, "the last error: \"%s\"", message);
    CHECK(conn == NULL);
done:
    ferrows_conn_free(conn);
    ferrows_config_free(config);
}

void test_invalid_urls(void) {
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    static const char *const bad[] = {
        "", "not a url", "http://127.0.0.1/", "ws://", "ws://[::1/", "ws://host:99999/",
    };
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_queue_new(&queue));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t rc = ferrows_connect_blocking(config, bad[i], 1000, NULL, &conn);
        CHECKF(rc == FERROWS_ERR_INVALID_URI, "connect_blocking(\"%s\") returned %d (%s)",
               bad[i], (int)rc, ferrows_result_str(rc));
        CHECK_LAST_ERROR();
        CHECK(conn == NULL);
        /* "URL and TLS configuration errors are returned at once" */
        rc = ferrows_connect(config, bad[i], queue, NULL, &conn);
        CHECKF(rc == FERROWS_ERR_INVALID_URI, "connect(\"%s\") returned %d (%s)", bad[i],
               (int)rc, ferrows_result_str(rc));
        CHECK(conn == NULL);
    }
    /* ... and no event follows. */
    CHECK_RC(ferrows_queue_next(queue, 100, &event), FERROWS_TIMEOUT);
    /* A URL that is not UTF-8. */
    CHECK_RC(ferrows_connect_blocking(config, "ws://\xff/", 1000, NULL, &conn),
             FERROWS_ERR_INVALID_ARG);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_queue_free(queue);
    ferrows_config_free(config);
}

void test_last_error_message_and_short_buffers(void) {
    ferrows_config *config = NULL;
    char full[512], tiny[8] = "unset";
    size_t len = 0, needed = 0;
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_send_watermarks(config, 10, 5), FERROWS_ERR_INVALID_ARG);
    CHECK_OK(ferrows_last_error_message(full, sizeof full, &len));
    CHECK(len > 0);
    CHECK_EQ(strlen(full), len);
    /* Reading it does not clear it. */
    CHECK_OK(ferrows_last_error_message(full, sizeof full, &needed));
    CHECK_EQ(needed, len);
    /* A short buffer: the needed length (without the NUL), the buffer untouched. */
    CHECK(len + 1 > sizeof tiny);
    needed = 0;
    CHECK_RC(ferrows_last_error_message(tiny, sizeof tiny, &needed),
             FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ(needed, len);
    CHECK(strcmp(tiny, "unset") == 0);
    /* One byte short (no room for the NUL), then exactly enough. */
    CHECK_RC(ferrows_last_error_message(full, len, &needed), FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(ferrows_last_error_message(full, len + 1, &needed));
    CHECK_EQ(full[len], '\0');
    /* A different failure replaces it. */
    CHECK_NULL_PARAM(ferrows_config_add_subprotocol(config, NULL));
    CHECK_OK(ferrows_last_error_message(full, sizeof full, NULL));
    CHECKF(strstr(full, "name") != NULL, "the message does not name the argument: \"%s\"",
           full);
done:
    ferrows_config_free(config);
}

struct other_thread_error {
    char message[256];
    int32_t rc;
};

static void fail_on_other_thread(void *arg) {
    struct other_thread_error *other = arg;
    other->rc = ferrows_config_set_max_connections(NULL, 1);
    h_last_error(other->message, sizeof other->message);
}

void test_last_error_is_per_thread(void) {
    ferrows_config *config = NULL;
    h_thread *thread = NULL;
    struct other_thread_error other = {"", 0};
    char before[256], after[256];
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_max_connections(config, 0), FERROWS_ERR_INVALID_ARG);
    h_last_error(before, sizeof before);
    CHECK(before[0] != '\0');
    thread = h_thread_start(fail_on_other_thread, &other);
    CHECK(thread);
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_RC(other.rc, FERROWS_ERR_NULL_PARAM);
    CHECK(other.message[0] != '\0');
    CHECKF(strcmp(other.message, before) != 0, "both threads report \"%s\"", before);
    h_last_error(after, sizeof after);
    CHECKF(strcmp(after, before) == 0, "this thread's message changed from \"%s\" to \"%s\"",
           before, after);
done:
    h_thread_join(thread, long_wait_ms());
    ferrows_config_free(config);
}

/* Every call that does not return FERROWS_OK leaves a message of its own in the last error,
 * statuses included: it never describes an older call. Each check first leaves a stale
 * message, then expects another. */
#define CHECK_FRESH_ERROR(expr, expected)                                                  \
    do {                                                                                   \
        char stale_[256], fresh_[256];                                                     \
        CHECK_RC(ferrows_config_set_max_connections(NULL, 1), FERROWS_ERR_NULL_PARAM);     \
        h_last_error(stale_, sizeof stale_);                                               \
        CHECK_RC(expr, expected);                                                          \
        h_last_error(fresh_, sizeof fresh_);                                               \
        CHECKF(fresh_[0] != '\0' && strcmp(fresh_, stale_) != 0,                           \
               "%s left the last error \"%s\"", #expr, fresh_);                            \
    } while (0)

void test_every_status_sets_the_last_error(void) {
    raw_peer peer = RAW_PEER_INIT;
    ferrows_conn *conn = NULL;
    ferrows_queue *queue = NULL;
    ferrows_event *event = NULL;
    char tiny[2];
    size_t len = 0;
    CHECK_OK(ferrows_config_new(&peer.config));
    CHECK(raw_client_pair(&peer)); /* a raw client that never answers a close */
    conn = peer.accepted;
    CHECK_OK(ferrows_queue_new(&queue));

    CHECK_FRESH_ERROR(ferrows_queue_next(queue, 0, &event), FERROWS_AGAIN);
    CHECK_FRESH_ERROR(ferrows_queue_next(queue, 10, &event), FERROWS_TIMEOUT);
    CHECK_FRESH_ERROR(ferrows_conn_recv(conn, 0, &event), FERROWS_AGAIN);
    CHECK_FRESH_ERROR(ferrows_conn_recv(conn, 10, &event), FERROWS_TIMEOUT);
    CHECK_FRESH_ERROR(ferrows_conn_wait_closed(conn, 0), FERROWS_AGAIN);
    CHECK_FRESH_ERROR(ferrows_conn_peer_address(conn, tiny, sizeof tiny, &len),
                      FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_FRESH_ERROR(ferrows_conn_send(conn, 99, (const uint8_t *)"x", 1, 0),
                      FERROWS_ERR_INVALID_ARG);
    CHECK_FRESH_ERROR(ferrows_event_result(NULL), FERROWS_ERR_NULL_PARAM);
    /* The raw client never answers the close: the shutdown runs out of time. */
    CHECK_FRESH_ERROR(ferrows_server_shutdown(peer.server, 50), FERROWS_TIMEOUT);
    CHECK_FRESH_ERROR(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0),
                      FERROWS_CLOSED);
    /* It drops the TCP connection instead: CLOSED once, then FERROWS_CLOSED. */
    close(peer.fd);
    peer.fd = -1;
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_FRESH_ERROR(ferrows_event_message(event, NULL, 0, &len),
                      FERROWS_ERR_BUFFER_TOO_SMALL);
    ferrows_event_free(event);
    event = NULL;
    CHECK_FRESH_ERROR(ferrows_conn_recv(conn, 0, &event), FERROWS_CLOSED);
done:
    ferrows_event_free(event);
    ferrows_queue_free(queue);
    raw_peer_free(&peer);
}
