/* Misbehaving peers written with raw sockets (a server that never reads, clients that send
 * invalid UTF-8 or oversized messages, plain HTTP), server behaviour, and TLS with a CA
 * generated at test time (FERROWS_TEST_CERT_DIR, set by run.sh). */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- backpressure --------------------------------------------------------------------- */

void test_backpressure_with_a_peer_that_never_reads(void) {
    enum { LOW = 1024, HIGH = 4096, SIZE = 64 * 1024, MAX_SENDS = 400 };
    /* A send is accepted while fewer than HIGH bytes are unwritten; it then adds one frame
     * (payload and a client header of at most 14 bytes). */
    const size_t bound = HIGH + SIZE + 14;
    stalled_server peer;
    bool peer_started = false;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    uint8_t *data = calloc(SIZE, 1);
    char url[64];
    int sent = 0;
    int32_t rc = FERROWS_OK;
    size_t buffered = 0, most = 0;
    int64_t start, elapsed;
    CHECK(data);
    peer_started = stalled_start(&peer);
    CHECK(peer_started);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_set_send_watermarks(config, LOW, HIGH));
    CHECK_OK(ferrows_config_set_timeouts_ms(config, (uint32_t)long_wait_ms(), 500));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)peer.port);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));

    for (sent = 0; sent < MAX_SENDS; sent++) {
        rc = ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, data, SIZE, 0);
        buffered = ferrows_conn_buffered_amount(conn);
        if (buffered > most)
            most = buffered;
        CHECKF(buffered <= bound, "%zu bytes buffered after %d sends (bound %zu)", buffered,
               sent, bound);
        if (rc != FERROWS_OK)
            break;
    }
    CHECKF(rc == FERROWS_AGAIN, "after %d sends of %d bytes: %d (%s), expected FERROWS_AGAIN",
           sent, SIZE, (int)rc, ferrows_result_str(rc));
    CHECKF(sent < MAX_SENDS, "never got FERROWS_AGAIN in %d sends", MAX_SENDS);
    CHECKF(most >= HIGH, "at most %zu bytes were ever buffered", most);

    /* The peer still reads nothing: a bounded send times out. The kernel may still take a few
     * writes (its send buffer grows, and a slow run — valgrind — drains late), so a timed send
     * may succeed a bounded number of times before the socket is truly full. */
    for (int attempt = 0;; attempt++) {
        CHECKF(attempt < MAX_SENDS, "no timed send timed out in %d attempts", MAX_SENDS);
        start = now_ms();
        rc = ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, data, SIZE, 50);
        elapsed = now_ms() - start;
        CHECK(ferrows_conn_buffered_amount(conn) <= bound);
        if (rc != FERROWS_OK)
            break;
    }
    CHECK_RC(rc, FERROWS_TIMEOUT);
    CHECK_BETWEEN(elapsed, 40, 1000 * time_scale());
    /* Zero timeout again: still AGAIN, at once. */
    start = now_ms();
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0),
             FERROWS_AGAIN);
    CHECK_BETWEEN(now_ms() - start, 0, 100 * time_scale());
done:
    ferrows_conn_free(conn);
    if (peer_started)
        stalled_stop(&peer);
    ferrows_config_free(config);
    free(data);
}

/* ---- bad input from a raw client -------------------------------------------------------- */

/* Reads the close frame the server sends, and the server side's CLOSED event. */
static bool expect_failure(int fd, ferrows_conn *accepted, uint16_t code, int32_t result) {
    uint16_t got = 0;
    char reason[128] = "";
    if (!raw_ws_read_close(fd, &got, reason, sizeof reason))
        return false;
    if (got != code) {
        h_fail(__FILE__, __LINE__, "the close frame has code %u (\"%s\"), expected %u",
               (unsigned)got, reason, (unsigned)code);
        return false;
    }
    ferrows_event *event = recv_event_of(accepted, FERROWS_EVENT_CLOSED, long_wait_ms());
    if (!event)
        return false;
    char message[256];
    event_message(event, message, sizeof message);
    bool ok = true;
    if (ferrows_event_result(event) != result) {
        h_fail(__FILE__, __LINE__, "CLOSED result %d (%s), expected %d (%s); message \"%s\"",
               (int)ferrows_event_result(event),
               ferrows_result_str(ferrows_event_result(event)), (int)result,
               ferrows_result_str(result), message);
        ok = false;
    } else if (ferrows_event_close_code(event) != code) {
        h_fail(__FILE__, __LINE__, "CLOSED code %u, expected %u",
               (unsigned)ferrows_event_close_code(event), (unsigned)code);
        ok = false;
    } else if (message[0] == '\0') {
        h_fail(__FILE__, __LINE__, "a failed connection's CLOSED event has no message");
        ok = false;
    }
    ferrows_event_free(event);
    return ok;
}

void test_peer_invalid_utf8_closes_1007(void) {
    raw_peer p = RAW_PEER_INIT;
    int opcode = 0;
    uint8_t pong[16];
    size_t pong_len = 0;
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK(raw_client_pair(&p));
    /* A valid message first, to show the pair works. */
    CHECK(raw_ws_send_frame(p.fd, true, 1, "ok", 2, true));
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, "ok", 2));
    /* A ping from the peer gets its pong. */
    CHECK(raw_ws_send_frame(p.fd, true, 9, "abc", 3, true));
    CHECK(raw_ws_read_frame(p.fd, &opcode, pong, sizeof pong, &pong_len));
    CHECK_EQ(opcode, 10);
    CHECK_EQ(pong_len, 3);
    CHECK(memcmp(pong, "abc", 3) == 0);
    /* "κ" then bytes that are never UTF-8. */
    CHECK(raw_ws_send_frame(p.fd, true, 1, "\xce\xba\xff\xfe", 4, true));
    CHECK(expect_failure(p.fd, p.accepted, 1007, FERROWS_ERR_PROTOCOL));
    CHECK_EQ(ferrows_conn_close_code(p.accepted), 1007);
done:
    raw_peer_free(&p);
}

void test_peer_message_too_big_closes_1009(void) {
    raw_peer p = RAW_PEER_INIT;
    uint8_t payload[1001];
    memset(payload, 'b', sizeof payload);
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK_OK(ferrows_config_set_max_message_size(p.config, 1000));
    CHECK(raw_client_pair(&p));
    /* Exactly the limit is fine. */
    CHECK(raw_ws_send_frame(p.fd, true, 2, payload, 1000, true));
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_BINARY, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, payload, 1000));
    CHECK(raw_ws_send_frame(p.fd, true, 2, payload, 1001, true));
    CHECK(expect_failure(p.fd, p.accepted, 1009, FERROWS_ERR_MESSAGE_TOO_BIG));
done:
    raw_peer_free(&p);
}

void test_peer_fragmented_message_too_big_closes_1009(void) {
    raw_peer p = RAW_PEER_INIT;
    uint8_t payload[600];
    memset(payload, 't', sizeof payload);
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK_OK(ferrows_config_set_max_message_size(p.config, 1000));
    CHECK(raw_client_pair(&p));
    /* Two fragments of 600: each fits, the message does not. */
    CHECK(raw_ws_send_frame(p.fd, false, 1, payload, sizeof payload, true));
    CHECK(raw_ws_send_frame(p.fd, true, 0, payload, sizeof payload, true));
    CHECK(expect_failure(p.fd, p.accepted, 1009, FERROWS_ERR_MESSAGE_TOO_BIG));
done:
    raw_peer_free(&p);
}

void test_peer_frame_too_big_closes_1009(void) {
    raw_peer p = RAW_PEER_INIT;
    uint8_t payload[120];
    memset(payload, 'f', sizeof payload);
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK_OK(ferrows_config_set_max_frame_size(p.config, 100));
    CHECK(raw_client_pair(&p));
    /* Frames within the limit make a bigger message: only the message limit applies. */
    CHECK(raw_ws_send_frame(p.fd, false, 1, payload, 60, true));
    CHECK(raw_ws_send_frame(p.fd, true, 0, payload, 60, true));
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, payload, 120));
    CHECK(raw_ws_send_frame(p.fd, true, 2, payload, 101, true));
    CHECK(expect_failure(p.fd, p.accepted, 1009, FERROWS_ERR_MESSAGE_TOO_BIG));
done:
    raw_peer_free(&p);
}

void test_peer_too_many_fragments_closes_1009(void) {
    raw_peer p = RAW_PEER_INIT;
    int i;
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK_OK(ferrows_config_set_max_fragments(p.config, 10));
    CHECK(raw_client_pair(&p));
    /* Ten frames make a message; an eleventh frame of the next one fails it. */
    for (i = 0; i < 10; i++) {
        CHECK(raw_ws_send_frame(p.fd, i == 9, i == 0 ? 1 : 0, "f", 1, true));
    }
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, "ffffffffff", 10));
    for (i = 0; i < 11; i++) {
        CHECK(raw_ws_send_frame(p.fd, false, i == 0 ? 1 : 0, "", 0, true));
    }
    CHECK(expect_failure(p.fd, p.accepted, 1009, FERROWS_ERR_MESSAGE_TOO_BIG));
done:
    raw_peer_free(&p);
}

/* A receive that times out while a message is half received keeps that half: the next
 * receive returns the whole message, once. */
void test_recv_timeout_mid_message_keeps_the_part(void) {
    raw_peer p = RAW_PEER_INIT;
    ferrows_event *event = NULL;
    int64_t started;
    int round;
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK(raw_client_pair(&p));
    CHECK(raw_ws_send_frame(p.fd, false, 1, "first ", 6, true));
    for (round = 0; round < 3; round++) {
        started = now_ms();
        CHECK(ferrows_conn_recv(p.accepted, 100, &event) == FERROWS_TIMEOUT);
        CHECK(event == NULL);
        CHECK(now_ms() - started >= 100 && now_ms() - started < 100 + long_wait_ms());
    }
    CHECK(raw_ws_send_frame(p.fd, true, 0, "last", 4, true));
    CHECK(raw_ws_send_frame(p.fd, true, 1, "next", 4, true));
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, "first last", 10));
    ferrows_event_free(p.event);
    p.event = recv_event_of(p.accepted, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(p.event);
    CHECK(event_data_is(p.event, "next", 4));
done:
    raw_peer_free(&p);
}

void test_peer_unmasked_frame_closes_1002(void) {
    raw_peer p = RAW_PEER_INIT;
    CHECK_OK(ferrows_config_new(&p.config));
    CHECK(raw_client_pair(&p));
    CHECK(raw_ws_send_frame(p.fd, true, 1, "not masked", 10, false)); /* clients must mask */
    CHECK(expect_failure(p.fd, p.accepted, 1002, FERROWS_ERR_PROTOCOL));
done:
    raw_peer_free(&p);
}

/* A peer that never answers pings (it reads nothing): closed with 1011. */
void test_keepalive_closes_with_1011_without_pong(void) {
    stalled_server peer;
    bool peer_started = false;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64];
    int64_t start;
    peer_started = stalled_start(&peer);
    CHECK(peer_started);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_set_keepalive_ms(config, 100, 200));
    CHECK_OK(ferrows_config_set_timeouts_ms(config, (uint32_t)long_wait_ms(), 300));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)peer.port);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    start = now_ms();
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 1011);
    CHECK(ferrows_event_result(event) != FERROWS_OK);
    /* a ping at 100 ms, no pong by 300 ms, then at most the 300 ms close timeout */
    CHECK_BETWEEN(now_ms() - start, 200, 3000 * time_scale());
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    if (peer_started)
        stalled_stop(&peer);
    ferrows_config_free(config);
}

/* ---- servers --------------------------------------------------------------------------- */

void test_server_max_connections_503(void) {
    ferrows_config *server_config = NULL, *client_config = NULL;
    echo_server *server = NULL;
    ferrows_conn *first = NULL, *second = NULL;
    char url[64], message[512];
    int32_t rc = -100;
    int64_t deadline;
    CHECK_OK(ferrows_config_new(&server_config));
    CHECK_OK(ferrows_config_set_max_connections(server_config, 1));
    server = echo_start(server_config);
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&client_config));
    CHECK_OK(ferrows_connect_blocking(client_config, url, long_wait_ms(), NULL, &first));
    CHECK_RC(ferrows_connect_blocking(client_config, url, long_wait_ms(), NULL, &second),
             FERROWS_ERR_HANDSHAKE);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "503") != NULL, "no 503 in \"%s\"", message);
    CHECK(second == NULL);
    /* Once the first one is gone, its slot is free again. */
    CHECK_OK(ferrows_conn_close(first, 1000, NULL));
    CHECK(echo_wait_closed(server, 1, long_wait_ms(), NULL, NULL, 0, NULL, NULL, 0));
    /* The server frees the slot as its side of the connection winds down, which may end
     * just after the CLOSED event: try until it has (each try is a whole handshake). */
    deadline = now_ms() + long_wait_ms();
    for (int attempt = 0; attempt < 10000 && now_ms() < deadline; attempt++) {
        rc = ferrows_connect_blocking(client_config, url, long_wait_ms(), NULL, &second);
        if (rc != FERROWS_ERR_HANDSHAKE)
            break;
    }
    CHECK_OK(rc);
done:
    ferrows_conn_free(second);
    ferrows_conn_free(first);
    ferrows_config_free(client_config);
    ferrows_config_free(server_config);
    echo_stop(server);
}


/* Sends `request` on a fresh connection and returns the response's status code (0 on
 * error). */
static int http_status(uint16_t port, const char *request) {
    char head[8192];
    int status = 0, fd = raw_connect(port);
    if (fd < 0)
        return 0;
    if (raw_send_all(fd, request, strlen(request)) && raw_read_head(fd, head, sizeof head) &&
        sscanf(head, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    close(fd);
    return status;
}

void test_server_port_and_plain_http_gets_4xx(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_server *again = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char url[64], request[512];
    int status;
    uint16_t port;
    CHECK(server);
    port = echo_port(server);
    CHECK(port != 0);
    CHECK_EQ(ferrows_server_port(echo_ferrows_server(server)), port);

    status = http_status(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECKF(status >= 400 && status < 500, "plain GET: status %d", status);
    snprintf(request, sizeof request,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    status = http_status(port, request); /* no Sec-WebSocket-Key */
    CHECKF(status >= 400 && status < 500, "upgrade without a key: status %d", status);
    snprintf(request, sizeof request,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 8\r\n\r\n");
    status = http_status(port, request); /* an old version */
    CHECKF(status >= 400 && status < 500, "version 8: status %d", status);

    /* The refused requests were skipped: a real client still gets through. */
    CHECK_OK(ferrows_config_new(&config));
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"hi", 2,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);

    /* The port is taken: a second server on it fails with an I/O error. */
    CHECK_RC(ferrows_server_listen(config, "127.0.0.1", port, NULL, &again), FERROWS_ERR_IO);
    CHECK(again == NULL);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_server_free(again);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_server_shutdown_closes_clients_with_1001(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL, *late = NULL, *accepted = NULL;
    ferrows_event *event = NULL;
    char url[64], reason[128];
    CHECK(server);
    CHECK_OK(ferrows_config_new(&config));
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"hi", 2,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    ferrows_event_free(event);
    event = NULL;

    CHECK_OK(ferrows_server_shutdown(echo_ferrows_server(server), long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 1001);
    CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
    event_message(event, reason, sizeof reason);
    ferrows_event_free(event);
    event = NULL;
    CHECK_RC(ferrows_conn_recv(conn, 0, &event), FERROWS_CLOSED);
    /* A shut-down server accepts nothing more. */
    CHECK_RC(ferrows_server_accept(echo_ferrows_server(server), 0, &accepted), FERROWS_CLOSED);
    CHECK_RC(ferrows_server_accept(echo_ferrows_server(server), 100, &accepted), FERROWS_CLOSED);
    CHECK(accepted == NULL);
    CHECK(ferrows_connect_blocking(config, url, 1000 * time_scale(), NULL, &late) !=
          FERROWS_OK);
    /* Shutting down twice is harmless. */
    CHECK_OK(ferrows_server_shutdown(echo_ferrows_server(server), 100));
done:
    ferrows_event_free(event);
    ferrows_conn_free(late);
    ferrows_conn_free(accepted);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_server_origin_and_subprotocol(void) {
    ferrows_config *server_config = NULL, *client_config = NULL;
    echo_server *server = NULL;
    ferrows_conn *conn = NULL;
    char url[64], name[32];
    size_t len = 0;
    CHECK_OK(ferrows_config_new(&server_config));
    CHECK_OK(ferrows_config_add_subprotocol(server_config, "superchat"));
    CHECK_OK(ferrows_config_add_subprotocol(server_config, "chat"));
    CHECK_OK(ferrows_config_add_allowed_origin(server_config, "https://good.example"));
    server = echo_start(server_config);
    CHECK(server);
    echo_url(server, false, url, sizeof url);

    CHECK_OK(ferrows_config_new(&client_config));
    CHECK_OK(ferrows_config_set_origin(client_config, "https://good.example"));
    CHECK_OK(ferrows_config_add_subprotocol(client_config, "chat"));
    CHECK_OK(ferrows_connect_blocking(client_config, url, long_wait_ms(), NULL, &conn));
    CHECK_OK(ferrows_conn_subprotocol(conn, name, sizeof name, &len));
    CHECKF(strcmp(name, "chat") == 0, "subprotocol \"%s\"", name);
    CHECK_EQ(len, 4);
    ferrows_conn_free(conn);
    conn = NULL;

    /* Another origin: 403, a handshake error. */
    CHECK_OK(ferrows_config_set_origin(client_config, "https://evil.example"));
    CHECK_RC(ferrows_connect_blocking(client_config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_HANDSHAKE);
    CHECK(conn == NULL);
done:
    ferrows_conn_free(conn);
    ferrows_config_free(client_config);
    ferrows_config_free(server_config);
    echo_stop(server);
}

/* One config for both ends, built as the docs show: its request header goes into the
 * requests of clients only, its response header into the responses of servers only. */
void test_request_and_response_headers_stay_on_their_side(void) {
    raw_peer raw_client = RAW_PEER_INIT;
    stalled_server raw_server;
    bool raw_server_running = false;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char url[64], value[64];
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_add_request_header(config, "Authorization", "Bearer secret"));
    CHECK_OK(ferrows_config_add_response_header(config, "X-Served-By", "c-suite"));

    /* A client made with it: a raw server reads its request. */
    raw_server_running = stalled_start(&raw_server);
    CHECK(raw_server_running);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)raw_server.port);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    raw_server_running = false;
    stalled_stop(&raw_server);
    CHECKF(http_header(raw_server.request, "Authorization", value, sizeof value) &&
               strcmp(value, "Bearer secret") == 0,
           "no request header in: %s", raw_server.request);
    CHECKF(!http_header(raw_server.request, "X-Served-By", value, sizeof value),
           "the response header went into the request: %s", raw_server.request);

    /* A server made with it: a raw client reads its 101. */
    raw_client.config = config;
    config = NULL;
    CHECK(raw_client_pair(&raw_client));
    CHECKF(http_header(raw_client.response, "X-Served-By", value, sizeof value) &&
               strcmp(value, "c-suite") == 0,
           "no response header in: %s", raw_client.response);
    CHECKF(!http_header(raw_client.response, "Authorization", value, sizeof value),
           "the request header went into the response: %s", raw_client.response);
done:
    ferrows_conn_free(conn);
    if (raw_server_running)
        stalled_stop(&raw_server);
    raw_peer_free(&raw_client);
    ferrows_config_free(config);
}

/* ---- TLS ------------------------------------------------------------------------------ */

bool load_pems(pems *p) {
    const char *dir = getenv("FERROWS_TEST_CERT_DIR");
    char path[1024];
    memset(p, 0, sizeof *p);
    if (!dir || !*dir) {
        h_fail(__FILE__, __LINE__,
               "FERROWS_TEST_CERT_DIR is not set: run the suite through tests/c/run.sh, "
               "which generates a CA and a server certificate with openssl");
        return false;
    }
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    p->ca = read_file(path, &p->ca_len);
    snprintf(path, sizeof path, "%s/server.pem", dir);
    p->cert = read_file(path, &p->cert_len);
    snprintf(path, sizeof path, "%s/server.key", dir);
    p->key = read_file(path, &p->key_len);
    return p->ca && p->cert && p->key;
}

void free_pems(pems *p) {
    free(p->ca);
    free(p->cert);
    free(p->key);
}

echo_server *tls_echo_start(const pems *p) {
    ferrows_config *config = NULL;
    echo_server *server = NULL;
    if (ferrows_config_new(&config) != FERROWS_OK)
        return NULL;
    int32_t rc = ferrows_config_tls_set_server_cert_pem(config, p->cert, p->cert_len, p->key,
                                                        p->key_len);
    if (rc == FERROWS_OK)
        server = echo_start(config);
    else
        h_fail(__FILE__, __LINE__, "ferrows_config_tls_set_server_cert_pem returned %d", (int)rc);
    ferrows_config_free(config);
    return server;
}

void test_tls_with_custom_ca(void) {
    pems p;
    echo_server *server = NULL;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    uint8_t *big = NULL;
    char url[64];
    const size_t big_len = 200 * 1000;
    CHECK(load_pems(&p));
    server = tls_echo_start(&p);
    CHECK(server);
    echo_url(server, true, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_tls_add_ca_pem(config, p.ca, p.ca_len));
    CHECK_OK(ferrows_config_tls_use_system_roots(config, false));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));

    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"secret", 6,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, "secret", 6));
    ferrows_event_free(event);
    event = NULL;
    big = malloc(big_len);
    CHECK(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i % 251);
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_BINARY, big, big_len, long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_BINARY, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, big, big_len));
    ferrows_event_free(event);
    event = NULL;
    CHECK_OK(ferrows_conn_close(conn, 1000, "tls bye"));
    event = recv_event_of(conn, FERROWS_EVENT_CLOSED, long_wait_ms());
    CHECK(event);
    CHECK_EQ(ferrows_event_close_code(event), 1000);
    CHECK_EQ(ferrows_event_result(event), FERROWS_OK);
    ferrows_event_free(event);
    event = NULL;
    ferrows_conn_free(conn);
    conn = NULL;

    /* The certificate names 127.0.0.1 and localhost; checking another name fails. */
    CHECK_OK(ferrows_config_tls_set_server_name(config, "localhost"));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    ferrows_conn_free(conn);
    conn = NULL;
    CHECK_OK(ferrows_config_tls_set_server_name(config, "other.example"));
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_TLS_UNTRUSTED);
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
    free(big);
    free_pems(&p);
}

void test_tls_without_ca_fails(void) {
    pems p;
    echo_server *server = NULL;
    ferrows_config *config = NULL, *bad_server = NULL;
    ferrows_conn *conn = NULL;
    ferrows_server *refused = NULL;
    char url[64], message[256];
    CHECK(load_pems(&p));
    server = tls_echo_start(&p);
    CHECK(server);
    echo_url(server, true, url, sizeof url);

    /* System roots only (the default): the test CA is unknown. */
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_TLS_UNTRUSTED);
    CHECK(conn == NULL);
    h_last_error(message, sizeof message);
    CHECKF(message[0] != '\0', "no message for a TLS failure");
    /* No roots at all. */
    CHECK_OK(ferrows_config_tls_use_system_roots(config, false));
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn), FERROWS_ERR_TLS);
    /* Plain ws:// to a TLS server is no WebSocket server either. */
    echo_url(server, false, url, sizeof url);
    CHECK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn) != FERROWS_OK);
    CHECK(conn == NULL);
    echo_url(server, true, url, sizeof url);
    /* Verification turned off: connects (tests only). */
    CHECK_OK(ferrows_config_tls_skip_verification(config, true));
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    ferrows_conn_free(conn);
    conn = NULL;

    /* A server certificate that is not PEM: refused when listening. */
    CHECK_OK(ferrows_config_new(&bad_server));
    CHECK_OK(ferrows_config_tls_set_server_cert_pem(bad_server, (const uint8_t *)"not pem", 7,
                                                    p.key, p.key_len));
    CHECK_RC(ferrows_server_listen(bad_server, "127.0.0.1", 0, NULL, &refused), FERROWS_ERR_TLS);
    CHECK(refused == NULL);
done:
    ferrows_conn_free(conn);
    ferrows_server_free(refused);
    ferrows_config_free(bad_server);
    ferrows_config_free(config);
    echo_stop(server);
    free_pems(&p);
}
