/* Connections: blocking connect, send and receive, closing, every timeout mode of
 * ferrows_conn_recv, and the queries of a connection. The peer is libferrows' own server
 * (echo_server in harness.c). */
#include "harness.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Opens a client to an echo server with a default config. */
static ferrows_conn *connect_to(echo_server *server, void *userdata) {
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char url[64], message[256];
    if (ferrows_config_new(&config) != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_config_new failed");
        return NULL;
    }
    echo_url(server, false, url, sizeof url);
    int32_t rc = ferrows_connect_blocking(config, url, long_wait_ms(), userdata, &conn);
    ferrows_config_free(config);
    if (rc != FERROWS_OK || conn == NULL) {
        h_last_error(message, sizeof message);
        h_fail(__FILE__, __LINE__, "ferrows_connect_blocking(%s) returned %d (%s): %s", url,
               (int)rc, ferrows_result_str(rc), message);
        return NULL;
    }
    return conn;
}

/* Sends (kind, data, len) and checks that the echo comes back identical. */
static bool echo_round_trip(ferrows_conn *conn, uint32_t type, const void *data, size_t len) {
    int32_t rc = ferrows_conn_send(conn, type, data, len, long_wait_ms());
    if (rc != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_conn_send returned %d (%s)", (int)rc,
               ferrows_result_str(rc));
        return false;
    }
    uint32_t kind = type == FERROWS_MESSAGE_TEXT ? FERROWS_EVENT_TEXT : FERROWS_EVENT_BINARY;
    ferrows_event *event = recv_event_of(conn, kind, long_wait_ms());
    bool ok = event && event_data_is(event, data, len);
    ferrows_event_free(event);
    return ok;
}

void test_connect_send_recv_text_and_binary(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    int marker = 0;
    uint8_t bytes[256];
    CHECK(server);
    conn = connect_to(server, &marker);
    CHECK(conn);

    static const char text[] = "hello, ferrows";
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)text,
                               strlen(text), long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, text, strlen(text)));
    CHECK(ferrows_event_userdata(event) == &marker);
    CHECK_EQ(ferrows_event_close_code(event), 0);
    CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
    ferrows_event_free(event);
    event = NULL;

    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)(255 - i); /* includes NUL and bytes that are not UTF-8 */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, bytes, sizeof bytes,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_BINARY, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, bytes, sizeof bytes));
    ferrows_event_free(event);
    event = NULL;

    /* Multi-byte UTF-8, and messages in order. */
    static const char utf8[] = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
    for (int i = 0; i < 3; i++) {
        char numbered[64];
        snprintf(numbered, sizeof numbered, "%s %d", utf8, i);
        CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)numbered,
                                   strlen(numbered), long_wait_ms()));
    }
    for (int i = 0; i < 3; i++) {
        char numbered[64];
        snprintf(numbered, sizeof numbered, "%s %d", utf8, i);
        event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
        CHECK(event);
        CHECK(event_data_is(event, numbered, strlen(numbered)));
        ferrows_event_free(event);
        event = NULL;
    }
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_empty_messages(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    size_t len = 99;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    /* NULL data is allowed with a zero length. */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, NULL, 0, long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    ferrows_event_data(event, &len);
    CHECK_EQ(len, 0);
    ferrows_event_free(event);
    event = NULL;

    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, (const uint8_t *)"x", 0,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_BINARY, long_wait_ms());
    CHECK(event);
    len = 99;
    ferrows_event_data(event, &len);
    CHECK_EQ(len, 0);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_one_mib_message(void) {
    const size_t size = 1u << 20; /* the default limit, which must be allowed */
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    uint8_t *data = malloc(size);
    CHECK(data);
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 13));
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_BINARY, data, size));
    /* Text of two-byte characters: the engine cuts text on character boundaries. */
    for (size_t i = 0; i + 1 < size; i += 2) {
        data[i] = 0xc3;
        data[i + 1] = 0xa9;
    }
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, data, size));
done:
    free(data);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_close_code_and_reason_seen_by_both_sides(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char reason[128], last[128], buf[64];
    uint16_t code = 0;
    int32_t result = -100;
    size_t len = 0;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_EQ(ferrows_conn_close_code(conn), 0); /* open */
    /* What was sent before the close is delivered first. */
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"last words", 10,
                               long_wait_ms()));
    CHECK_OK(ferrows_conn_close(conn, 4000, "bye now"));
    /* The echo of "last words" may or may not make it back before the server sees the
     * close; the CLOSED event follows. */
    for (int i = 0; i < 2; i++) {
        CHECK_OK(ferrows_conn_recv(conn, long_wait_ms(), &event));
        if (ferrows_event_type(event) != FERROWS_EVENT_TEXT)
            break;
        CHECK(event_data_is(event, "last words", 10));
        ferrows_event_free(event);
        event = NULL;
    }
    CHECKF(ferrows_event_type(event) == FERROWS_EVENT_CLOSED, "got a %s event",
           event_kind_name(ferrows_event_type(event)));
    CHECK_EQ(ferrows_event_close_code(event), 4000);
    CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
    event_message(event, reason, sizeof reason);
    CHECKF(strcmp(reason, "bye now") == 0, "client CLOSED reason \"%s\"", reason);
    /* No data on a CLOSED event. */
    len = 99;
    ferrows_event_data(event, &len);
    CHECK_EQ(len, 0);

    CHECK(echo_wait_closed(server, 1, long_wait_ms(), &code, reason, sizeof reason, &result,
                           last, sizeof last));
    CHECK_EQ(code, 4000);
    CHECK_EQ(result, FERROWS_OK);
    CHECKF(strcmp(reason, "bye now") == 0, "server CLOSED reason \"%s\"", reason);
    CHECKF(strcmp(last, "last words") == 0, "server's last message \"%s\"", last);

    CHECK_OK(ferrows_conn_wait_closed(conn, long_wait_ms()));
    CHECK_EQ(ferrows_conn_close_code(conn), 4000);
    CHECK_OK(ferrows_conn_close_reason(conn, buf, sizeof buf, &len));
    CHECKF(strcmp(buf, "bye now") == 0, "ferrows_conn_close_reason: \"%s\"", buf);
    CHECK_EQ(len, 7);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_closed_event_once_then_closed(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char reason[64];
    int64_t start;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_OK(ferrows_conn_close(conn, 1000, NULL));
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 1000);
    CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
    event_message(event, reason, sizeof reason);
    CHECKF(reason[0] == '\0', "reason \"%s\" for a close without one", reason);
    ferrows_event_free(event);
    event = NULL;
    /* Then FERROWS_CLOSED, in every timeout mode, at once. */
    CHECK_RC(ferrows_conn_recv(conn, 0, &event), FERROWS_CLOSED);
    CHECK(event == NULL);
    start = now_ms();
    CHECK_RC(ferrows_conn_recv(conn, 100, &event), FERROWS_CLOSED);
    CHECK_RC(ferrows_conn_recv(conn, -1, &event), FERROWS_CLOSED);
    CHECK_BETWEEN(now_ms() - start, 0, 90 + 100 * (time_scale() - 1));
    CHECK(event == NULL);
    CHECK_OK(ferrows_conn_wait_closed(conn, 0));
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_close_twice_is_fine(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_OK(ferrows_conn_close(conn, 1000, "first"));
    CHECK_OK(ferrows_conn_close(conn, 4001, "second")); /* closing already */
    CHECK_OK(ferrows_conn_wait_closed(conn, long_wait_ms()));
    CHECK_OK(ferrows_conn_close(conn, 1000, NULL)); /* closed already */
    CHECK_EQ(ferrows_conn_close_code(conn), 1000);
    CHECK_OK(ferrows_conn_wait_closed(conn, long_wait_ms()));
done:
    ferrows_conn_free(conn);
    echo_stop(server);
}

/* 1005 ("no status") is what a close frame without a code reports; the library takes it as
 * "close without a code" (an empty close frame) rather than refusing it. A reason cannot go
 * with it. */
void test_close_with_1005_sends_no_status(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    uint16_t code = 0;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_RC(ferrows_conn_close(conn, 1005, "a reason"), FERROWS_ERR_INVALID_ARG);
    CHECK_OK(ferrows_conn_close(conn, 1005, NULL));
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 1005);
    CHECK(echo_wait_closed(server, 1, long_wait_ms(), &code, NULL, 0, NULL, NULL, 0));
    CHECK_EQ(code, 1005);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_send_after_close_returns_closed(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_OK(ferrows_conn_close(conn, 1000, NULL));
    /* Closing: no more messages. */
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"late", 4, 0),
             FERROWS_CLOSED);
    CHECK_OK(ferrows_conn_wait_closed(conn, long_wait_ms()));
    /* Closed. */
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, (const uint8_t *)"late", 4,
                               long_wait_ms()),
             FERROWS_CLOSED);
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, NULL, 0, -1), FERROWS_CLOSED);
    CHECK_RC(ferrows_conn_ping(conn, NULL, 0, long_wait_ms(), NULL), FERROWS_CLOSED);
    CHECK_EQ(ferrows_conn_buffered_amount(conn), 0);
done:
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_recv_timeout_zero_returns_again_at_once(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = (ferrows_event *)&conn; /* must be overwritten with NULL */
    int64_t start;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    start = now_ms();
    CHECK_RC(ferrows_conn_recv(conn, 0, &event), FERROWS_AGAIN);
    CHECK_BETWEEN(now_ms() - start, 0, 100 * time_scale());
    CHECK(event == NULL);
done:
    if (event != (ferrows_event *)&conn)
        ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_recv_timeout_100_returns_timeout(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    int64_t start;
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    start = now_ms();
    CHECK_RC(ferrows_conn_recv(conn, 100, &event), FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 80, 1000 * time_scale());
    CHECK(event == NULL);
    /* Still usable afterwards. */
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, "after", 5));
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

/* Waits until another thread is inside ferrows_conn_recv on `conn`: a receive of ours is
 * then refused with FERROWS_ERR_CONCURRENCY (the flag that call holds). */
static bool wait_until_receiving(ferrows_conn *conn) {
    int64_t deadline = now_ms() + long_wait_ms();
    for (long tries = 0; tries < 10000000L && now_ms() < deadline; tries++) {
        ferrows_event *event = NULL;
        int32_t rc = ferrows_conn_recv(conn, 0, &event);
        ferrows_event_free(event);
        if (rc == FERROWS_ERR_CONCURRENCY)
            return true;
        if (rc != FERROWS_AGAIN) {
            h_fail(__FILE__, __LINE__, "probing the receiver: %d (%s)", (int)rc,
                   ferrows_result_str(rc));
            return false;
        }
        sched_yield();
    }
    h_fail(__FILE__, __LINE__, "no other thread started receiving within %d ms",
           long_wait_ms());
    return false;
}

/* ferrows_conn_recv while wait_until_receiving may probe: a receive that starts during a
 * probe is refused as concurrent, and tried again once the prober had a turn. */
static int32_t recv_beside_probe(ferrows_conn *conn, int timeout_ms, ferrows_event **event) {
    int64_t deadline = now_ms() + long_wait_ms();
    int32_t rc = ferrows_conn_recv(conn, timeout_ms, event);
    for (long tries = 0; tries < 10000000L && rc == FERROWS_ERR_CONCURRENCY && now_ms() < deadline;
         tries++) {
        sched_yield();
        rc = ferrows_conn_recv(conn, timeout_ms, event);
    }
    return rc;
}

struct late_sender {
    ferrows_conn *conn;
    int32_t rc;
};

/* Sends once the test thread waits in ferrows_conn_recv(-1); if it never does, closes the
 * connection so that the wait ends anyway. */
static void late_send_body(void *arg) {
    struct late_sender *late = arg;
    if (!wait_until_receiving(late->conn)) {
        ferrows_conn_close(late->conn, 1000, "the receiver was never seen");
        return;
    }
    late->rc = ferrows_conn_send(late->conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"late", 4,
                                 long_wait_ms());
}

void test_recv_timeout_forever_returns_when_data_arrives(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    h_thread *thread = NULL;
    struct late_sender late = {NULL, -100};
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    late.conn = conn;
    /* Another thread sends once this one is seen waiting in the receive. */
    thread = h_thread_start(late_send_body, &late);
    CHECK(thread);
    CHECK_OK(recv_beside_probe(conn, -1, &event));
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_RC(late.rc, FERROWS_OK);
    CHECKF(ferrows_event_type(event) == FERROWS_EVENT_TEXT, "got a %s event",
           event_kind_name(ferrows_event_type(event)));
    CHECK(event_data_is(event, "late", 4));
done:
    h_thread_join(thread, long_wait_ms());
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_recv_negative_timeout_is_invalid(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL, *other = NULL;
    ferrows_event *event = NULL;
    char url[64];
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_OK(ferrows_config_new(&config));
    echo_url(server, false, url, sizeof url);
    static const int32_t bad[] = {-2, -100, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(ferrows_conn_recv(conn, bad[i], &event), FERROWS_ERR_INVALID_ARG);
        CHECK(event == NULL);
        CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, bad[i]),
                 FERROWS_ERR_INVALID_ARG);
        CHECK_RC(ferrows_conn_ping(conn, NULL, 0, bad[i], NULL), FERROWS_ERR_INVALID_ARG);
        CHECK_RC(ferrows_conn_wait_closed(conn, bad[i]), FERROWS_ERR_INVALID_ARG);
        CHECK_RC(ferrows_connect_blocking(config, url, bad[i], NULL, &other),
                 FERROWS_ERR_INVALID_ARG);
        CHECK(other == NULL);
    }
    /* Nothing was sent by the refused calls, and the connection still works. */
    CHECK_RC(ferrows_conn_recv(conn, 0, &event), FERROWS_AGAIN);
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, "fine", 4));
done:
    ferrows_event_free(event);
    ferrows_conn_free(other);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

struct receiver {
    ferrows_conn *conn;
    int32_t rc;
};

static void receiver_body(void *arg) {
    struct receiver *r = arg;
    ferrows_event *event = NULL;
    r->rc = recv_beside_probe(r->conn, 1500, &event);
    ferrows_event_free(event);
}

void test_two_receivers_are_refused(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    h_thread *thread = NULL;
    struct receiver r = {NULL, -100};
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    r.conn = conn;
    thread = h_thread_start(receiver_body, &r);
    CHECK(thread);
    CHECK(wait_until_receiving(conn));
    CHECK_RC(ferrows_conn_recv(conn, 0, &event), FERROWS_ERR_CONCURRENCY);
    CHECK_RC(ferrows_conn_recv(conn, 100, &event), FERROWS_ERR_CONCURRENCY);
    CHECK(event == NULL);
    /* Sending while another thread receives is allowed. */
    CHECK_OK(ferrows_conn_ping(conn, (const uint8_t *)"p", 1, 0, NULL));
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_RC(r.rc, FERROWS_TIMEOUT);
    /* Once the other receiver is gone, receiving works. */
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, "mine", 4));
done:
    h_thread_join(thread, long_wait_ms());
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_ping_measures_latency(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    uint64_t latency = 0;
    uint8_t big[126];
    CHECK(server);
    conn = connect_to(server, NULL);
    CHECK(conn);
    CHECK_OK(ferrows_conn_ping(conn, (const uint8_t *)"abc", 3, long_wait_ms(), &latency));
    CHECKF(latency > 0 && latency < (uint64_t)long_wait_ms() * 1000,
           "latency %llu us", (unsigned long long)latency);
    CHECK_OK(ferrows_conn_ping(conn, NULL, 0, long_wait_ms(), NULL));
    CHECK_OK(ferrows_conn_ping(conn, (const uint8_t *)"no wait", 7, 0, NULL));
    memset(big, 'p', sizeof big);
    CHECK_OK(ferrows_conn_ping(conn, big, 125, long_wait_ms(), NULL));
    CHECK_RC(ferrows_conn_ping(conn, big, 126, long_wait_ms(), NULL), FERROWS_ERR_INVALID_ARG);
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, "still open", 10));
done:
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_conn_queries(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char buf[128], expected[64], tiny[4] = "abc";
    size_t len = 0;
    int first = 1, second = 2;
    CHECK(server);
    conn = connect_to(server, &first);
    CHECK(conn);

    snprintf(expected, sizeof expected, "127.0.0.1:%u", (unsigned)echo_port(server));
    CHECK_OK(ferrows_conn_peer_address(conn, buf, sizeof buf, &len));
    CHECKF(strcmp(buf, expected) == 0, "peer address \"%s\", expected \"%s\"", buf, expected);
    CHECK_EQ(len, strlen(expected));
    /* A short buffer: the needed length, nothing written. */
    len = 0;
    CHECK_RC(ferrows_conn_peer_address(conn, tiny, sizeof tiny, &len),
             FERROWS_ERR_BUFFER_TOO_SMALL);
    CHECK_EQ(len, strlen(expected));
    CHECK(memcmp(tiny, "abc", 4) == 0);
    /* Exactly enough room for the text and its NUL. */
    CHECK_OK(ferrows_conn_peer_address(conn, buf, strlen(expected) + 1, NULL));
    CHECK_RC(ferrows_conn_peer_address(conn, buf, strlen(expected), NULL),
             FERROWS_ERR_BUFFER_TOO_SMALL);

    CHECK_OK(ferrows_conn_subprotocol(conn, buf, sizeof buf, &len));
    CHECK_EQ(len, 0);
    CHECK(buf[0] == '\0');
    CHECK_OK(ferrows_conn_close_reason(conn, buf, sizeof buf, &len));
    CHECK_EQ(len, 0);
    CHECK_EQ(ferrows_conn_close_code(conn), 0);
    CHECK_RC(ferrows_conn_wait_closed(conn, 0), FERROWS_AGAIN);
    CHECK_RC(ferrows_conn_wait_closed(conn, 50), FERROWS_TIMEOUT);
    CHECK_EQ(ferrows_conn_buffered_amount(conn), 0);

    /* Userdata: set at connect, changed later. */
    CHECK(echo_round_trip(conn, FERROWS_MESSAGE_TEXT, "one", 3));
    CHECK_OK(ferrows_conn_set_userdata(conn, &second));
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"two", 3,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(ferrows_event_userdata(event) == &second);
    /* A message event has no close code, no message. */
    CHECK_EQ(ferrows_event_close_code(event), 0);
    CHECK_OK(ferrows_event_message(event, buf, sizeof buf, &len));
    CHECK_EQ(len, 0);
    CHECK_EQ(ferrows_event_take_conn(event) == NULL, 1);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_connect_blocking_timeouts(void) {
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char url[64], message[256];
    uint16_t port = 0;
    int64_t start;
    int silent = raw_listen(&port), closed = -1;
    CHECK(silent >= 0);
    CHECK_OK(ferrows_config_new(&config));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);

    /* 0 is refused ("0 is invalid, use ferrows_connect"), at once. */
    start = now_ms();
    CHECK_RC(ferrows_connect_blocking(config, url, 0, NULL, &conn), FERROWS_ERR_INVALID_ARG);
    CHECK_BETWEEN(now_ms() - start, 0, 100 * time_scale());
    CHECK(conn == NULL);
    /* > 0: the caller's timeout. */
    start = now_ms();
    CHECK_RC(ferrows_connect_blocking(config, url, 100, NULL, &conn), FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 80, 1000 * time_scale());
    CHECK(conn == NULL);
    /* -1: until the config's open timeout. */
    CHECK_OK(ferrows_config_set_timeouts_ms(config, 300, 1000));
    start = now_ms();
    CHECK_RC(ferrows_connect_blocking(config, url, -1, NULL, &conn), FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 250, 3000 * time_scale());
    CHECK(conn == NULL);
    h_last_error(message, sizeof message);
    CHECKF(message[0] != '\0', "no error message after a timeout");

    /* Refused: an I/O error, with a message. */
    closed = closed_port_reserve(&port);
    CHECK(closed >= 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn), FERROWS_ERR_IO);
    CHECK(conn == NULL);
    h_last_error(message, sizeof message);
    CHECKF(message[0] != '\0', "no error message after a refused connection");
done:
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    closed_port_release(closed);
    if (silent >= 0)
        close(silent);
}
