/* permessage-deflate through the C API: what a client and a server agree on by default and
 * when configured, messages both ways with and without FERROWS_SEND_UNCOMPRESSED, turning
 * compression off on either side, and the setters' checks. The peer is libferrows' own
 * echo server (harness.c). */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

/* Connects a client made with `client` (NULL: defaults) to `server`. */
static ferrows_conn *connect_with(echo_server *server, const ferrows_config *client) {
    ferrows_config *own = NULL;
    ferrows_conn *conn = NULL;
    char url[64], message[256];
    if (!client) {
        if (ferrows_config_new(&own) != FERROWS_OK) {
            h_fail(__FILE__, __LINE__, "ferrows_config_new failed");
            return NULL;
        }
        client = own;
    }
    echo_url(server, false, url, sizeof url);
    int32_t rc = ferrows_connect_blocking(client, url, long_wait_ms(), NULL, &conn);
    ferrows_config_free(own);
    if (rc != FERROWS_OK) {
        h_last_error(message, sizeof message);
        h_fail(__FILE__, __LINE__, "connect to %s returned %d: %s", url, (int)rc, message);
        return NULL;
    }
    return conn;
}

/* Whether the connection agreed on exactly `expected` ("" for no compression). */
static bool agreed(ferrows_conn *conn, const char *expected) {
    char buf[256];
    size_t len = 0;
    if (ferrows_conn_compression(conn, buf, sizeof buf, &len) != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "ferrows_conn_compression failed");
        return false;
    }
    if (strcmp(buf, expected) != 0 || len != strlen(expected)) {
        h_fail(__FILE__, __LINE__, "agreed \"%s\", expected \"%s\"", buf, expected);
        return false;
    }
    return true;
}

/* Sends `text` with `flags` and checks that the echo comes back identical. */
static bool echoed(ferrows_conn *conn, const char *text, size_t len, uint32_t flags) {
    int32_t rc = ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT | flags, (const uint8_t *)text,
                                   len, long_wait_ms());
    if (rc != FERROWS_OK) {
        h_fail(__FILE__, __LINE__, "send returned %d (%s)", (int)rc, ferrows_result_str(rc));
        return false;
    }
    ferrows_event *event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    bool ok = event && event_data_is(event, text, len);
    ferrows_event_free(event);
    return ok;
}

/* About 64 KiB of JSON-like text. */
static char *json_like(size_t *len) {
    size_t cap = 70000, used = 0;
    char *text = malloc(cap);
    for (int i = 0; text && used + 80 < 65536; i++)
        used += (size_t)snprintf(text + used, cap - used,
                                 "{\"id\":%d,\"user\":\"user%d\",\"score\":%d},", i, i % 97,
                                 i * 7);
    *len = used;
    return text;
}

void test_deflate_defaults_agree_and_messages_flow(void) {
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    size_t len = 0;
    char *text = json_like(&len);
    CHECK(server && text);
    conn = connect_with(server, NULL);
    CHECK(conn);
    CHECK(agreed(conn,
                 "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"));
    for (int round = 0; round < 3; round++) {
        CHECK(echoed(conn, text, len, 0));
        CHECK(echoed(conn, text, len, FERROWS_SEND_UNCOMPRESSED));
        CHECK(echoed(conn, "short", 5, 0));
        CHECK(echoed(conn, "", 0, 0));
    }
done:
    free(text);
    ferrows_conn_free(conn);
    echo_stop(server);
}

void test_deflate_configured_and_turned_off(void) {
    ferrows_config *asking = NULL, *off = NULL;
    echo_server *server = NULL, *plain_server = NULL;
    ferrows_conn *conn = NULL;
    size_t len = 0;
    char *text = json_like(&len);
    CHECK(text);
    CHECK_OK(ferrows_config_new(&asking));
    CHECK_OK(ferrows_config_set_deflate(asking, 6, 8, 0));
    CHECK_OK(ferrows_config_set_deflate_window_bits(asking, 10, 11));
    CHECK_OK(ferrows_config_set_deflate_no_context_takeover(asking, 1, 1));
    CHECK_OK(ferrows_config_new(&off));
    CHECK_OK(ferrows_config_set_compression(off, 0));

    server = echo_start(NULL);
    CHECK(server);
    conn = connect_with(server, asking);
    CHECK(conn);
    CHECK(agreed(conn, "permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover; server_max_window_bits=10; "
                       "client_max_window_bits=11"));
    CHECK(echoed(conn, text, len, 0));
    CHECK(echoed(conn, text, len, 0));
    ferrows_conn_free(conn);

    /* A client that does not offer, a server that does not accept. */
    conn = connect_with(server, off);
    CHECK(conn);
    CHECK(agreed(conn, ""));
    CHECK(echoed(conn, text, len, 0));
    ferrows_conn_free(conn);
    plain_server = echo_start(off);
    CHECK(plain_server);
    conn = connect_with(plain_server, NULL);
    CHECK(conn);
    CHECK(agreed(conn, ""));
    CHECK(echoed(conn, text, len, 0));
done:
    free(text);
    ferrows_conn_free(conn);
    echo_stop(server);
    echo_stop(plain_server);
    ferrows_config_free(asking);
    ferrows_config_free(off);
}

void test_deflate_setters_check_their_values(void) {
    ferrows_config *config = NULL;
    echo_server *server = echo_start(NULL);
    ferrows_conn *conn = NULL;
    CHECK(server);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_compression(config, 2), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate(config, 10, 5, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate(config, 1, 0, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate(config, 1, 10, 0), FERROWS_ERR_INVALID_ARG);
    /* 8 cannot be compressed with; 16 is past RFC 7692's range. */
    CHECK_RC(ferrows_config_set_deflate_window_bits(config, 8, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate_window_bits(config, 0, 16), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate_no_context_takeover(config, 2, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_config_set_deflate(NULL, 1, 5, 0), FERROWS_ERR_NULL_PARAM);
    /* A refused value changed nothing: the defaults are still agreed. */
    conn = connect_with(server, config);
    CHECK(conn);
    CHECK(agreed(conn,
                 "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"));
    /* Unknown flags in the message type are refused. */
    CHECK_RC(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT | 0x200, (const uint8_t *)"x", 1, 0),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_conn_compression(NULL, NULL, 0, NULL), FERROWS_ERR_NULL_PARAM);
    /* With compression off the settings have nothing to apply to. */
    CHECK_OK(ferrows_config_set_compression(config, 0));
    CHECK_RC(ferrows_config_set_deflate(config, 1, 5, 0), FERROWS_ERR_INVALID_ARG);
    CHECK_OK(ferrows_config_set_compression(config, 1));
    CHECK_OK(ferrows_config_set_deflate(config, 1, 5, 0));
done:
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}
