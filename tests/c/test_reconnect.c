/* Reconnection: a queue-driven handle that survives a server restart (RECONNECTING, then
 * OPEN on the same handle), retries after 503 but not after 403; the blocking
 * ferrows_connect_retrying; the policy setter. The servers are hand-made on raw sockets,
 * so each attempt is seen (and answered) by the test. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Fast backoff for the tests: 20 ms at first, doubling up to 100 ms. */
static int32_t set_fast_reconnect(ferrows_config *config, uint32_t max_attempts) {
    return ferrows_config_set_reconnect(config, true, 20, 2.0, 100, 0.5, max_attempts);
}

/* Listens on 127.0.0.1:port again (SO_REUSEADDR: the old connections may linger). */
static int listen_on(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0) {
        h_fail(__FILE__, __LINE__, "cannot listen on port %u", (unsigned)port);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Accepts one client, reads its request and answers `status` without upgrading. */
static bool answer_status(int listen_fd, int status) {
    struct pollfd p = {listen_fd, POLLIN, 0};
    char head[4096], response[128];
    if (poll(&p, 1, long_wait_ms()) != 1) {
        h_fail(__FILE__, __LINE__, "no client connected within %d ms", long_wait_ms());
        return false;
    }
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0)
        return false;
    snprintf(response, sizeof response,
             "HTTP/1.1 %d Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
    bool ok = raw_read_head(fd, head, sizeof head) &&
              raw_send_all(fd, response, strlen(response));
    close(fd);
    return ok;
}

/* Takes events until one of `kind`, allowing only RECONNECTING events before it (counted
 * into *reconnecting, their results checked against `reconnect_result` unless it is 0). */
static ferrows_event *next_after_reconnecting(ferrows_queue *queue, uint32_t kind,
                                              int32_t reconnect_result, int *reconnecting) {
    for (int i = 0; i < 1000; i++) {
        ferrows_event *event = NULL;
        int32_t rc = ferrows_queue_next(queue, long_wait_ms(), &event);
        if (rc != FERROWS_OK) {
            h_fail(__FILE__, __LINE__, "no event: %s", ferrows_result_str(rc));
            return NULL;
        }
        uint32_t got = ferrows_event_type(event);
        if (got == kind)
            return event;
        int32_t result = ferrows_event_result(event);
        ferrows_event_free(event);
        if (got != FERROWS_EVENT_RECONNECTING ||
            (reconnect_result != 0 && result != reconnect_result)) {
            h_fail(__FILE__, __LINE__, "got %s (result %d) waiting for %s", event_kind_name(got),
                   (int)result, event_kind_name(kind));
            return NULL;
        }
        (*reconnecting)++;
    }
    h_fail(__FILE__, __LINE__, "1000 RECONNECTING events without %s", event_kind_name(kind));
    return NULL;
}

void test_reconnect_keeps_one_handle_across_a_server_restart(void) {
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64], request[4096];
    uint16_t port = 0;
    int listen_fd = -1, peer = -1, reconnecting = 0, tag = 7;
    /* A free port, listened on with SO_REUSEADDR, so that the restart can bind it again
     * while the dropped connection is in TIME_WAIT. */
    closed_port_release(closed_port_reserve(&port));
    CHECK(port != 0);
    CHECK((listen_fd = listen_on(port)) >= 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(set_fast_reconnect(config, 0));
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK_OK(ferrows_connect(config, url, queue, &tag, &conn));
    CHECK((peer = raw_ws_accept(listen_fd, request, sizeof request)) >= 0);
    CHECK((event = next_event_of(queue, FERROWS_EVENT_OPEN, long_wait_ms())));
    ferrows_event_free(event);
    event = NULL;

    /* The server goes away: its connection drops, and nothing listens for a while. */
    close(peer);
    peer = -1;
    close(listen_fd);
    listen_fd = -1;
    CHECK((event = next_event_of(queue, FERROWS_EVENT_RECONNECTING, long_wait_ms())));
    CHECK_EQ(ferrows_event_close_code(event), 1006);
    CHECK(ferrows_event_userdata(event) == &tag);
    ferrows_event_free(event);
    event = NULL;
    /* Two refused attempts, each reported. */
    for (int refused = 0; refused < 2; refused++) {
        CHECK((event = next_event_of(queue, FERROWS_EVENT_RECONNECTING, long_wait_ms())));
        CHECK_RC(ferrows_event_result(event), FERROWS_ERR_IO);
        ferrows_event_free(event);
        event = NULL;
    }
    /* While reconnecting, sends say the connection is not open. */
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0),
             FERROWS_ERR_STATE);

    /* The server is back on the same port: the same handle opens again. */
    CHECK((listen_fd = listen_on(port)) >= 0);
    CHECK((peer = raw_ws_accept(listen_fd, request, sizeof request)) >= 0);
    CHECK((event = next_after_reconnecting(queue, FERROWS_EVENT_OPEN, FERROWS_ERR_IO,
                                           &reconnecting)));
    CHECK(ferrows_event_userdata(event) == &tag);
    ferrows_event_free(event);
    event = NULL;
    CHECK(raw_ws_send_frame(peer, true, 0x1, "back", 4, false));
    CHECK((event = next_event_of(queue, FERROWS_EVENT_TEXT, long_wait_ms())));
    CHECK(event_data_is(event, "back", 4));
    ferrows_event_free(event);
    event = NULL;
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"hi", 2,
                               long_wait_ms()));

    /* Closed by the application: final, no reconnection. */
    CHECK_OK(ferrows_conn_close(conn, 1000, "done"));
    uint16_t code = 0;
    char reason[64];
    CHECK(raw_ws_read_close(peer, &code, reason, sizeof reason));
    CHECK_EQ(code, 1000);
    close(peer);
    peer = -1;
    CHECK((event = next_event_of(queue, FERROWS_EVENT_CLOSED, long_wait_ms())));
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_queue_free(queue);
    ferrows_config_free(config);
    if (peer >= 0)
        close(peer);
    if (listen_fd >= 0)
        close(listen_fd);
}

void test_reconnect_retries_after_503_not_after_403(void) {
    ferrows_config *config = NULL;
    ferrows_queue *queue = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64], request[4096];
    uint16_t port = 0;
    int listen_fd = raw_listen(&port), peer = -1;
    CHECK(listen_fd >= 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(set_fast_reconnect(config, 0));
    CHECK_OK(ferrows_queue_new(&queue));

    /* 503: reported, then retried; the retry gets 101. */
    CHECK_OK(ferrows_connect(config, url, queue, NULL, &conn));
    CHECK(answer_status(listen_fd, 503));
    CHECK((event = next_event_of(queue, FERROWS_EVENT_RECONNECTING, long_wait_ms())));
    CHECK_RC(ferrows_event_result(event), FERROWS_ERR_HANDSHAKE);
    CHECK_EQ(ferrows_event_close_code(event), 0);
    ferrows_event_free(event);
    event = NULL;
    CHECK((peer = raw_ws_accept(listen_fd, request, sizeof request)) >= 0);
    CHECK((event = next_event_of(queue, FERROWS_EVENT_OPEN, long_wait_ms())));
    ferrows_event_free(event);
    event = NULL;
    ferrows_conn_free(conn);
    conn = NULL;

    /* 403: an ERROR event comes next, no RECONNECTING, so no retry was scheduled. */
    CHECK_OK(ferrows_connect(config, url, queue, NULL, &conn));
    CHECK(answer_status(listen_fd, 403));
    CHECK((event = next_event_of(queue, FERROWS_EVENT_ERROR, long_wait_ms())));
    CHECK_RC(ferrows_event_result(event), FERROWS_ERR_HANDSHAKE);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_queue_free(queue);
    ferrows_config_free(config);
    if (peer >= 0)
        close(peer);
    if (listen_fd >= 0)
        close(listen_fd);
}

/* The server side of the blocking test: answers each status in turn (101 upgrades). */
typedef struct {
    int listen_fd;
    const int *statuses;
    int count;
    int answered;
    int upgraded_fd;
} scripted_server;

static void run_script(void *arg) {
    scripted_server *s = arg;
    char request[4096];
    for (int i = 0; i < s->count; i++) {
        if (s->statuses[i] == 101) {
            s->upgraded_fd = raw_ws_accept(s->listen_fd, request, sizeof request);
            if (s->upgraded_fd < 0)
                return;
        } else if (!answer_status(s->listen_fd, s->statuses[i])) {
            return;
        }
        s->answered++;
    }
}

void test_connect_retrying_returns_the_next_connected_handle(void) {
    static const int unavailable_twice[] = {503, 503, 101};
    static const int forbidden[] = {403};
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    h_thread *thread = NULL;
    char url[64];
    uint16_t port = 0;
    int listen_fd = raw_listen(&port), refused_fd = -1;
    scripted_server script = {listen_fd, unavailable_twice, 3, 0, -1};
    CHECK(listen_fd >= 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(set_fast_reconnect(config, 0));

    CHECK((thread = h_thread_start(run_script, &script)));
    CHECK_OK(ferrows_connect_retrying(config, url, long_wait_ms(), NULL, &conn));
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_EQ(script.answered, 3);
    ferrows_conn_free(conn);
    conn = NULL;

    /* 403: given up at the first answer. */
    script = (scripted_server){listen_fd, forbidden, 1, 0, -1};
    CHECK((thread = h_thread_start(run_script, &script)));
    CHECK_RC(ferrows_connect_retrying(config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_HANDSHAKE);
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_EQ(script.answered, 1);
    CHECK(conn == NULL);

    /* Nothing listens: max_attempts failures, then the last error. */
    CHECK((refused_fd = closed_port_reserve(&port)) >= 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(set_fast_reconnect(config, 3));
    CHECK_RC(ferrows_connect_retrying(config, url, long_wait_ms(), NULL, &conn), FERROWS_ERR_IO);
    /* Without a limit, the caller's timeout ends it. */
    CHECK_OK(set_fast_reconnect(config, 0));
    int64_t start = now_ms();
    CHECK_RC(ferrows_connect_retrying(config, url, 300, NULL, &conn), FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 250, 3000 * time_scale());
    CHECK(conn == NULL);
done:
    if (thread)
        h_thread_join(thread, long_wait_ms());
    if (script.upgraded_fd >= 0)
        close(script.upgraded_fd);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    closed_port_release(refused_fd);
    if (listen_fd >= 0)
        close(listen_fd);
}

void test_reconnect_policy_is_checked(void) {
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_reconnect(config, true, 10, 0.5, 100, 0.5, 0),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_reconnect(config, true, 10, 2.0, 100, 1.5, 0),
             FERROWS_ERR_INVALID_ARG);
    CHECK_OK(ferrows_config_set_reconnect(config, false, 0, 0.0, 0, 0.0, 0));
    CHECK_RC(ferrows_config_set_reconnect(NULL, true, 10, 2.0, 100, 0.5, 0),
             FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_connect_retrying(config, "ws://127.0.0.1:1/", 0, NULL, &conn),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_connect_retrying(config, "http://x/", -1, NULL, &conn),
             FERROWS_ERR_INVALID_URI);
    CHECK_RC(ferrows_connect_retrying(NULL, "ws://x/", -1, NULL, &conn), FERROWS_ERR_NULL_PARAM);
done:
    ferrows_config_free(config);
}
