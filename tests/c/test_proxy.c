/* Proxies: tinyproxy (HTTP CONNECT with Basic auth), stunnel in front of it (an https://
 * proxy with the suite's server certificate) and microsocks (SOCKS5 with username/password),
 * started by tests/c/run.sh, which passes their URLs (with the right credentials) in
 * FERROWS_TEST_HTTP_PROXY, FERROWS_TEST_HTTPS_PROXY and FERROWS_TEST_SOCKS_PROXY. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The proxy URL from `variable`, into buf (false, with the failure recorded, if unset). */
static bool proxy_url(const char *variable, char *buf, size_t len) {
    const char *url = getenv(variable);
    if (!url || !*url) {
        h_fail(__FILE__, __LINE__, "%s is not set: run the suite through tests/c/run.sh",
               variable);
        return false;
    }
    snprintf(buf, len, "%s", url);
    return true;
}

/* The port of a proxy URL ("...:PORT"). */
static unsigned url_port(const char *url) {
    const char *colon = strrchr(url, ':');
    return colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

/* Connects to `url` with `config`, checks the peer is the proxy on `proxy_port`, and echoes
 * one message. */
static bool echo_through(ferrows_config *config, const char *url, unsigned proxy_port) {
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    char peer[64], expected[64];
    bool ok = false;
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    CHECK_OK(ferrows_conn_peer_address(conn, peer, sizeof peer, NULL));
    snprintf(expected, sizeof expected, "127.0.0.1:%u", proxy_port);
    CHECKF(strcmp(peer, expected) == 0, "peer %s, expected the proxy %s", peer, expected);
    CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)"tunneled", 8,
                               long_wait_ms()));
    event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
    CHECK(event);
    CHECK(event_data_is(event, "tunneled", 8));
    ok = true;
done:
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    return ok;
}

/* ws:// and wss:// through the proxy named by `variable`. */
static void echo_ws_and_wss(const char *variable) {
    pems p;
    bool loaded = false;
    echo_server *plain = NULL, *secure = NULL;
    ferrows_config *config = NULL;
    char proxy[256], url[64];
    CHECK(proxy_url(variable, proxy, sizeof proxy));
    CHECK((loaded = load_pems(&p)));
    plain = echo_start(NULL);
    CHECK(plain);
    secure = tls_echo_start(&p);
    CHECK(secure);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_tls_add_ca_pem(config, p.ca, p.ca_len));
    CHECK_OK(ferrows_config_tls_use_system_roots(config, false));
    CHECK_OK(ferrows_config_set_proxy(config, proxy));
    echo_url(plain, false, url, sizeof url);
    CHECK(echo_through(config, url, url_port(proxy)));
    echo_url(secure, true, url, sizeof url);
    CHECK(echo_through(config, url, url_port(proxy)));
    /* NULL turns the proxy off: the peer is the server itself. */
    CHECK_OK(ferrows_config_set_proxy(config, NULL));
    CHECK(echo_through(config, url, echo_port(secure)));
done:
    ferrows_config_free(config);
    echo_stop(plain);
    echo_stop(secure);
    if (loaded)
        free_pems(&p);
}

void test_proxy_http_connect_ws_and_wss(void) {
    echo_ws_and_wss("FERROWS_TEST_HTTP_PROXY");
}

void test_proxy_https_connect_ws_and_wss(void) {
    echo_ws_and_wss("FERROWS_TEST_HTTPS_PROXY");
}

void test_proxy_socks5_with_credentials_ws_and_wss(void) {
    echo_ws_and_wss("FERROWS_TEST_SOCKS_PROXY");
}

void test_proxy_refusals_are_proxy_errors(void) {
    echo_server *server = NULL;
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char http[256], socks[256], proxy[300], url[64], message[256];
    CHECK(proxy_url("FERROWS_TEST_HTTP_PROXY", http, sizeof http));
    CHECK(proxy_url("FERROWS_TEST_SOCKS_PROXY", socks, sizeof socks));
    server = echo_start(NULL);
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    /* HTTP without credentials: 407, reported as a proxy error naming the status. */
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", url_port(http));
    CHECK_OK(ferrows_config_set_proxy(config, proxy));
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_PROXY);
    CHECK(conn == NULL);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "HTTP 407") != NULL, "last error: %s", message);
    /* SOCKS5 with a wrong password. */
    snprintf(proxy, sizeof proxy, "socks5h://alice:wrong@127.0.0.1:%u", url_port(socks));
    CHECK_OK(ferrows_config_set_proxy(config, proxy));
    CHECK_RC(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn),
             FERROWS_ERR_PROXY);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "rejected the user name") != NULL, "last error: %s", message);
done:
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}

void test_proxy_that_never_answers_hits_the_open_timeout(void) {
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    char proxy[64];
    uint16_t port = 0;
    int64_t start;
    int silent = raw_listen(&port);
    CHECK(silent >= 0);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(ferrows_config_set_timeouts_ms(config, 300, 1000));
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%u", (unsigned)port);
    CHECK_OK(ferrows_config_set_proxy(config, proxy));
    start = now_ms();
    CHECK_RC(ferrows_connect_blocking(config, "ws://127.0.0.1:1/", -1, NULL, &conn),
             FERROWS_TIMEOUT);
    CHECK_BETWEEN(now_ms() - start, 250, 3000 * time_scale());
    CHECK(conn == NULL);
done:
    ferrows_config_free(config);
    if (silent >= 0)
        close(silent);
}

void test_proxy_from_environment_only_when_asked(void) {
    echo_server *server = NULL;
    ferrows_config *config = NULL;
    char http[256], url[64], silent_url[64];
    uint16_t port = 0;
    int silent = -1;
    CHECK(proxy_url("FERROWS_TEST_HTTP_PROXY", http, sizeof http));
    server = echo_start(NULL);
    CHECK(server);
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_config_new(&config));
    CHECK_OK(setenv("ws_proxy", http, 1) == 0 ? FERROWS_OK : FERROWS_ERR_IO);
    /* Off unless asked: the environment is not read. */
    CHECK(echo_through(config, url, echo_port(server)));
    CHECK_OK(ferrows_config_set_proxy_from_environment(config, true));
    CHECK(echo_through(config, url, url_port(http)));
    /* no_proxy exempts the server, even with ws_proxy naming a proxy that never answers. */
    silent = raw_listen(&port);
    CHECK(silent >= 0);
    snprintf(silent_url, sizeof silent_url, "http://127.0.0.1:%u", (unsigned)port);
    CHECK_OK(setenv("ws_proxy", silent_url, 1) == 0 ? FERROWS_OK : FERROWS_ERR_IO);
    CHECK_OK(setenv("no_proxy", "localhost,127.0.0.1", 1) == 0 ? FERROWS_OK : FERROWS_ERR_IO);
    CHECK(echo_through(config, url, echo_port(server)));
    /* Turned off again: direct. */
    CHECK_OK(unsetenv("no_proxy") == 0 ? FERROWS_OK : FERROWS_ERR_IO);
    CHECK_OK(ferrows_config_set_proxy_from_environment(config, false));
    CHECK(echo_through(config, url, echo_port(server)));
done:
    unsetenv("ws_proxy");
    unsetenv("no_proxy");
    ferrows_config_free(config);
    echo_stop(server);
    if (silent >= 0)
        close(silent);
}

void test_proxy_invalid_urls(void) {
    ferrows_config *config = NULL;
    char message[256];
    CHECK_OK(ferrows_config_new(&config));
    CHECK_RC(ferrows_config_set_proxy(config, "ftp://127.0.0.1:21"), FERROWS_ERR_INVALID_ARG);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "isn't supported") != NULL, "last error: %s", message);
    CHECK_RC(ferrows_config_set_proxy(config, "http://user:secret@127.0.0.1/path"),
             FERROWS_ERR_INVALID_ARG);
    h_last_error(message, sizeof message);
    CHECKF(strstr(message, "secret") == NULL, "the password leaked: %s", message);
    CHECK_RC(ferrows_config_set_proxy(NULL, "http://127.0.0.1"), FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_config_set_proxy_from_environment(NULL, true), FERROWS_ERR_NULL_PARAM);
done:
    ferrows_config_free(config);
}
