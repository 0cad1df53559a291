/* The shared parts of the C suite: failure recording, time, bounded threads, event helpers,
 * an echo server made of libferrows, and raw-socket peers (SHA-1 and base64 included, for
 * handshakes done by hand). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- failures ---------------------------------------------------------------------- */

static pthread_mutex_t fail_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool failed;
static char fail_reason[2048];
static bool poisoned;

void h_fail(const char *file, int line, const char *format, ...) {
    pthread_mutex_lock(&fail_mutex);
    if (!failed) {
        const char *base = strrchr(file, '/');
        int n = snprintf(fail_reason, sizeof fail_reason, "%s:%d: ", base ? base + 1 : file,
                         line);
        va_list args;
        va_start(args, format);
        if (n > 0 && (size_t)n < sizeof fail_reason)
            vsnprintf(fail_reason + n, sizeof fail_reason - (size_t)n, format, args);
        va_end(args);
        failed = true;
    }
    pthread_mutex_unlock(&fail_mutex);
}

bool h_failed(void) {
    pthread_mutex_lock(&fail_mutex);
    bool result = failed;
    pthread_mutex_unlock(&fail_mutex);
    return result;
}

void h_begin_test(void) {
    pthread_mutex_lock(&fail_mutex);
    failed = false;
    fail_reason[0] = '\0';
    pthread_mutex_unlock(&fail_mutex);
}

const char *h_failure(void) { return fail_reason; }

bool h_poisoned(void) { return poisoned; }

void h_last_error(char *buf, size_t len) {
    size_t needed = 0;
    if (ferrows_last_error_message(buf, len, &needed) != FERROWS_OK && len > 0)
        snprintf(buf, len, "(no message: needs %zu bytes)", needed);
}

/* ---- time ---------------------------------------------------------------------------- */

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_deadline(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_REALTIME, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec += 1;
        deadline->tv_nsec -= 1000000000L;
    }
}

int time_scale(void) {
    static int scale = 0;
    if (scale == 0) {
        const char *text = getenv("FERROWS_TEST_TIME_SCALE");
        int value = text ? atoi(text) : 1;
        scale = value > 0 ? value : 1;
    }
    return scale;
}

int long_wait_ms(void) { return 5000 * time_scale(); }

/* ---- threads ------------------------------------------------------------------------- */

struct h_thread {
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool finished;
    void (*body)(void *arg);
    void *arg;
};

static void *h_thread_main(void *arg) {
    h_thread *t = arg;
    t->body(t->arg);
    pthread_mutex_lock(&t->mutex);
    t->finished = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mutex);
    return NULL;
}

h_thread *h_thread_start(void (*body)(void *arg), void *arg) {
    h_thread *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mutex, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->body = body;
    t->arg = arg;
    if (pthread_create(&t->thread, NULL, h_thread_main, t) != 0) {
        pthread_mutex_destroy(&t->mutex);
        pthread_cond_destroy(&t->cond);
        free(t);
        return NULL;
    }
    return t;
}

bool h_thread_join(h_thread *t, int timeout_ms) {
    if (!t)
        return true;
    struct timespec deadline;
    h_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&t->mutex);
    while (!t->finished) {
        if (pthread_cond_timedwait(&t->cond, &t->mutex, &deadline) == ETIMEDOUT)
            break;
    }
    bool finished = t->finished;
    pthread_mutex_unlock(&t->mutex);
    if (!finished) {
        h_fail(__FILE__, __LINE__, "a thread did not finish within %d ms (left running)",
               timeout_ms);
        poisoned = true;
        pthread_detach(t->thread);
        return false;
    }
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mutex);
    pthread_cond_destroy(&t->cond);
    free(t);
    return true;
}

void h_signal_raise(h_signal *signal) {
    pthread_mutex_lock(&signal->mutex);
    signal->count++;
    pthread_cond_broadcast(&signal->cond);
    pthread_mutex_unlock(&signal->mutex);
}

bool h_signal_wait(h_signal *signal, int count, int timeout_ms) {
    struct timespec deadline;
    h_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&signal->mutex);
    int waited = 0;
    while (signal->count < count && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&signal->cond, &signal->mutex, &deadline);
    bool reached = signal->count >= count;
    pthread_mutex_unlock(&signal->mutex);
    return reached;
}

/* ---- events -------------------------------------------------------------------------- */

const char *event_kind_name(uint32_t kind) {
    switch (kind) {
    case FERROWS_EVENT_OPEN:
        return "OPEN";
    case FERROWS_EVENT_TEXT:
        return "TEXT";
    case FERROWS_EVENT_BINARY:
        return "BINARY";
    case FERROWS_EVENT_CLOSED:
        return "CLOSED";
    case FERROWS_EVENT_ERROR:
        return "ERROR";
    case FERROWS_EVENT_ACCEPT:
        return "ACCEPT";
    case FERROWS_EVENT_RECONNECTING:
        return "RECONNECTING";
    default:
        return "unknown";
    }
}

void event_message(const ferrows_event *event, char *buf, size_t len) {
    size_t needed = 0;
    if (ferrows_event_message(event, buf, len, &needed) != FERROWS_OK && len > 0)
        snprintf(buf, len, "(message of %zu bytes)", needed);
}

static ferrows_event *check_kind(ferrows_event *event, uint32_t kind, const char *how) {
    uint32_t got = ferrows_event_type(event);
    if (got == kind)
        return event;
    char message[256] = "";
    event_message(event, message, sizeof message);
    h_fail(__FILE__, __LINE__,
           "%s: got a %s event (result %d, close code %u, message \"%s\"), expected %s", how,
           event_kind_name(got), (int)ferrows_event_result(event),
           (unsigned)ferrows_event_close_code(event), message, event_kind_name(kind));
    ferrows_event_free(event);
    return NULL;
}

ferrows_event *next_event_of(ferrows_queue *queue, uint32_t kind, int timeout_ms) {
    ferrows_event *event = NULL;
    int32_t rc = ferrows_queue_next(queue, timeout_ms, &event);
    if (rc != FERROWS_OK) {
        char message[256];
        h_last_error(message, sizeof message);
        h_fail(__FILE__, __LINE__, "ferrows_queue_next returned %d (%s) waiting for %s (%s)",
               (int)rc, ferrows_result_str(rc), event_kind_name(kind), message);
        return NULL;
    }
    return check_kind(event, kind, "ferrows_queue_next");
}

ferrows_event *recv_event_of(ferrows_conn *conn, uint32_t kind, int timeout_ms) {
    ferrows_event *event = NULL;
    int32_t rc = ferrows_conn_recv(conn, timeout_ms, &event);
    if (rc != FERROWS_OK) {
        char message[256];
        h_last_error(message, sizeof message);
        h_fail(__FILE__, __LINE__, "ferrows_conn_recv returned %d (%s) waiting for %s (%s)",
               (int)rc, ferrows_result_str(rc), event_kind_name(kind), message);
        return NULL;
    }
    return check_kind(event, kind, "ferrows_conn_recv");
}

bool event_data_is(const ferrows_event *event, const void *data, size_t len) {
    size_t got = 0;
    const uint8_t *bytes = ferrows_event_data(event, &got);
    if (got != len) {
        h_fail(__FILE__, __LINE__, "event data has %zu bytes, expected %zu", got, len);
        return false;
    }
    if (len > 0 && (bytes == NULL || memcmp(bytes, data, len) != 0)) {
        h_fail(__FILE__, __LINE__, "event data differs from what was sent (%zu bytes)", len);
        return false;
    }
    return true;
}

/* ---- the echo server ----------------------------------------------------------------- */

struct echo_conn {
    echo_server *server;
    ferrows_conn *conn;
    h_thread *thread;
    bool ended; /* under server->mutex, like the fields below */
    uint16_t code;
    int32_t result;
    char reason[128];
    char last[128];
};

struct echo_server {
    ferrows_server *server;
    uint16_t port;
    h_thread *accept_thread;
    pthread_mutex_t mutex;
    pthread_cond_t ended; /* broadcast when a connection ends */
    bool stop;
    int count;
    struct echo_conn conns[ECHO_MAX_CONNS];
    char error[512];
};

static void echo_error(echo_server *s, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void echo_error(echo_server *s, const char *format, ...) {
    pthread_mutex_lock(&s->mutex);
    if (s->error[0] == '\0') {
        va_list args;
        va_start(args, format);
        vsnprintf(s->error, sizeof s->error, format, args);
        va_end(args);
    }
    pthread_mutex_unlock(&s->mutex);
}

static bool echo_stopping(echo_server *s) {
    pthread_mutex_lock(&s->mutex);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mutex);
    return stop;
}

static void echo_conn_body(void *arg) {
    struct echo_conn *ec = arg;
    echo_server *s = ec->server;
    for (;;) {
        ferrows_event *event = NULL;
        int32_t rc = ferrows_conn_recv(ec->conn, 100, &event);
        if (rc == FERROWS_TIMEOUT) {
            if (echo_stopping(s))
                break;
            continue;
        }
        if (rc != FERROWS_OK) {
            echo_error(s, "echo: ferrows_conn_recv returned %d (%s)", (int)rc,
                       ferrows_result_str(rc));
            break;
        }
        uint32_t kind = ferrows_event_type(event);
        if (kind == FERROWS_EVENT_TEXT || kind == FERROWS_EVENT_BINARY) {
            size_t len = 0;
            const uint8_t *data = ferrows_event_data(event, &len);
            pthread_mutex_lock(&s->mutex);
            size_t keep = len < sizeof ec->last - 1 ? len : sizeof ec->last - 1;
            if (keep > 0)
                memcpy(ec->last, data, keep);
            ec->last[keep] = '\0';
            pthread_mutex_unlock(&s->mutex);
            uint32_t type =
                kind == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT : FERROWS_MESSAGE_BINARY;
            int32_t sent = ferrows_conn_send(ec->conn, type, data, len, long_wait_ms());
            /* The client may close right after sending: an echo that finds the connection
             * closing is fine. */
            if (sent != FERROWS_OK && sent != FERROWS_CLOSED)
                echo_error(s, "echo: ferrows_conn_send returned %d (%s)", (int)sent,
                           ferrows_result_str(sent));
            ferrows_event_free(event);
        } else if (kind == FERROWS_EVENT_CLOSED) {
            pthread_mutex_lock(&s->mutex);
            ec->code = ferrows_event_close_code(event);
            ec->result = ferrows_event_result(event);
            event_message(event, ec->reason, sizeof ec->reason);
            ec->ended = true;
            pthread_cond_broadcast(&s->ended);
            pthread_mutex_unlock(&s->mutex);
            ferrows_event_free(event);
            /* After the CLOSED event, the connection reports FERROWS_CLOSED. */
            rc = ferrows_conn_recv(ec->conn, 0, &event);
            if (rc != FERROWS_CLOSED || event != NULL)
                echo_error(s, "echo: ferrows_conn_recv after CLOSED returned %d (%s)",
                           (int)rc, ferrows_result_str(rc));
            break;
        } else {
            echo_error(s, "echo: unexpected %s event", event_kind_name(kind));
            ferrows_event_free(event);
            break;
        }
    }
    ferrows_conn_free(ec->conn);
    ec->conn = NULL;
}

static void echo_accept_body(void *arg) {
    echo_server *s = arg;
    for (;;) {
        ferrows_conn *conn = NULL;
        int32_t rc = ferrows_server_accept(s->server, 100, &conn);
        if (rc == FERROWS_TIMEOUT) {
            if (echo_stopping(s))
                break;
            continue;
        }
        if (rc == FERROWS_CLOSED) /* ferrows_server_shutdown */
            break;
        if (rc != FERROWS_OK || conn == NULL) {
            echo_error(s, "echo: ferrows_server_accept returned %d (%s)", (int)rc,
                       ferrows_result_str(rc));
            break;
        }
        pthread_mutex_lock(&s->mutex);
        struct echo_conn *ec = s->count < ECHO_MAX_CONNS ? &s->conns[s->count++] : NULL;
        pthread_mutex_unlock(&s->mutex);
        if (!ec) {
            echo_error(s, "echo: more than %d connections", ECHO_MAX_CONNS);
            ferrows_conn_free(conn);
            continue;
        }
        ec->server = s;
        ec->conn = conn;
        ec->thread = h_thread_start(echo_conn_body, ec);
        if (!ec->thread) {
            echo_error(s, "echo: cannot start a thread");
            ferrows_conn_free(conn);
            ec->conn = NULL;
        }
    }
}

echo_server *echo_start(const ferrows_config *config) {
    ferrows_config *own = NULL;
    echo_server *s = calloc(1, sizeof *s);
    if (!s) {
        h_fail(__FILE__, __LINE__, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->ended, NULL);
    if (!config) {
        if (ferrows_config_new(&own) != FERROWS_OK) {
            h_fail(__FILE__, __LINE__, "ferrows_config_new failed");
            goto fail;
        }
        config = own;
    }
    int32_t rc = ferrows_server_listen(config, "127.0.0.1", 0, NULL, &s->server);
    ferrows_config_free(own);
    if (rc != FERROWS_OK) {
        char message[256];
        h_last_error(message, sizeof message);
        h_fail(__FILE__, __LINE__, "ferrows_server_listen returned %d (%s): %s", (int)rc,
               ferrows_result_str(rc), message);
        goto fail;
    }
    s->port = ferrows_server_port(s->server);
    if (s->port == 0) {
        h_fail(__FILE__, __LINE__, "ferrows_server_port is 0 after listening on port 0");
        ferrows_server_free(s->server);
        goto fail;
    }
    s->accept_thread = h_thread_start(echo_accept_body, s);
    if (!s->accept_thread) {
        h_fail(__FILE__, __LINE__, "cannot start the accept thread");
        ferrows_server_free(s->server);
        goto fail;
    }
    return s;
fail:
    pthread_mutex_destroy(&s->mutex);
    pthread_cond_destroy(&s->ended);
    free(s);
    return NULL;
}

uint16_t echo_port(const echo_server *s) { return s->port; }

ferrows_server *echo_ferrows_server(echo_server *s) { return s->server; }

void echo_url(const echo_server *s, bool secure, char *buf, size_t len) {
    snprintf(buf, len, "%s://127.0.0.1:%u/", secure ? "wss" : "ws", (unsigned)s->port);
}

/* Under s->mutex. */
static bool echo_conn_ended(const echo_server *s, int n) {
    return n >= 1 && n <= s->count && s->conns[n - 1].ended;
}

bool echo_wait_closed(echo_server *s, int n, int timeout_ms, uint16_t *code, char *reason,
                      size_t reason_len, int32_t *result, char *last, size_t last_len) {
    struct timespec deadline;
    h_deadline(&deadline, timeout_ms);
    pthread_mutex_lock(&s->mutex);
    int waited = 0;
    while (!echo_conn_ended(s, n) && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&s->ended, &s->mutex, &deadline);
    bool ended = echo_conn_ended(s, n);
    if (ended) {
        struct echo_conn *ec = &s->conns[n - 1];
        if (code)
            *code = ec->code;
        if (result)
            *result = ec->result;
        if (reason && reason_len)
            snprintf(reason, reason_len, "%s", ec->reason);
        if (last && last_len)
            snprintf(last, last_len, "%s", ec->last);
    }
    pthread_mutex_unlock(&s->mutex);
    if (!ended)
        h_fail(__FILE__, __LINE__, "the echo server's connection %d did not end within %d ms",
               n, timeout_ms);
    return ended;
}

bool echo_stop(echo_server *s) {
    if (!s)
        return true;
    pthread_mutex_lock(&s->mutex);
    s->stop = true;
    pthread_mutex_unlock(&s->mutex);
    bool joined = h_thread_join(s->accept_thread, long_wait_ms());
    for (int i = 0; joined && i < s->count; i++)
        joined = h_thread_join(s->conns[i].thread, long_wait_ms());
    if (!joined)
        return false; /* threads still use it: leave it (the runner stops after this test) */
    ferrows_server_free(s->server);
    bool ok = s->error[0] == '\0';
    if (!ok)
        h_fail(__FILE__, __LINE__, "%s", s->error);
    pthread_mutex_destroy(&s->mutex);
    pthread_cond_destroy(&s->ended);
    free(s);
    return ok;
}

/* ---- SHA-1 and base64, for handshakes by hand ---------------------------------------- */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *msg = calloc(total, 1);
    if (!msg) {
        memset(out, 0, 20);
        return;
    }
    memcpy(msg, data, len);
    msg[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        msg[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)msg[off + 4 * i] << 24 | (uint32_t)msg[off + 4 * i + 1] << 16 |
                   (uint32_t)msg[off + 4 * i + 2] << 8 | (uint32_t)msg[off + 4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol32(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(msg);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void base64(const uint8_t *data, size_t len, char *out) {
    static const char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = table[(v >> 18) & 63];
        out[o++] = table[(v >> 12) & 63];
        out[o++] = i + 1 < len ? table[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? table[v & 63] : '=';
    }
    out[o] = '\0';
}

void ws_accept_key(const char *key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char joined[128];
    snprintf(joined, sizeof joined, "%s%s", key, guid);
    uint8_t digest[20];
    sha1((const uint8_t *)joined, strlen(joined), digest);
    base64(digest, 20, out);
}

/* ---- raw sockets ----------------------------------------------------------------------- */

static void set_socket_timeouts(int fd) {
    int ms = long_wait_ms();
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static struct sockaddr_in loopback(uint16_t port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

int raw_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        h_fail(__FILE__, __LINE__, "socket: %s", strerror(errno));
        return -1;
    }
    set_socket_timeouts(fd);
    struct sockaddr_in addr = loopback(port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        h_fail(__FILE__, __LINE__, "connect to port %u: %s", (unsigned)port, strerror(errno));
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool raw_send_all(int fd, const void *data, size_t len) {
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            h_fail(__FILE__, __LINE__, "raw send: %s", n < 0 ? strerror(errno) : "closed");
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool read_exact(int fd, void *buf, size_t len) {
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            h_fail(__FILE__, __LINE__, "raw recv: %s",
                   n < 0 ? strerror(errno) : "connection closed by the peer");
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool raw_read_head(int fd, char *buf, size_t len) {
    size_t used = 0;
    while (used + 1 < len) {
        if (!read_exact(fd, buf + used, 1))
            return false;
        used++;
        buf[used] = '\0';
        if (used >= 4 && memcmp(buf + used - 4, "\r\n\r\n", 4) == 0)
            return true;
    }
    h_fail(__FILE__, __LINE__, "HTTP head longer than %zu bytes", len);
    return false;
}

bool http_header(const char *head, const char *name, char *out, size_t len) {
    size_t name_len = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            const char *end = strstr(value, "\r\n");
            size_t n = end ? (size_t)(end - value) : strlen(value);
            while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
                n--;
            if (n + 1 > len)
                return false;
            memcpy(out, value, n);
            out[n] = '\0';
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

bool raw_ws_send_request(int fd, uint16_t port, char key_out[25]) {
    uint8_t nonce[16];
    for (int i = 0; i < 16; i++)
        nonce[i] = (uint8_t)rand();
    base64(nonce, 16, key_out);
    char request[512];
    snprintf(request, sizeof request,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
             (unsigned)port, key_out);
    return raw_send_all(fd, request, strlen(request));
}

bool raw_ws_read_response(int fd, const char *key, char *head, size_t len) {
    char accept[64], expected[29];
    if (!raw_read_head(fd, head, len))
        return false;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        h_fail(__FILE__, __LINE__, "expected a 101 response, got: %.80s", head);
        return false;
    }
    ws_accept_key(key, expected);
    if (!http_header(head, "Sec-WebSocket-Accept", accept, sizeof accept) ||
        strcmp(accept, expected) != 0) {
        h_fail(__FILE__, __LINE__, "bad Sec-WebSocket-Accept in: %.300s", head);
        return false;
    }
    return true;
}

bool raw_ws_send_frame(int fd, bool fin, int opcode, const void *payload, size_t len,
                       bool mask) {
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t header[14];
    size_t n = 0;
    header[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mask_bit = mask ? 0x80 : 0;
    if (len < 126) {
        header[n++] = (uint8_t)(mask_bit | len);
    } else if (len <= 0xffff) {
        header[n++] = (uint8_t)(mask_bit | 126);
        header[n++] = (uint8_t)(len >> 8);
        header[n++] = (uint8_t)len;
    } else {
        header[n++] = (uint8_t)(mask_bit | 127);
        for (int i = 7; i >= 0; i--)
            header[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(header + n, key, 4);
        n += 4;
    }
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return false;
    if (len)
        memcpy(body, payload, len);
    if (mask)
        for (size_t i = 0; i < len; i++)
            body[i] ^= key[i % 4];
    bool ok = raw_send_all(fd, header, n) && raw_send_all(fd, body, len);
    free(body);
    return ok;
}

bool raw_ws_read_frame(int fd, int *opcode, uint8_t *payload, size_t cap, size_t *len) {
    uint8_t header[2];
    if (!read_exact(fd, header, 2))
        return false;
    *opcode = header[0] & 0x0f;
    uint64_t length = header[1] & 0x7f;
    if (length == 126) {
        uint8_t ext[2];
        if (!read_exact(fd, ext, 2))
            return false;
        length = (uint64_t)ext[0] << 8 | ext[1];
    } else if (length == 127) {
        uint8_t ext[8];
        if (!read_exact(fd, ext, 8))
            return false;
        length = 0;
        for (int i = 0; i < 8; i++)
            length = length << 8 | ext[i];
    }
    uint8_t key[4] = {0, 0, 0, 0};
    bool masked = (header[1] & 0x80) != 0;
    if (masked && !read_exact(fd, key, 4))
        return false;
    *len = (size_t)length;
    for (uint64_t i = 0; i < length; i++) {
        uint8_t byte;
        if (!read_exact(fd, &byte, 1))
            return false;
        if (i < cap)
            payload[i] = (uint8_t)(byte ^ key[i % 4]);
    }
    return true;
}

bool raw_ws_read_close(int fd, uint16_t *code, char *reason, size_t reason_len) {
    for (int frames = 0; frames < 1000; frames++) {
        int opcode = 0;
        uint8_t payload[256];
        size_t len = 0;
        if (!raw_ws_read_frame(fd, &opcode, payload, sizeof payload, &len))
            return false;
        if (opcode != 8)
            continue;
        if (len > sizeof payload)
            len = sizeof payload;
        *code = len >= 2 ? (uint16_t)(payload[0] << 8 | payload[1]) : 1005;
        if (reason && reason_len) {
            size_t n = len > 2 ? len - 2 : 0;
            if (n >= reason_len)
                n = reason_len - 1;
            memcpy(reason, payload + 2, n);
            reason[n] = '\0';
        }
        return true;
    }
    h_fail(__FILE__, __LINE__, "no close frame among the first 1000 frames");
    return false;
}

int raw_ws_accept(int listen_fd, char *request, size_t len) {
    struct pollfd p = {listen_fd, POLLIN, 0};
    if (poll(&p, 1, long_wait_ms()) != 1) {
        h_fail(__FILE__, __LINE__, "no client connected within %d ms", long_wait_ms());
        return -1;
    }
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) {
        h_fail(__FILE__, __LINE__, "accept: %s", strerror(errno));
        return -1;
    }
    set_socket_timeouts(fd);
    char key[64], accept_key[29], response[256];
    if (!raw_read_head(fd, request, len) ||
        !http_header(request, "Sec-WebSocket-Key", key, sizeof key)) {
        h_fail(__FILE__, __LINE__, "not an upgrade request: %.200s", request);
        close(fd);
        return -1;
    }
    ws_accept_key(key, accept_key);
    snprintf(response, sizeof response,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
             accept_key);
    if (!raw_send_all(fd, response, strlen(response))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- a ferrows server with a raw client ----------------------------------------------- */

void raw_peer_free(raw_peer *peer) {
    ferrows_event_free(peer->event);
    if (peer->fd >= 0)
        close(peer->fd);
    ferrows_conn_free(peer->accepted);
    ferrows_server_free(peer->server);
    ferrows_config_free(peer->config);
}

bool raw_client_pair(raw_peer *peer) {
    char key[25];
    int32_t rc = ferrows_server_listen(peer->config, "127.0.0.1", 0, NULL, &peer->server);
    if (rc != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_server_listen returned %d", (int)rc);
        return false;
    }
    uint16_t port = ferrows_server_port(peer->server);
    peer->fd = raw_connect(port);
    if (peer->fd < 0 || !raw_ws_send_request(peer->fd, port, key))
        return false;
    rc = ferrows_server_accept(peer->server, long_wait_ms(), &peer->accepted);
    if (rc != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_server_accept returned %d (%s)", (int)rc,
               ferrows_result_str(rc));
        return false;
    }
    return raw_ws_read_response(peer->fd, key, peer->response, sizeof peer->response);
}

/* ---- a server that stops reading after the handshake ---------------------------------- */

static void stalled_body(void *arg) {
    stalled_server *s = arg;
    s->conn_fd = raw_ws_accept(s->listen_fd, s->request, sizeof s->request);
    if (s->conn_fd < 0)
        snprintf(s->error, sizeof s->error, "stalled server: no handshake");
    /* From here on, nothing reads the socket. */
}

bool stalled_start(stalled_server *s) {
    memset(s, 0, sizeof *s);
    s->conn_fd = -1;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0) {
        h_fail(__FILE__, __LINE__, "socket: %s", strerror(errno));
        return false;
    }
    /* Set before listen(): accepted sockets inherit it, and the window it advertises. */
    int small = 4096;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in addr = loopback(0);
    socklen_t addr_len = sizeof addr;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(s->listen_fd, 1) != 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&addr, &addr_len) != 0) {
        h_fail(__FILE__, __LINE__, "stalled server: bind/listen: %s", strerror(errno));
        close(s->listen_fd);
        return false;
    }
    s->port = ntohs(addr.sin_port);
    s->thread = h_thread_start(stalled_body, s);
    if (!s->thread) {
        h_fail(__FILE__, __LINE__, "cannot start a thread");
        close(s->listen_fd);
        return false;
    }
    return true;
}

void stalled_stop(stalled_server *s) {
    if (!h_thread_join(s->thread, long_wait_ms()))
        return;
    s->thread = NULL;
    if (s->error[0])
        h_fail(__FILE__, __LINE__, "%s", s->error);
    if (s->conn_fd >= 0)
        close(s->conn_fd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    s->conn_fd = s->listen_fd = -1;
}

/* ---- misc ------------------------------------------------------------------------------ */

int closed_port_reserve(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = loopback(0);
    socklen_t addr_len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) != 0) {
        h_fail(__FILE__, __LINE__, "cannot reserve a port: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd; /* bound, never listening: connections to it are refused */
}

int raw_listen(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = loopback(0);
    socklen_t addr_len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) != 0) {
        h_fail(__FILE__, __LINE__, "cannot listen: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

void closed_port_release(int fd) {
    if (fd >= 0)
        close(fd);
}

uint8_t *read_file(const char *path, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        h_fail(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, used = 0;
    uint8_t *data = malloc(cap);
    while (data) {
        size_t n = fread(data + used, 1, cap - used, file);
        used += n;
        if (used < cap)
            break;
        uint8_t *bigger = realloc(data, cap * 2);
        if (!bigger) {
            free(data);
            data = NULL;
            break;
        }
        data = bigger;
        cap *= 2;
    }
    fclose(file);
    if (data)
        *len = used;
    return data;
}
