/* The C test suite of libferrows: a minimal test runner and the peers the tests talk to.
 *
 * A test is a `void test_NAME(void)` function listed in TEST_LIST (test_ferrows.c). It
 * checks with the CHECK* macros below: the first failed check records its reason and jumps
 * to the test's `done:` label, where the test releases what it holds. Helper threads never
 * jump: they record what went wrong in their context, and the test thread checks it.
 *
 * Every wait is bounded: the library's own timeouts first, then a per-test alarm. */
#ifndef FERROWS_TEST_HARNESS_H
#define FERROWS_TEST_HARNESS_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <time.h>

#include "ferrows.h"

/* ---- failures ---------------------------------------------------------------------- */

/* Records the current test's failure (the first one wins; later ones are ignored). */
void h_fail(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether the current test has failed. */
bool h_failed(void);
/* For the runner: forget the previous test's failure; the current failure's text. */
void h_begin_test(void);
const char *h_failure(void);

#define FAIL(...)                                                                          \
    do {                                                                                   \
        h_fail(__FILE__, __LINE__, __VA_ARGS__);                                           \
        goto done;                                                                         \
    } while (0)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond))                                                                       \
            FAIL("check failed: %s", #cond);                                               \
    } while (0)

#define CHECKF(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond))                                                                       \
            FAIL(__VA_ARGS__);                                                             \
    } while (0)

/* Integers compared as long long, both values shown. */
#define CHECK_EQ(actual, expected)                                                         \
    do {                                                                                   \
        long long a_ = (long long)(actual), e_ = (long long)(expected);                    \
        if (a_ != e_)                                                                      \
            FAIL("%s is %lld, expected %lld (%s)", #actual, a_, e_, #expected);            \
    } while (0)

/* A call returning a ferrows_result, with the last error message on mismatch. */
#define CHECK_RC(expr, expected)                                                           \
    do {                                                                                   \
        int32_t r_ = (int32_t)(expr), w_ = (int32_t)(expected);                            \
        if (r_ != w_) {                                                                    \
            char m_[256];                                                                  \
            h_last_error(m_, sizeof m_);                                                   \
            FAIL("%s returned %d (%s), expected %d (%s); last error: \"%s\"", #expr,       \
                 (int)r_, ferrows_result_str(r_), (int)w_, ferrows_result_str(w_), m_);    \
        }                                                                                  \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, FERROWS_OK)

/* A wait that took `elapsed` ms must have lasted between lo and hi ms. */
#define CHECK_BETWEEN(elapsed, lo, hi)                                                     \
    do {                                                                                   \
        long long v_ = (long long)(elapsed), l_ = (long long)(lo), h_ = (long long)(hi);   \
        if (v_ < l_ || v_ > h_)                                                            \
            FAIL("%s is %lld, expected between %lld and %lld", #elapsed, v_, l_, h_);      \
    } while (0)

/* Copies this thread's last ferrows error message into buf ("" when none). */
void h_last_error(char *buf, size_t len);

/* ---- time ---------------------------------------------------------------------------- */

int64_t now_ms(void);
/* The CLOCK_REALTIME time timeout_ms from now, for pthread_cond_timedwait. */
void h_deadline(struct timespec *deadline, int timeout_ms);
/* How much slower than native this run is (FERROWS_TEST_TIME_SCALE; valgrind sets ~10).
 * Scales the upper bounds of timing checks and generous waits, never the lower bounds. */
int time_scale(void);
/* A generous wait for something that should happen soon: 5 s times the scale. */
int long_wait_ms(void);

/* ---- threads ------------------------------------------------------------------------- */

/* A thread whose end can be waited for with a timeout: a hung library call must fail the
 * test, not hang the suite. */
typedef struct h_thread h_thread;

/* NULL if the thread could not be started. */
h_thread *h_thread_start(void (*body)(void *arg), void *arg);
/* Joins the thread (and frees the handle) if it ends within timeout_ms. If it does not, the
 * failure is recorded, the thread is left running and the suite is "poisoned": the runner
 * stops after this test, since the thread may still use the test's memory. */
bool h_thread_join(h_thread *thread, int timeout_ms);
/* Whether a thread was abandoned (see h_thread_join). */
bool h_poisoned(void);

/* A count that threads raise and others wait for: how a test waits for something to happen
 * in another thread, never by sleeping. Statically initialized with H_SIGNAL_INIT. */
typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int count;
} h_signal;

#define H_SIGNAL_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

void h_signal_raise(h_signal *signal);
/* Whether the count reached `count` within timeout_ms. */
bool h_signal_wait(h_signal *signal, int count, int timeout_ms);

/* ---- events -------------------------------------------------------------------------- */

const char *event_kind_name(uint32_t kind);
/* Takes the next event of `queue` within timeout_ms and checks its kind; NULL (and the
 * failure recorded) otherwise. */
ferrows_event *next_event_of(ferrows_queue *queue, uint32_t kind, int timeout_ms);
/* The same through ferrows_conn_recv. */
ferrows_event *recv_event_of(ferrows_conn *conn, uint32_t kind, int timeout_ms);
/* Whether a TEXT/BINARY event holds exactly (data, len). */
bool event_data_is(const ferrows_event *event, const void *data, size_t len);
/* A CLOSED/ERROR event's message as a string. */
void event_message(const ferrows_event *event, char *buf, size_t len);

/* ---- an echo server made of libferrows itself ---------------------------------------- */

#define ECHO_MAX_CONNS 32

typedef struct echo_server echo_server;

/* Listens on 127.0.0.1, port 0, with `config` (NULL: defaults), and serves from a thread
 * with ferrows_server_accept; each connection gets a thread that echoes every message. */
echo_server *echo_start(const ferrows_config *config);
uint16_t echo_port(const echo_server *server);
ferrows_server *echo_ferrows_server(echo_server *server);
/* "ws://127.0.0.1:PORT/" (or wss://) into buf. */
void echo_url(const echo_server *server, bool secure, char *buf, size_t len);
/* Waits for the n-th (1-based) connection to end on the server side and reports its CLOSED
 * event: code, reason, result, and the last message it received before. */
bool echo_wait_closed(echo_server *server, int n, int timeout_ms, uint16_t *code,
                      char *reason, size_t reason_len, int32_t *result, char *last_message,
                      size_t last_len);
/* Stops accepting, ends every connection, joins every thread, frees the server; returns
 * false (with the reason recorded as a failure) if a thread reported an error. */
bool echo_stop(echo_server *server);

/* ---- raw sockets ----------------------------------------------------------------------- */

/* A TCP connection to 127.0.0.1:port with send and receive timeouts; -1 on failure. */
int raw_connect(uint16_t port);
bool raw_send_all(int fd, const void *data, size_t len);
/* Reads an HTTP head (up to and including the blank line) one byte at a time, so no byte
 * after it is consumed. */
bool raw_read_head(int fd, char *buf, size_t len);
/* The value of header `name` (case-insensitive) in an HTTP head, copied into out. */
bool http_header(const char *head, const char *name, char *out, size_t len);
/* base64(SHA-1(key + RFC 6455 GUID)). */
void ws_accept_key(const char *key, char out[29]);
/* Sends a client upgrade request for "/" with a fresh key (saved in key_out). */
bool raw_ws_send_request(int fd, uint16_t port, char key_out[25]);
/* Reads the server's response into (head, len) and checks 101 and Sec-WebSocket-Accept. */
bool raw_ws_read_response(int fd, const char *key, char *head, size_t len);
/* Accepts a client on listen_fd within long_wait_ms, reads its upgrade request into
 * (request, len) and answers 101: the connected socket, or -1 (with the failure recorded). */
int raw_ws_accept(int listen_fd, char *request, size_t len);
/* Writes one frame; masked with a fixed non-zero key when `mask`. */
bool raw_ws_send_frame(int fd, bool fin, int opcode, const void *payload, size_t len,
                       bool mask);
/* Reads one frame (any mask); payload truncated to cap bytes, *len the full length. */
bool raw_ws_read_frame(int fd, int *opcode, uint8_t *payload, size_t cap, size_t *len);
/* Reads frames until a close frame; its code (1005 if empty) and reason. */
bool raw_ws_read_close(int fd, uint16_t *code, char *reason, size_t reason_len);

/* A ferrows server with one raw client whose handshake was done by hand, and what a test
 * took from them; raw_peer_free releases it all. */
typedef struct {
    ferrows_config *config;
    ferrows_server *server;
    ferrows_conn *accepted;
    ferrows_event *event;
    int fd;
    char response[4096]; /* the head of the server's 101 */
} raw_peer;

#define RAW_PEER_INIT {NULL, NULL, NULL, NULL, -1, ""}

void raw_peer_free(raw_peer *peer);
/* Listens with `peer->config`, connects a raw client and completes its handshake by hand;
 * the accepted connection lands in `peer->accepted` (blocking accept, no queue). */
bool raw_client_pair(raw_peer *peer);

/* A listener on 127.0.0.1 (port 0) with a small receive buffer that completes one
 * WebSocket handshake by hand (keeping the request head) and then reads nothing. */
typedef struct {
    int listen_fd;
    int conn_fd;
    uint16_t port;
    h_thread *thread;
    char request[4096];
    char error[256];
} stalled_server;

bool stalled_start(stalled_server *server);
/* Waits for the handshake thread; closes everything. */
void stalled_stop(stalled_server *server);

/* A port on 127.0.0.1 where nothing listens (the socket stays bound, not listening, until
 * closed_port_release). */
int closed_port_reserve(uint16_t *port);
void closed_port_release(int fd);

/* A listener on 127.0.0.1 (port 0); -1 on failure. Left alone, it never accepts nor
 * answers: the kernel completes TCP connections to it, and an opening handshake then waits
 * forever. */
int raw_listen(uint16_t *port);

/* The test CA, server certificate and key that tests/c/run.sh generates. */
typedef struct {
    uint8_t *ca, *cert, *key;
    size_t ca_len, cert_len, key_len;
} pems;

/* Loads them from FERROWS_TEST_CERT_DIR (false, with the failure recorded, if unset). */
bool load_pems(pems *p);
void free_pems(pems *p);
/* An echo server speaking TLS with that certificate. */
echo_server *tls_echo_start(const pems *p);

/* Reads a whole file; caller frees. NULL on error. */
uint8_t *read_file(const char *path, size_t *len);

#endif /* FERROWS_TEST_HARNESS_H */
