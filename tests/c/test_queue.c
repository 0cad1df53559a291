/* Queues: ferrows_queue_next in every timeout mode, the pollable fd, non-blocking connects,
 * servers reporting ACCEPT events, cross-thread wakeups, and callbacks. */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static bool fd_readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, timeout_ms);
    return n == 1 && (p.revents & POLLIN);
}

static ferrows_config *new_config(void) {
    ferrows_config *config = NULL;
    if (ferrows_config_new(&config) != FERROWS_OK)
        h_fail(__FILE__, __LINE__, "ferrows_config_new failed");
    return config;
}

/* What most queue tests stand on: a default config and a queue, an echo server and its URL
 * (or a URL the test sets), with the connection and the event a test holds;
 * queue_fixture_free releases it all. */
typedef struct {
    echo_server *server;
    char url[64];
    ferrows_config *config;
    ferrows_queue *queue;
    ferrows_conn *conn;
    ferrows_event *event;
} queue_fixture;

#define QUEUE_FIXTURE_INIT {NULL, "", NULL, NULL, NULL, NULL}

/* False (with the failure recorded) when a part could not be made. */
static bool queue_fixture_start(queue_fixture *f, bool with_echo_server) {
    if (with_echo_server) {
        f->server = echo_start(NULL);
        if (!f->server)
            return false;
        echo_url(f->server, false, f->url, sizeof f->url);
    }
    f->config = new_config();
    if (!f->config)
        return false;
    if (ferrows_queue_new(&f->queue) != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_queue_new failed");
        return false;
    }
    return true;
}

static void queue_fixture_free(queue_fixture *f) {
    ferrows_event_free(f->event);
    ferrows_conn_free(f->conn);
    ferrows_queue_free(f->queue);
    ferrows_config_free(f->config);
    echo_stop(f->server);
}

void test_queue_next_timeout_modes(void) {
    ferrows_queue *queue = NULL;
    ferrows_event *event = NULL;
    int64_t start;
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK(queue);
    start = now_ms();
    CHECK_RC(ferrows_queue_next(queue, 0, &event), FERROWS_AGAIN);
    CHECK_BETWEEN(now_ms() - start, 0, 100 * time_scale());
    CHECK(event == NULL);
    start = now_ms();
    CHECK_RC(ferrows_queue_next(queue, 100, &event), FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 80, 1000 * time_scale());
    CHECK(event == NULL);
    CHECK_RC(ferrows_queue_next(queue, -2, &event), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_queue_next(queue, INT32_MIN, &event), FERROWS_ERR_INVALID_ARG);
    CHECK(event == NULL);
done:
    ferrows_event_free(event);
    ferrows_queue_free(queue);
}

struct late_sender {
    ferrows_conn *conn;
    h_signal waiting; /* raised by the test thread as it calls ferrows_queue_next(-1) */
    int32_t rc;
};

static void late_send_body(void *arg) {
    struct late_sender *late = arg;
    if (h_signal_wait(&late->waiting, 1, long_wait_ms()))
        late->rc = ferrows_conn_send(late->conn, FERROWS_MESSAGE_TEXT,
                                     (const uint8_t *)"late", 4, long_wait_ms());
}

void test_queue_next_forever_returns_when_data_arrives(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    h_thread *thread = NULL;
    struct late_sender late = {NULL, H_SIGNAL_INIT, -100};
    int marker = 0;
    CHECK(queue_fixture_start(&f, true));
    CHECK_OK(ferrows_connect_blocking(f.config, f.url, long_wait_ms(), &marker, &f.conn));
    CHECK_OK(ferrows_conn_attach(f.conn, f.queue));
    late.conn = f.conn;
    thread = h_thread_start(late_send_body, &late);
    CHECK(thread);
    /* The message leaves only now, and comes back through the echo server: the wait
     * begins well before it arrives. */
    h_signal_raise(&late.waiting);
    f.event = next_event_of(f.queue, FERROWS_EVENT_TEXT, -1);
    CHECK(f.event);
    CHECK(event_data_is(f.event, "late", 4));
    CHECK(ferrows_event_userdata(f.event) == &marker);
done:
    if (thread && h_thread_join(thread, long_wait_ms()) && late.rc != FERROWS_OK)
        h_fail(__FILE__, __LINE__, "the late send returned %d", (int)late.rc);
    queue_fixture_free(&f);
}

/* Takes events with a zero timeout until FERROWS_AGAIN, appending TEXT payloads to `texts`;
 * returns how many events were taken, -1 on an unexpected result. */
static int drain(ferrows_queue *queue, char *texts, size_t texts_len) {
    for (int taken = 0; taken < 1000; taken++) {
        ferrows_event *event = NULL;
        int32_t rc = ferrows_queue_next(queue, 0, &event);
        if (rc == FERROWS_AGAIN)
            return event == NULL ? taken : -1;
        if (rc != FERROWS_OK) {
            h_fail(__FILE__, __LINE__, "ferrows_queue_next(0) returned %d (%s)", (int)rc,
                   ferrows_result_str(rc));
            return -1;
        }
        if (ferrows_event_type(event) == FERROWS_EVENT_TEXT && texts) {
            size_t len = 0, used = strlen(texts);
            const uint8_t *data = ferrows_event_data(event, &len);
            if (used + len + 2 < texts_len) {
                memcpy(texts + used, data, len);
                texts[used + len] = ';';
                texts[used + len + 1] = '\0';
            }
        }
        ferrows_event_free(event);
    }
    h_fail(__FILE__, __LINE__, "the queue never ran dry");
    return -1;
}

void test_queue_connect_open_event_and_fd_level(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    char texts[256] = "";
    int marker = 0, fd = -1, fd_again = -2;
    int64_t deadline;
    CHECK(queue_fixture_start(&f, true));
    CHECK_OK(ferrows_queue_fd(f.queue, &fd));
    CHECK(fd >= 0);
    CHECK_OK(ferrows_queue_fd(f.queue, &fd_again));
    CHECK_EQ(fd_again, fd); /* it lives as long as the queue */
    CHECK(!fd_readable(fd, 0));

    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, &marker, &f.conn));
    CHECK(f.conn);
    CHECK(fd_readable(fd, long_wait_ms()));
    CHECK(fd_readable(fd, 0)); /* level-triggered: still readable before draining */
    f.event = next_event_of(f.queue, FERROWS_EVENT_OPEN, 0);
    CHECK(f.event);
    CHECK(ferrows_event_userdata(f.event) == &marker);
    CHECK_EQ(ferrows_event_result(f.event), FERROWS_OK);
    ferrows_event_free(f.event);
    f.event = NULL;
    CHECK_EQ(drain(f.queue, NULL, 0), 0);
    CHECK(!fd_readable(fd, 0));

    /* Two messages: the fd is readable until both are taken and the queue says AGAIN. */
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"one", 3,
                               long_wait_ms()));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"two", 3,
                               long_wait_ms()));
    deadline = now_ms() + long_wait_ms();
    while (strcmp(texts, "one;two;") != 0 && now_ms() < deadline) {
        CHECKF(fd_readable(fd, long_wait_ms()), "fd not readable; got \"%s\" so far", texts);
        CHECK(drain(f.queue, texts, sizeof texts) >= 0);
    }
    CHECKF(strcmp(texts, "one;two;") == 0, "got \"%s\"", texts);
    CHECK(!fd_readable(fd, 0));

    /* One event taken of several: still readable. */
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"three", 5,
                               long_wait_ms()));
    CHECK(fd_readable(fd, long_wait_ms()));
    f.event = next_event_of(f.queue, FERROWS_EVENT_TEXT, 0);
    CHECK(f.event);
    CHECK(event_data_is(f.event, "three", 5));
    ferrows_event_free(f.event);
    f.event = NULL;
    CHECK(fd_readable(fd, 0)); /* no AGAIN yet */
    CHECK_EQ(drain(f.queue, NULL, 0), 0);
    CHECK(!fd_readable(fd, 0));

    /* Closing: CLOSED through the queue, with the userdata. */
    CHECK_OK(ferrows_conn_close(f.conn, 1000, "done"));
    f.event = next_event_of(f.queue, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(f.event);
    CHECK(ferrows_event_userdata(f.event) == &marker);
    CHECK_EQ(ferrows_event_close_code(f.event), 1000);
    ferrows_event_free(f.event);
    f.event = NULL;
    CHECK_RC(ferrows_queue_next(f.queue, 200, &f.event), FERROWS_TIMEOUT); /* CLOSED only once */
done:
    queue_fixture_free(&f);
}

/* ferrows_queue_fd: "readable while the queue may have events; ... call ferrows_queue_next
 * with a zero timeout until it returns FERROWS_AGAIN". A consumed wakeup is no event: after
 * the AGAIN that reports it, a poll loop must be able to sleep. */
void test_queue_fd_cleared_after_wakeup_is_consumed(void) {
    ferrows_queue *queue = NULL;
    ferrows_event *event = NULL;
    int fd = -1;
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK_OK(ferrows_queue_fd(queue, &fd));
    CHECK(!fd_readable(fd, 0));
    CHECK_OK(ferrows_queue_wakeup(queue));
    CHECK(fd_readable(fd, 0)); /* "makes the fd readable" */
    CHECK_RC(ferrows_queue_next(queue, 0, &event), FERROWS_AGAIN);
    CHECK(event == NULL);
    CHECKF(!fd_readable(fd, 0),
           "the fd is still readable after ferrows_queue_next returned FERROWS_AGAIN for a "
           "wakeup (a poll loop wakes up once more for nothing)");
done:
    ferrows_event_free(event);
    ferrows_queue_free(queue);
}

void test_queue_connect_refused_gives_error_event(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    char message[256];
    uint16_t port = 0;
    int marker = 0;
    int closed = closed_port_reserve(&port);
    CHECK(closed >= 0 && queue_fixture_start(&f, false));
    snprintf(f.url, sizeof f.url, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, &marker, &f.conn));
    CHECK(f.conn);
    f.event = next_event_of(f.queue, FERROWS_EVENT_ERROR, long_wait_ms());
    CHECK(f.event);
    CHECK_EQ(ferrows_event_result(f.event), FERROWS_ERR_IO);
    CHECK(ferrows_event_userdata(f.event) == &marker);
    event_message(f.event, message, sizeof message);
    CHECKF(strlen(message) > 0, "an ERROR event without a message");
    ferrows_event_free(f.event);
    f.event = NULL;
    CHECK_RC(ferrows_queue_next(f.queue, 200, &f.event), FERROWS_TIMEOUT); /* nothing else */
    /* The failed connection never opened. */
    CHECK_RC(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0),
             FERROWS_ERR_STATE);
done:
    queue_fixture_free(&f);
    closed_port_release(closed);
}

void test_queue_attach_blocking_conn(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    int marker = 0;
    CHECK(queue_fixture_start(&f, true));
    CHECK_OK(ferrows_connect_blocking(f.config, f.url, long_wait_ms(), &marker, &f.conn));
    CHECK_OK(ferrows_conn_attach(f.conn, f.queue));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"a", 1,
                               long_wait_ms()));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_BINARY, (const uint8_t *)"b", 1,
                               long_wait_ms()));
    f.event = next_event_of(f.queue, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(f.event);
    CHECK(event_data_is(f.event, "a", 1));
    CHECK(ferrows_event_userdata(f.event) == &marker);
    ferrows_event_free(f.event);
    f.event = next_event_of(f.queue, FERROWS_EVENT_BINARY, long_wait_ms());
    CHECK(f.event);
    CHECK(event_data_is(f.event, "b", 1));
    ferrows_event_free(f.event);
    f.event = NULL;
    CHECK_OK(ferrows_conn_close(f.conn, 4321, "attached"));
    f.event = next_event_of(f.queue, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(f.event);
    CHECK_EQ(ferrows_event_close_code(f.event), 4321);
done:
    queue_fixture_free(&f);
}

void test_queue_server_accept_events(void) {
    ferrows_config *config = new_config();
    ferrows_queue *queue = NULL;
    ferrows_server *server = NULL;
    ferrows_conn *client = NULL, *accepted = NULL, *second = NULL;
    ferrows_event *event = NULL;
    char url[64], reason[64];
    int client_marker = 0, server_marker = 0, second_marker = 0;
    bool opened = false;
    CHECK(config);
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK_OK(ferrows_server_listen(config, "127.0.0.1", 0, queue, &server));
    CHECK(ferrows_server_port(server) != 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)ferrows_server_port(server));

    /* One queue for both ends: the client's OPEN and the server's ACCEPT, in any order.
     * (The handshake completes when the queue hands out the ACCEPT event.) */
    CHECK_OK(ferrows_connect(config, url, queue, &client_marker, &client));
    for (int i = 0; i < 2; i++) {
        CHECK_OK(ferrows_queue_next(queue, long_wait_ms(), &event));
        uint32_t kind = ferrows_event_type(event);
        if (kind == FERROWS_EVENT_ACCEPT) {
            CHECK(accepted == NULL);
            accepted = ferrows_event_take_conn(event);
            CHECK(accepted);
            CHECK(ferrows_event_take_conn(event) == NULL); /* once */
            CHECK_OK(ferrows_conn_set_userdata(accepted, &server_marker));
        } else {
            CHECKF(kind == FERROWS_EVENT_OPEN, "got a %s event", event_kind_name(kind));
            CHECK(ferrows_event_userdata(event) == &client_marker);
            CHECK(ferrows_event_take_conn(event) == NULL); /* not an ACCEPT */
            opened = true;
        }
        ferrows_event_free(event);
        event = NULL;
    }
    CHECK(accepted && opened);

    /* The accepted connection reports to the same queue. */
    CHECK_OK(ferrows_conn_send(client, FERROWS_MESSAGE_TEXT, (const uint8_t *)"to server", 9,
                               long_wait_ms()));
    event = next_event_of(queue, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(ferrows_event_userdata(event) == &server_marker);
    CHECK(event_data_is(event, "to server", 9));
    ferrows_event_free(event);
    CHECK_OK(ferrows_conn_send(accepted, FERROWS_MESSAGE_TEXT, (const uint8_t *)"to client", 9,
                               long_wait_ms()));
    event = next_event_of(queue, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(ferrows_event_userdata(event) == &client_marker);
    CHECK(event_data_is(event, "to client", 9));
    ferrows_event_free(event);
    event = NULL;

    /* Both ends see the close. */
    CHECK_OK(ferrows_conn_close(client, 4444, "done"));
    for (int i = 0; i < 2; i++) {
        event = next_event_of(queue, FERROWS_EVENT_CLOSED, long_wait_ms());
        CHECK(event);
        CHECK(ferrows_event_userdata(event) == &client_marker ||
              ferrows_event_userdata(event) == &server_marker);
        CHECK_EQ(ferrows_event_close_code(event), 4444);
        CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
        event_message(event, reason, sizeof reason);
        CHECKF(strcmp(reason, "done") == 0, "reason \"%s\"", reason);
        ferrows_event_free(event);
        event = NULL;
    }

    /* An ACCEPT event freed with its connection untaken: the connection is closed (1001). */
    CHECK_OK(ferrows_connect(config, url, queue, &second_marker, &second));
    for (int i = 0; i < 2; i++) {
        CHECK_OK(ferrows_queue_next(queue, long_wait_ms(), &event));
        uint32_t kind = ferrows_event_type(event);
        CHECKF(kind == FERROWS_EVENT_ACCEPT || kind == FERROWS_EVENT_OPEN, "got a %s event",
               event_kind_name(kind));
        ferrows_event_free(event);
        event = NULL;
    }
    event = next_event_of(queue, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK(ferrows_event_userdata(event) == &second_marker);
    CHECK_EQ(ferrows_event_close_code(event), 1001);
done:
    ferrows_event_free(event);
    ferrows_conn_free(second);
    ferrows_conn_free(accepted);
    ferrows_conn_free(client);
    ferrows_server_free(server);
    ferrows_queue_free(queue);
    ferrows_config_free(config);
}

struct waiter {
    ferrows_queue *queue;
    h_signal waiting; /* raised as it calls ferrows_queue_next(-1) */
    int32_t rc;
    ferrows_event *event;
    int64_t returned_at;
};

static void waiter_body(void *arg) {
    struct waiter *w = arg;
    h_signal_raise(&w->waiting);
    w->rc = ferrows_queue_next(w->queue, -1, &w->event);
    w->returned_at = now_ms();
}

void test_queue_wakeup_from_another_thread(void) {
    ferrows_queue *queue = NULL;
    h_thread *thread = NULL;
    struct waiter w = {NULL, H_SIGNAL_INIT, -100, NULL, 0};
    int64_t woken_at;
    CHECK_OK(ferrows_queue_new(&queue));
    w.queue = queue;
    thread = h_thread_start(waiter_body, &w);
    CHECK(thread);
    CHECK(h_signal_wait(&w.waiting, 1, long_wait_ms()));
    woken_at = now_ms();
    CHECK_OK(ferrows_queue_wakeup(queue));
    if (!h_thread_join(thread, long_wait_ms())) {
        queue = NULL; /* still in use by the abandoned thread */
        FAIL("ferrows_queue_next(-1) did not return after ferrows_queue_wakeup");
    }
    thread = NULL;
    CHECK_RC(w.rc, FERROWS_AGAIN);
    CHECK(w.event == NULL);
    /* Not before the wakeup, and "within ~100 ms" of it: a little slack for a loaded
     * two-core machine. */
    CHECK_BETWEEN(w.returned_at - woken_at, 0, 150 * time_scale());
done:
    if (thread && !h_thread_join(thread, long_wait_ms()))
        queue = NULL;
    ferrows_event_free(w.event);
    ferrows_queue_free(queue);
}

/* ---- callbacks ------------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_t test_thread;
    int counts[8];
    int calls_on_test_thread;
    int drops;
    void *last_userdata;
    char texts[256];
    /* blocking calls tried from inside the callback, on the first TEXT event */
    bool probe, probed;
    ferrows_conn *conn;
    ferrows_queue *queue;
    const ferrows_config *config;
    const char *url;
    int32_t rc_recv, rc_next, rc_connect, rc_wait_closed, rc_ping;
    /* replacing the callback from inside it, on the first TEXT event */
    bool replace, replaced;
    ferrows_event_callback replacement;
    int32_t rc_replace;
    bool in_call;
    int drops_during_call;
    /* a call held until the test releases it, on the first TEXT event */
    bool hold, released;
    int held;
} cb_context;

static void cb_init(cb_context *ctx) {
    memset(ctx, 0, sizeof *ctx);
    pthread_mutex_init(&ctx->mutex, NULL);
    pthread_cond_init(&ctx->cond, NULL);
    ctx->test_thread = pthread_self();
    ctx->rc_recv = ctx->rc_next = ctx->rc_connect = ctx->rc_wait_closed = ctx->rc_ping = -100;
    ctx->rc_replace = -100;
}

static void cb_destroy(cb_context *ctx) {
    pthread_mutex_destroy(&ctx->mutex);
    pthread_cond_destroy(&ctx->cond);
}

static void cb_probe(cb_context *ctx) {
    ferrows_event *event = NULL;
    ferrows_conn *conn = NULL;
    pthread_mutex_lock(&ctx->mutex);
    ferrows_conn *target = ctx->conn;
    ferrows_queue *queue = ctx->queue;
    pthread_mutex_unlock(&ctx->mutex);
    /* Outside the lock: a call that does block must not also block the test thread. */
    int32_t rc_recv = ferrows_conn_recv(target, -1, &event);
    ferrows_event_free(event);
    event = NULL;
    int32_t rc_next = ferrows_queue_next(queue, -1, &event);
    ferrows_event_free(event);
    int32_t rc_connect = ferrows_connect_blocking(ctx->config, ctx->url, -1, NULL, &conn);
    ferrows_conn_free(conn);
    int32_t rc_wait_closed = ferrows_conn_wait_closed(target, -1);
    int32_t rc_ping = ferrows_conn_ping(target, (const uint8_t *)"cb", 2, -1, NULL);
    pthread_mutex_lock(&ctx->mutex);
    ctx->rc_recv = rc_recv;
    ctx->rc_next = rc_next;
    ctx->rc_connect = rc_connect;
    ctx->rc_wait_closed = rc_wait_closed;
    ctx->rc_ping = rc_ping;
    ctx->probed = true;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->mutex);
}

static void cb_call(void *context, ferrows_event *event) {
    cb_context *ctx = context;
    uint32_t kind = ferrows_event_type(event);
    bool probe = false, replace = false, hold = false;
    pthread_mutex_lock(&ctx->mutex);
    ctx->in_call = true;
    if (pthread_equal(pthread_self(), ctx->test_thread))
        ctx->calls_on_test_thread++;
    ctx->last_userdata = ferrows_event_userdata(event);
    if (kind == FERROWS_EVENT_TEXT) {
        size_t len = 0, used = strlen(ctx->texts);
        const uint8_t *data = ferrows_event_data(event, &len);
        if (used + len + 2 < sizeof ctx->texts) {
            memcpy(ctx->texts + used, data, len);
            ctx->texts[used + len] = ';';
            ctx->texts[used + len + 1] = '\0';
        }
        probe = ctx->probe && !ctx->probed;
        replace = ctx->replace && !ctx->replaced;
        ctx->replaced = ctx->replaced || replace;
        hold = ctx->hold && ctx->held == 0;
        ctx->held += hold;
        pthread_cond_broadcast(&ctx->cond);
    }
    if (hold) {
        struct timespec deadline;
        h_deadline(&deadline, long_wait_ms());
        int waited = 0;
        while (!ctx->released && waited != ETIMEDOUT)
            waited = pthread_cond_timedwait(&ctx->cond, &ctx->mutex, &deadline);
    }
    pthread_mutex_unlock(&ctx->mutex);
    ferrows_event_free(event); /* the callback owns it */
    if (probe)
        cb_probe(ctx);
    if (replace) { /* outside the lock: the old callback's drop takes it */
        int32_t rc = ferrows_queue_set_callback(ctx->queue, ctx->replacement);
        pthread_mutex_lock(&ctx->mutex);
        ctx->rc_replace = rc;
        pthread_mutex_unlock(&ctx->mutex);
    }
    pthread_mutex_lock(&ctx->mutex);
    ctx->counts[kind < 8 ? kind : 0]++;
    ctx->in_call = false;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->mutex);
}

static void cb_drop(void *context) {
    cb_context *ctx = context;
    pthread_mutex_lock(&ctx->mutex);
    if (ctx->in_call)
        ctx->drops_during_call++;
    ctx->drops++;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->mutex);
}

/* Waits until *field (a counter of ctx) reaches `count`, or timeout_ms pass; its value. */
static int cb_wait_for(cb_context *ctx, const int *field, int count, int timeout_ms) {
    struct timespec deadline;
    h_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&ctx->mutex);
    int waited = 0;
    while (*field < count && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&ctx->cond, &ctx->mutex, &deadline);
    int value = *field;
    pthread_mutex_unlock(&ctx->mutex);
    return value;
}

/* Waits until `count` events of `kind` were delivered. */
static bool cb_wait(cb_context *ctx, uint32_t kind, int count) {
    int got = cb_wait_for(ctx, &ctx->counts[kind], count, long_wait_ms());
    if (got < count)
        h_fail(__FILE__, __LINE__, "the callback got %d %s events, expected %d", got,
               event_kind_name(kind), count);
    return got >= count;
}

/* Waits until the drop function ran `count` times in all; false if it did not. */
static bool cb_wait_drops(cb_context *ctx, int count) {
    return cb_wait_for(ctx, &ctx->drops, count, long_wait_ms()) >= count;
}

/* Lets a held call go on. */
static void cb_release(cb_context *ctx) {
    pthread_mutex_lock(&ctx->mutex);
    ctx->released = true;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->mutex);
}

static int cb_read(cb_context *ctx, const int *field) {
    pthread_mutex_lock(&ctx->mutex);
    int value = *field;
    pthread_mutex_unlock(&ctx->mutex);
    return value;
}

void test_callback_receives_events_on_another_thread(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    cb_context ctx;
    int marker = 0;
    cb_init(&ctx);
    CHECK(queue_fixture_start(&f, true));
    ferrows_event_callback callback = {&ctx, cb_call, cb_drop};
    CHECK_OK(ferrows_queue_set_callback(f.queue, callback));
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, &marker, &f.conn));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_OPEN, 1));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"one", 3,
                               long_wait_ms()));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"two", 3,
                               long_wait_ms()));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_TEXT, 2));
    pthread_mutex_lock(&ctx.mutex);
    bool texts_ok = strcmp(ctx.texts, "one;two;") == 0;
    bool userdata_ok = ctx.last_userdata == &marker;
    pthread_mutex_unlock(&ctx.mutex);
    CHECKF(texts_ok, "callback texts \"%s\"", ctx.texts);
    CHECK(userdata_ok);
    CHECK_EQ(cb_read(&ctx, &ctx.calls_on_test_thread), 0);
    /* Events go to the callback, not to ferrows_queue_next. */
    CHECK_RC(ferrows_queue_next(f.queue, 0, &f.event), FERROWS_AGAIN);
    CHECK_OK(ferrows_conn_close(f.conn, 1000, NULL));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_CLOSED, 1));
    CHECK_EQ(cb_read(&ctx, &ctx.drops), 0);
    ferrows_conn_free(f.conn);
    f.conn = NULL;
    ferrows_queue_free(f.queue);
    f.queue = NULL;
    /* By ferrows_queue_free, once the call that counted CLOSED has returned. */
    CHECK_EQ(cb_wait_for(&ctx, &ctx.drops, 1, long_wait_ms()), 1);
    CHECK_EQ(cb_read(&ctx, &ctx.counts[FERROWS_EVENT_CLOSED]), 1);
    CHECK_EQ(cb_read(&ctx, &ctx.counts[FERROWS_EVENT_OPEN]), 1);
done:
    queue_fixture_free(&f);
    cb_destroy(&ctx);
}

void test_callback_blocking_calls_would_deadlock(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    cb_context ctx;
    cb_init(&ctx);
    CHECK(queue_fixture_start(&f, true));
    ctx.url = f.url;
    ctx.config = f.config;
    ctx.probe = true;
    ctx.queue = f.queue;
    ferrows_event_callback callback = {&ctx, cb_call, cb_drop};
    CHECK_OK(ferrows_queue_set_callback(f.queue, callback));
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, NULL, &f.conn));
    pthread_mutex_lock(&ctx.mutex);
    ctx.conn = f.conn;
    pthread_mutex_unlock(&ctx.mutex);
    CHECK(cb_wait(&ctx, FERROWS_EVENT_OPEN, 1));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"probe", 5,
                               long_wait_ms()));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_TEXT, 1));
    pthread_mutex_lock(&ctx.mutex);
    bool probed = ctx.probed;
    int32_t rc_recv = ctx.rc_recv, rc_next = ctx.rc_next, rc_connect = ctx.rc_connect;
    int32_t rc_wait_closed = ctx.rc_wait_closed, rc_ping = ctx.rc_ping;
    pthread_mutex_unlock(&ctx.mutex);
    CHECK(probed);
    CHECK_RC(rc_recv, FERROWS_ERR_WOULD_DEADLOCK);        /* ferrows_conn_recv(c, -1) */
    CHECK_RC(rc_next, FERROWS_ERR_WOULD_DEADLOCK);        /* ferrows_queue_next(q, -1) */
    CHECK_RC(rc_connect, FERROWS_ERR_WOULD_DEADLOCK);     /* ferrows_connect_blocking */
    CHECK_RC(rc_wait_closed, FERROWS_ERR_WOULD_DEADLOCK); /* ferrows_conn_wait_closed(-1) */
    CHECK_RC(rc_ping, FERROWS_ERR_WOULD_DEADLOCK);        /* ferrows_conn_ping(-1) */
    /* The connection is unharmed. */
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"after", 5,
                               long_wait_ms()));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_TEXT, 2));
done:
    queue_fixture_free(&f);
    cb_destroy(&ctx);
}

void test_callback_drop_runs_once_on_replace_and_free(void) {
    ferrows_queue *queue = NULL;
    cb_context a, b, c;
    cb_init(&a);
    cb_init(&b);
    cb_init(&c);
    CHECK_OK(ferrows_queue_new(&queue));
    ferrows_event_callback first = {&a, cb_call, cb_drop};
    ferrows_event_callback second = {&b, cb_call, cb_drop};
    ferrows_event_callback no_drop = {&c, cb_call, NULL};
    CHECK_OK(ferrows_queue_set_callback(queue, first));
    CHECK_EQ(cb_read(&a, &a.drops), 0);
    CHECK_OK(ferrows_queue_set_callback(queue, second)); /* replaces: a's drop */
    CHECK_EQ(cb_read(&a, &a.drops), 1);
    CHECK_EQ(cb_read(&b, &b.drops), 0);
    ferrows_queue_free(queue); /* frees: b's drop */
    queue = NULL;
    CHECK_EQ(cb_read(&a, &a.drops), 1);
    CHECK_EQ(cb_read(&b, &b.drops), 1);
    /* No drop function: nothing to call, no crash. */
    CHECK_OK(ferrows_queue_new(&queue));
    CHECK_OK(ferrows_queue_set_callback(queue, no_drop));
    CHECK_OK(ferrows_queue_set_callback(queue, first)); /* a's second registration */
    ferrows_queue_free(queue);
    queue = NULL;
    CHECK_EQ(cb_read(&a, &a.drops), 2);
    CHECK_EQ(cb_read(&c, &c.drops), 0);
    CHECK_EQ(cb_read(&a, &a.counts[0]) + cb_read(&b, &b.counts[0]), 0);
done:
    ferrows_queue_free(queue);
    cb_destroy(&a);
    cb_destroy(&b);
    cb_destroy(&c);
}

void test_callback_removed_events_go_to_queue_next(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    cb_context ctx;
    cb_init(&ctx);
    CHECK(queue_fixture_start(&f, true));
    ferrows_event_callback callback = {&ctx, cb_call, cb_drop};
    ferrows_event_callback none = {NULL, NULL, NULL};
    CHECK_OK(ferrows_queue_set_callback(f.queue, callback));
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, NULL, &f.conn));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_OPEN, 1));
    CHECK_OK(ferrows_queue_set_callback(f.queue, none)); /* a NULL call removes it */
    CHECK_EQ(cb_wait_for(&ctx, &ctx.drops, 1, long_wait_ms()), 1); /* once OPEN's call returned */
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"after", 5,
                               long_wait_ms()));
    f.event = next_event_of(f.queue, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(f.event);
    CHECK(event_data_is(f.event, "after", 5));
    CHECK_EQ(cb_read(&ctx, &ctx.counts[FERROWS_EVENT_TEXT]), 0);
done:
    queue_fixture_free(&f);
    cb_destroy(&ctx);
}

/* "It may ... replace or remove the callback", and the old one's drop runs "after a call
 * under way returns". */
void test_callback_can_replace_itself(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    cb_context a, b;
    cb_init(&a);
    cb_init(&b);
    CHECK(queue_fixture_start(&f, true));
    a.queue = f.queue;
    a.replace = true;
    a.replacement.context = &b;
    a.replacement.call = cb_call;
    a.replacement.drop = cb_drop;
    ferrows_event_callback first = {&a, cb_call, cb_drop};
    CHECK_OK(ferrows_queue_set_callback(f.queue, first));
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, NULL, &f.conn));
    CHECK(cb_wait(&a, FERROWS_EVENT_OPEN, 1));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"first", 5,
                               long_wait_ms()));
    CHECK(cb_wait(&a, FERROWS_EVENT_TEXT, 1)); /* replaced itself in this call */
    CHECK(cb_wait_drops(&a, 1));
    CHECK_RC(cb_read(&a, &a.rc_replace), FERROWS_OK);
    CHECK_EQ(cb_read(&a, &a.drops), 1);
    CHECK_EQ(cb_read(&a, &a.drops_during_call), 0); /* not while its call ran */
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"second", 6,
                               long_wait_ms()));
    CHECK(cb_wait(&b, FERROWS_EVENT_TEXT, 1));
    CHECK_EQ(cb_read(&a, &a.counts[FERROWS_EVENT_TEXT]), 1);
    pthread_mutex_lock(&b.mutex);
    bool texts_ok = strcmp(b.texts, "second;") == 0;
    pthread_mutex_unlock(&b.mutex);
    CHECKF(texts_ok, "the replacement got \"%s\"", b.texts);
    ferrows_conn_free(f.conn);
    f.conn = NULL;
    ferrows_queue_free(f.queue);
    f.queue = NULL;
    CHECK_EQ(cb_read(&a, &a.drops), 1);
    CHECK_EQ(cb_wait_for(&b, &b.drops, 1, long_wait_ms()), 1); /* once its call returned */
done:
    queue_fixture_free(&f);
    cb_destroy(&a);
    cb_destroy(&b);
}

/* ferrows_server_free: "answers handshakes not yet accepted with 503, and reports nothing
 * more to its queue". */
void test_server_free_refuses_pending_handshakes(void) {
    ferrows_config *config = new_config();
    ferrows_queue *server_queue = NULL, *client_queue = NULL;
    ferrows_server *server = NULL;
    ferrows_conn *client = NULL;
    ferrows_event *event = NULL;
    char url[64], message[512];
    int fd = -1, marker = 0;
    CHECK(config);
    CHECK_OK(ferrows_queue_new(&server_queue));
    CHECK_OK(ferrows_queue_new(&client_queue));
    CHECK_OK(ferrows_server_listen(config, "127.0.0.1", 0, server_queue, &server));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)ferrows_server_port(server));
    CHECK_OK(ferrows_queue_fd(server_queue, &fd));
    CHECK_OK(ferrows_connect(config, url, client_queue, &marker, &client));
    /* Readable: the handshake is waiting for the application. Free the server instead. */
    CHECK(fd_readable(fd, long_wait_ms()));
    ferrows_server_free(server);
    server = NULL;
    CHECK_RC(ferrows_queue_next(server_queue, 300, &event), FERROWS_TIMEOUT);
    CHECK(event == NULL);
    event = next_event_of(client_queue, FERROWS_EVENT_ERROR, long_wait_ms());
    CHECK(event);
    CHECK(ferrows_event_userdata(event) == &marker);
    event_message(event, message, sizeof message);
    CHECKF(ferrows_event_result(event) == FERROWS_ERR_HANDSHAKE,
           "ERROR result %d (%s): \"%s\"", (int)ferrows_event_result(event),
           ferrows_result_str(ferrows_event_result(event)), message);
    CHECKF(strstr(message, "503") != NULL, "no 503 in \"%s\"", message);
done:
    ferrows_event_free(event);
    ferrows_conn_free(client);
    ferrows_server_free(server);
    ferrows_queue_free(client_queue);
    ferrows_queue_free(server_queue);
    ferrows_config_free(config);
}

/* Freeing the queue while its callback runs: the callback's drop runs once, after that call
 * returns, and no call follows. */
void test_callback_drop_waits_for_a_call_under_way(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    cb_context ctx;
    cb_init(&ctx);
    ctx.hold = true;
    CHECK(queue_fixture_start(&f, true));
    ferrows_event_callback callback = {&ctx, cb_call, cb_drop};
    CHECK_OK(ferrows_queue_set_callback(f.queue, callback));
    CHECK_OK(ferrows_connect(f.config, f.url, f.queue, NULL, &f.conn));
    CHECK(cb_wait(&ctx, FERROWS_EVENT_OPEN, 1));
    CHECK_OK(ferrows_conn_send(f.conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"held", 4,
                               long_wait_ms()));
    /* The call is under way, waiting for cb_release. */
    CHECK_EQ(cb_wait_for(&ctx, &ctx.held, 1, long_wait_ms()), 1);
    ferrows_conn_free(f.conn);
    f.conn = NULL;
    ferrows_queue_free(f.queue);
    f.queue = NULL;
    CHECK_EQ(cb_read(&ctx, &ctx.drops), 0); /* not while the call runs */
    cb_release(&ctx);
    CHECK(cb_wait_drops(&ctx, 1));
    CHECK_EQ(cb_read(&ctx, &ctx.drops_during_call), 0);
    CHECK_EQ(cb_read(&ctx, &ctx.counts[FERROWS_EVENT_TEXT]), 1);
    /* Exactly once: no second drop within 100 ms. */
    CHECK_EQ(cb_wait_for(&ctx, &ctx.drops, 2, 100), 1);
done:
    ferrows_conn_free(f.conn);
    f.conn = NULL;
    ferrows_queue_free(f.queue);
    f.queue = NULL;
    cb_release(&ctx);
    /* The drop must have run before ctx goes away (it may still be pending on failure). */
    cb_wait_drops(&ctx, 1);
    queue_fixture_free(&f);
    cb_destroy(&ctx);
}

/* ---- freeing a connection with events under way --------------------------------------- */

/* docs/c-api.md: free a connection, then what its userdata points to. An OPEN or ERROR event
 * already queued must go with the connection, or the application gets a dangling pointer. */
void test_conn_free_drops_its_queued_events(void) {
    queue_fixture f = QUEUE_FIXTURE_INIT;
    char refused[64];
    const char *urls[2] = {f.url, refused}; /* OPEN, then ERROR */
    uint16_t port = 0;
    int fd = -1, closed = closed_port_reserve(&port);
    int *userdata = NULL;
    CHECK(queue_fixture_start(&f, true) && closed >= 0);
    snprintf(refused, sizeof refused, "ws://127.0.0.1:%u/", (unsigned)port);
    CHECK_OK(ferrows_queue_fd(f.queue, &fd));
    for (int i = 0; i < 2; i++) {
        userdata = malloc(sizeof *userdata);
        CHECK(userdata);
        CHECK_OK(ferrows_connect(f.config, urls[i], f.queue, userdata, &f.conn));
        /* Readable: the attempt's outcome waits in the queue. */
        bool readable = fd_readable(fd, long_wait_ms());
        ferrows_conn_free(f.conn);
        f.conn = NULL;
        free(userdata);
        userdata = NULL;
        CHECKF(readable, "no outcome queued for %s", urls[i]);
        CHECK_RC(ferrows_queue_next(f.queue, 0, &f.event), FERROWS_AGAIN);
        CHECK(f.event == NULL);
    }
done:
    free(userdata);
    closed_port_release(closed);
    queue_fixture_free(&f);
}

/* Busy-waits `us` microseconds: it moves where a free lands in the race below, and nothing
 * waits on it. */
static void spin_us(int us) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 < us);
}

/* Whether the client at the other end of `fd` closes: a close frame, or the end of the TCP
 * connection, within long_wait_ms. */
static bool peer_closes(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    uint8_t first = 0;
    if (poll(&p, 1, long_wait_ms()) != 1)
        return false;
    ssize_t n = recv(fd, &first, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET) || (n == 1 && first == 0x88);
}

/* ferrows_conn_free against the end of the opening handshake, freed at a different moment
 * after the server's 101 in each round: whichever wins, the connection it had opened is
 * closed (not left open with no handle), and none of its events reaches the queue. */
void test_conn_free_racing_the_handshake_closes_the_connection(void) {
    enum { ROUNDS = 300, MAX_SPIN_US = 150 };
    queue_fixture f = QUEUE_FIXTURE_INIT;
    char request[4096];
    uint16_t port = 0;
    int marker = 0, peer = -1, listener = raw_listen(&port);
    int64_t deadline = now_ms() + 3000;
    CHECK(listener >= 0 && queue_fixture_start(&f, false));
    snprintf(f.url, sizeof f.url, "ws://127.0.0.1:%u/", (unsigned)port);
    for (int round = 0; round < ROUNDS && now_ms() < deadline; round++) {
        CHECK_OK(ferrows_connect(f.config, f.url, f.queue, &marker, &f.conn));
        peer = raw_ws_accept(listener, request, sizeof request);
        CHECK(peer >= 0);
        spin_us(round * 7 % MAX_SPIN_US);
        ferrows_conn_free(f.conn);
        f.conn = NULL;
        CHECKF(peer_closes(peer), "round %d: the connection freed %d us after the 101 stayed open",
               round, round * 7 % MAX_SPIN_US);
        close(peer);
        peer = -1;
        CHECK_RC(ferrows_queue_next(f.queue, 0, &f.event), FERROWS_AGAIN);
    }
    /* Nor later, as the connections finish closing. */
    CHECK_RC(ferrows_queue_next(f.queue, 100, &f.event), FERROWS_TIMEOUT);
    CHECK(f.event == NULL);
done:
    if (peer >= 0)
        close(peer);
    if (listener >= 0)
        close(listener);
    queue_fixture_free(&f);
}

/* ---- replies to a batch of events leave together ------------------------------------- */

/* Three text frames from the raw client in one write: they reach the server's connection
 * together, so the queue holds the next while the application handles one. */
static bool send_three_frames(int fd) {
    static const char *const texts[] = {"one", "two", "three"};
    uint8_t frames[64];
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(texts[i]);
        frames[used++] = 0x81;                /* FIN, text */
        frames[used++] = (uint8_t)(0x80 | len); /* masked, short length */
        memset(frames + used, 0, 4);          /* a zero mask key leaves the payload as is */
        used += 4;
        memcpy(frames + used, texts[i], len);
        used += len;
    }
    return raw_send_all(fd, frames, used);
}

static bool read_text_frame(int fd, const char *expected) {
    uint8_t payload[16];
    size_t len = 0;
    int opcode = 0;
    if (!raw_ws_read_frame(fd, &opcode, payload, sizeof payload, &len))
        return false;
    return opcode == 1 && len == strlen(expected) && memcmp(payload, expected, len) == 0;
}

/* Takes the next TEXT event from `queue` and sends its text back on `conn`. */
static bool echo_next(ferrows_queue *queue, ferrows_conn *conn, const char *expected) {
    size_t len = 0;
    ferrows_event *event = next_event_of(queue, FERROWS_EVENT_TEXT, long_wait_ms());
    if (!event)
        return false;
    const uint8_t *data = ferrows_event_data(event, &len);
    bool echoed = len == strlen(expected) && memcmp(data, expected, len) == 0 &&
                  ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, data, len, long_wait_ms()) ==
                      FERROWS_OK;
    ferrows_event_free(event);
    return echoed;
}

/* A raw client and the ferrows connection serving it, attached to a new queue (with
 * `callback`, if not NULL, and the connection as its own userdata); no keepalive pings. */
static bool batch_peer_start(raw_peer *peer, ferrows_queue **queue,
                             const ferrows_event_callback *callback) {
    peer->config = new_config();
    return peer->config &&
           ferrows_config_set_keepalive_ms(peer->config, 0, 0) == FERROWS_OK &&
           raw_client_pair(peer) && ferrows_queue_new(queue) == FERROWS_OK &&
           (!callback || ferrows_queue_set_callback(*queue, *callback) == FERROWS_OK) &&
           ferrows_conn_set_userdata(peer->accepted, peer->accepted) == FERROWS_OK &&
           ferrows_conn_attach(peer->accepted, *queue) == FERROWS_OK;
}

static bool read_three_replies(int fd) {
    return read_text_frame(fd, "one") && read_text_frame(fd, "two") &&
           read_text_frame(fd, "three");
}

void test_queue_replies_wait_while_events_wait(void) {
    raw_peer peer = RAW_PEER_INIT;
    ferrows_queue *queue = NULL;
    CHECK(batch_peer_start(&peer, &queue, NULL));
    CHECK(send_three_frames(peer.fd));

    /* While more events wait, the replies stay in the connection's buffer. */
    CHECK(echo_next(queue, peer.accepted, "one"));
    CHECK(ferrows_conn_buffered_amount(peer.accepted) == 5);
    CHECK(echo_next(queue, peer.accepted, "two"));
    CHECK(ferrows_conn_buffered_amount(peer.accepted) == 10);
    CHECK(!fd_readable(peer.fd, 0));
    /* Taking the last waiting event writes them; its own reply is written at once. The
     * application does not come back to the queue, and every reply arrives. */
    CHECK(echo_next(queue, peer.accepted, "three"));
    CHECK(read_three_replies(peer.fd));
done:
    raw_peer_free(&peer);
    ferrows_queue_free(queue);
}

/* The callback echoes every message; the test thread reads the replies. */
static void echo_call(void *context, ferrows_event *event) {
    (void)context;
    uint32_t kind = ferrows_event_type(event);
    if (kind == FERROWS_EVENT_TEXT) {
        size_t len = 0;
        const uint8_t *data = ferrows_event_data(event, &len);
        ferrows_conn *conn = ferrows_event_userdata(event);
        if (ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, data, len, 0) != FERROWS_OK)
            h_fail(__FILE__, __LINE__, "the callback's send failed");
    }
    ferrows_event_free(event);
}

/* Echoes a message, then frees the connection it came from (its userdata) and raises the
 * h_signal in `context`. */
static void echo_then_free_call(void *context, ferrows_event *event) {
    ferrows_conn *conn = ferrows_event_userdata(event);
    if (ferrows_event_type(event) != FERROWS_EVENT_TEXT) {
        ferrows_event_free(event);
        return;
    }
    echo_call(NULL, event); /* frees the event */
    ferrows_conn_free(conn);
    h_signal_raise(context);
}

/* A message's callback runs on the thread that read it, once the reader has let go of the
 * connection: freeing that very connection there closes it (1001) after the reply, and its
 * other messages are never delivered. */
void test_callback_may_free_the_connection_it_reads(void) {
    raw_peer peer = RAW_PEER_INIT;
    ferrows_queue *queue = NULL;
    h_signal freed = H_SIGNAL_INIT;
    uint16_t code = 0;
    char reason[64] = "";
    ferrows_event_callback callback = {&freed, echo_then_free_call, NULL};
    CHECK(batch_peer_start(&peer, &queue, &callback));
    CHECK(send_three_frames(peer.fd));
    CHECK(h_signal_wait(&freed, 1, long_wait_ms()));
    peer.accepted = NULL; /* the callback freed it */
    CHECK(read_text_frame(peer.fd, "one"));
    CHECK(raw_ws_read_close(peer.fd, &code, reason, sizeof reason));
    CHECK_EQ(code, 1001);
    pthread_mutex_lock(&freed.mutex);
    int frees = freed.count;
    pthread_mutex_unlock(&freed.mutex);
    CHECK_EQ(frees, 1);
done:
    raw_peer_free(&peer);
    ferrows_queue_free(queue);
}

void test_callback_replies_to_a_batch_all_arrive(void) {
    raw_peer peer = RAW_PEER_INIT;
    ferrows_queue *queue = NULL;
    ferrows_event_callback callback = {NULL, echo_call, NULL};
    CHECK(batch_peer_start(&peer, &queue, &callback));
    CHECK(send_three_frames(peer.fd));
    CHECK(read_three_replies(peer.fd));
done:
    raw_peer_free(&peer);
    ferrows_queue_free(queue);
}
