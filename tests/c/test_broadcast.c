/* ferrows_broadcast: one message to many connections of a libferrows server, plain and with
 * permessage-deflate (shared compressed frames and per-connection ones), each client getting
 * the exact message; a client that never reads is skipped, then closed with 1013, counted;
 * and the arguments' checks. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

enum { CLIENTS = 6 };

typedef struct {
    ferrows_server *server;
    ferrows_conn *accepted[CLIENTS];
    int count;
    int32_t rc;
} acceptor;

static void accept_body(void *arg) {
    acceptor *a = arg;
    for (a->count = 0; a->count < CLIENTS; a->count++) {
        a->rc = ferrows_server_accept(a->server, long_wait_ms(), &a->accepted[a->count]);
        if (a->rc != FERROWS_OK)
            return;
    }
}

/* A client config: 0 no compression, 1 the default (the server keeps its context: each
 * connection compresses for itself), 2 server_no_context_takeover (one shared compression). */
static ferrows_config *client_config(int kind) {
    ferrows_config *config = NULL;
    if (ferrows_config_new(&config) != FERROWS_OK)
        return NULL;
    if ((kind == 0 && ferrows_config_set_compression(config, 0) != FERROWS_OK) ||
        (kind == 2 && ferrows_config_set_deflate_no_context_takeover(config, 1, 0) != FERROWS_OK)) {
        ferrows_config_free(config);
        return NULL;
    }
    return config;
}

void test_broadcast_every_client_receives_the_exact_message(void) {
    acceptor a = {0};
    ferrows_config *server_config = NULL;
    h_thread *thread = NULL;
    ferrows_conn *clients[CLIENTS] = {0};
    uint8_t outcomes[CLIENTS];
    ferrows_broadcast_result result;
    char url[64], text[1200];
    const char *messages[3];
    size_t lengths[3];
    for (size_t i = 0; i + 1 < sizeof text; i++)
        text[i] = (char)('a' + i % 7);
    text[sizeof text - 1] = '\0';
    messages[0] = text;
    messages[1] = text + 100;
    messages[2] = "short";
    for (int i = 0; i < 3; i++)
        lengths[i] = strlen(messages[i]);

    CHECK_OK(ferrows_config_new(&server_config));
    CHECK_OK(ferrows_server_listen(server_config, "127.0.0.1", 0, NULL, &a.server));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)ferrows_server_port(a.server));
    thread = h_thread_start(accept_body, &a);
    CHECK(thread);
    for (int i = 0; i < CLIENTS; i++) {
        ferrows_config *config = client_config(i % 3);
        CHECK(config);
        int32_t rc = ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &clients[i]);
        ferrows_config_free(config);
        CHECK_RC(rc, FERROWS_OK);
    }
    CHECK(h_thread_join(thread, long_wait_ms()));
    thread = NULL;
    CHECK_RC(a.rc, FERROWS_OK);
    CHECK_EQ(a.count, CLIENTS);

    for (int m = 0; m < 3; m++) {
        memset(outcomes, 0xff, sizeof outcomes);
        CHECK_OK(ferrows_broadcast(a.accepted, CLIENTS, FERROWS_MESSAGE_TEXT,
                                   (const uint8_t *)messages[m], lengths[m], 0, NULL, outcomes,
                                   &result));
        CHECK_EQ(result.sent, CLIENTS);
        CHECK_EQ(result.skipped + result.closed + result.not_open, 0);
        for (int i = 0; i < CLIENTS; i++)
            CHECK_EQ(outcomes[i], FERROWS_BROADCAST_SENT);
    }
    /* The accepted order may differ from the connect order: every client gets all three. */
    for (int i = 0; i < CLIENTS; i++) {
        for (int m = 0; m < 3; m++) {
            ferrows_event *event = recv_event_of(clients[i], FERROWS_EVENT_TEXT, long_wait_ms());
            bool same = event && event_data_is(event, messages[m], lengths[m]);
            ferrows_event_free(event);
            CHECKF(same, "client %d, message %d differs", i, m);
        }
        CHECK_EQ(ferrows_conn_broadcast_skips(a.accepted[i]), 0);
    }
done:
    if (thread)
        h_thread_join(thread, long_wait_ms());
    for (int i = 0; i < CLIENTS; i++) {
        ferrows_conn_free(clients[i]);
        ferrows_conn_free(a.accepted[i]);
    }
    ferrows_server_free(a.server);
    ferrows_config_free(server_config);
}

void test_broadcast_skips_then_closes_a_client_that_never_reads(void) {
    enum { SIZE = 64 * 1024, MAX_ROUNDS = 400 };
    raw_peer peer = RAW_PEER_INIT;
    uint8_t *data = calloc(SIZE, 1);
    uint8_t outcome = 0xff;
    ferrows_broadcast_result result;
    ferrows_metrics metrics;
    uint16_t code = 0;
    char reason[64] = "";
    int rounds = 0;
    CHECK(data);
    CHECK_OK(ferrows_config_new(&peer.config));
    CHECK_OK(ferrows_config_set_send_watermarks(peer.config, 1024, 4096));
    CHECK(raw_client_pair(&peer));

    /* The raw client reads nothing: once the kernel's buffers are full, it is slow. */
    for (rounds = 0; rounds < MAX_ROUNDS; rounds++) {
        CHECK_OK(ferrows_broadcast(&peer.accepted, 1, FERROWS_MESSAGE_BINARY, data, SIZE, 0,
                                   NULL, &outcome, &result));
        if (outcome != FERROWS_BROADCAST_SENT)
            break;
    }
    CHECKF(rounds < MAX_ROUNDS, "never skipped in %d rounds", MAX_ROUNDS);
    CHECK_EQ(outcome, FERROWS_BROADCAST_SKIPPED);
    CHECK_EQ(result.skipped, 1);
    CHECK_EQ(result.sent, 0);
    CHECK_EQ(ferrows_conn_broadcast_skips(peer.accepted), 1);

    /* Closing instead: the close frame goes after what is queued. */
    CHECK_OK(ferrows_broadcast(&peer.accepted, 1, FERROWS_MESSAGE_BINARY, data, SIZE, 1013,
                               "too slow", &outcome, &result));
    CHECK_EQ(outcome, FERROWS_BROADCAST_CLOSED);
    CHECK_EQ(result.closed, 1);
    CHECK_EQ(ferrows_conn_broadcast_skips(peer.accepted), 2);
    metrics.struct_size = sizeof metrics;
    CHECK_OK(ferrows_server_metrics(peer.server, &metrics));
    CHECK_EQ(metrics.broadcast_skips, 2); /* the server counts them too */
    CHECK_OK(ferrows_broadcast(&peer.accepted, 1, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x",
                               1, 0, NULL, &outcome, &result));
    CHECK_EQ(outcome, FERROWS_BROADCAST_NOT_OPEN);
    CHECK_EQ(result.not_open, 1);
    /* The client reads everything it was sent, then the close frame. */
    CHECK(raw_ws_read_close(peer.fd, &code, reason, sizeof reason));
    CHECK_EQ(code, 1013);
    CHECK(strcmp(reason, "too slow") == 0);
done:
    free(data);
    raw_peer_free(&peer);
}

void test_broadcast_checks_its_arguments(void) {
    raw_peer peer = RAW_PEER_INIT;
    ferrows_conn *with_null[2] = {NULL, NULL};
    ferrows_broadcast_result result = {9, 9, 9, 9};
    uint8_t outcome = 0xff;
    const uint8_t bad_utf8[] = {0xff, 0xfe};
    CHECK_OK(ferrows_config_new(&peer.config));
    CHECK(raw_client_pair(&peer));
    with_null[0] = peer.accepted;
    CHECK_RC(ferrows_broadcast(NULL, 1, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0, NULL,
                               NULL, NULL),
             FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_broadcast(with_null, 2, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 0,
                               NULL, NULL, NULL),
             FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_broadcast(with_null, 1, FERROWS_MESSAGE_TEXT, NULL, 1, 0, NULL, NULL, NULL),
             FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_broadcast(with_null, 1, 3, (const uint8_t *)"x", 1, 0, NULL, NULL, NULL),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_broadcast(with_null, 1, FERROWS_MESSAGE_TEXT, bad_utf8, 2, 0, NULL, NULL,
                               NULL),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_broadcast(with_null, 1, FERROWS_MESSAGE_TEXT, (const uint8_t *)"x", 1, 1000,
                               "", NULL, NULL),
             FERROWS_ERR_INVALID_ARG);
    CHECK_EQ(ferrows_conn_broadcast_skips(NULL), 0);
    /* No connections: nothing to do, all counts zero. */
    CHECK_OK(ferrows_broadcast(NULL, 0, FERROWS_MESSAGE_TEXT, NULL, 0, 0, NULL, NULL, &result));
    CHECK_EQ(result.sent + result.skipped + result.closed + result.not_open, 0);
    /* Nothing was sent by the refused calls: the first frame the client reads is this one. */
    CHECK_OK(ferrows_broadcast(with_null, 1, FERROWS_MESSAGE_TEXT, (const uint8_t *)"ok", 2, 0,
                               NULL, &outcome, &result));
    CHECK_EQ(outcome, FERROWS_BROADCAST_SENT);
    {
        int opcode = 0;
        uint8_t payload[8];
        size_t len = 0;
        CHECK(raw_ws_read_frame(peer.fd, &opcode, payload, sizeof payload, &len));
        CHECK_EQ(opcode, 1);
        CHECK_EQ(len, 2);
        CHECK(memcmp(payload, "ok", 2) == 0);
    }
done:
    raw_peer_free(&peer);
}
