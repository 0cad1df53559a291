/* The C test suite of libferrows: the runner, and the version and runtime tests.
 *
 *   usage: test_ferrows [NAME...]     (no names: every test, in order)
 *
 * Prints "ok NAME" or "FAIL NAME: reason" per test, then "N passed, M failed"; exits 1 if
 * any failed. Each test runs under an alarm (FERROWS_TEST_ALARM seconds, default 60 times
 * FERROWS_TEST_TIME_SCALE): a hang prints a FAIL line and exits.
 *
 * SIGPIPE keeps its default action on purpose: a C program must not have to ignore it to
 * use libferrows, so a write to a closed socket inside the library would kill the suite. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_LIST(X)                                                                       \
    /* first, while the runtime does not exist yet */                                     \
    X(runtime_threads_settable_only_before_first_use)                                    \
    /* version */                                                                          \
    X(version_string_matches_header_macros)                                              \
    X(abi_version_matches_header)                                                        \
    X(result_str_is_never_null)                                                          \
    /* connections (test_conn.c) */                                                        \
    X(connect_send_recv_text_and_binary)                                                 \
    X(empty_messages)                                                                    \
    X(one_mib_message)                                                                   \
    X(close_code_and_reason_seen_by_both_sides)                                          \
    X(closed_event_once_then_closed)                                                     \
    X(close_twice_is_fine)                                                               \
    X(close_with_1005_sends_no_status)                                                   \
    X(send_after_close_returns_closed)                                                   \
    X(recv_timeout_zero_returns_again_at_once)                                           \
    X(recv_timeout_100_returns_timeout)                                                  \
    X(recv_timeout_forever_returns_when_data_arrives)                                    \
    X(recv_negative_timeout_is_invalid)                                                  \
    X(two_receivers_are_refused)                                                         \
    X(ping_measures_latency)                                                             \
    X(conn_queries)                                                                      \
    X(connect_blocking_timeouts)                                                         \
    /* queues (test_queue.c) */                                                            \
    X(queue_next_timeout_modes)                                                          \
    X(queue_next_forever_returns_when_data_arrives)                                      \
    X(queue_connect_open_event_and_fd_level)                                             \
    X(queue_fd_cleared_after_wakeup_is_consumed)                                         \
    X(queue_connect_refused_gives_error_event)                                           \
    X(queue_attach_blocking_conn)                                                        \
    X(queue_server_accept_events)                                                        \
    X(queue_wakeup_from_another_thread)                                                  \
    X(callback_receives_events_on_another_thread)                                        \
    X(callback_blocking_calls_would_deadlock)                                            \
    X(callback_drop_runs_once_on_replace_and_free)                                       \
    X(callback_removed_events_go_to_queue_next)                                          \
    X(callback_can_replace_itself)                                                       \
    X(callback_drop_waits_for_a_call_under_way)                                          \
    X(server_free_refuses_pending_handshakes)                                            \
    X(conn_free_drops_its_queued_events)                                                 \
    X(conn_free_racing_the_handshake_closes_the_connection)                              \
    X(queue_replies_wait_while_events_wait)                                              \
    X(callback_replies_to_a_batch_all_arrive)                                            \
    X(callback_may_free_the_connection_it_reads)                                         \
    /* boundary (test_boundary.c) */                                                       \
    X(null_arguments_are_refused)                                                        \
    X(free_null_is_a_no_op)                                                              \
    X(invalid_message_type)                                                              \
    X(text_must_be_utf8)                                                                 \
    X(invalid_close_codes)                                                               \
    X(invalid_config_values)                                                             \
    X(invalid_headers)                                                                   \
    X(invalid_urls)                                                                      \
    X(last_error_message_and_short_buffers)                                              \
    X(last_error_is_per_thread)                                                          \
    X(every_status_sets_the_last_error)                                                  \
    /* misbehaving peers, servers, TLS (test_peers.c) */                                   \
    X(backpressure_with_a_peer_that_never_reads)                                         \
    X(peer_invalid_utf8_closes_1007)                                                     \
    X(peer_message_too_big_closes_1009)                                                  \
    X(peer_fragmented_message_too_big_closes_1009)                                       \
    X(peer_frame_too_big_closes_1009)                                                    \
    X(peer_too_many_fragments_closes_1009)                                               \
    X(recv_timeout_mid_message_keeps_the_part)                                           \
    X(peer_unmasked_frame_closes_1002)                                                   \
    X(keepalive_closes_with_1011_without_pong)                                           \
    X(server_port_and_plain_http_gets_4xx)                                               \
    X(server_shutdown_closes_clients_with_1001)                                          \
    X(server_max_connections_503)                                                        \
    X(server_origin_and_subprotocol)                                                     \
    X(request_and_response_headers_stay_on_their_side)                                   \
    X(tls_with_custom_ca)                                                                \
    X(tls_without_ca_fails)                                                              \
    /* proxies (test_proxy.c) */                                                           \
    X(proxy_http_connect_ws_and_wss)                                                     \
    X(proxy_https_connect_ws_and_wss)                                                    \
    X(proxy_socks5_with_credentials_ws_and_wss)                                          \
    X(proxy_refusals_are_proxy_errors)                                                   \
    X(proxy_that_never_answers_hits_the_open_timeout)                                    \
    X(proxy_from_environment_only_when_asked)                                            \
    X(proxy_invalid_urls)                                                                \
    /* reconnection (test_reconnect.c) */                                                  \
    X(reconnect_keeps_one_handle_across_a_server_restart)                                \
    X(reconnect_retries_after_503_not_after_403)                                         \
    X(connect_retrying_returns_the_next_connected_handle)                                \
    X(reconnect_policy_is_checked)                                                       \
    /* permessage-deflate (test_deflate.c) */                                              \
    X(deflate_defaults_agree_and_messages_flow)                                          \
    X(deflate_configured_and_turned_off)                                                 \
    X(deflate_setters_check_their_values)                                                \
    /* broadcast (test_broadcast.c) */                                                     \
    X(broadcast_every_client_receives_the_exact_message)                                 \
    X(broadcast_skips_then_closes_a_client_that_never_reads)                             \
    X(broadcast_checks_its_arguments)                                                    \
    /* server metrics (test_metrics.c) */                                                  \
    X(server_metrics_count_a_known_workload)

#define DECLARE(name) void test_##name(void);
TEST_LIST(DECLARE)

static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
#define ENTRY(name) {#name, test_##name},
    TEST_LIST(ENTRY)
};

static int tests_before;

/* ---- runtime and version ---------------------------------------------------------------- */

void test_runtime_threads_settable_only_before_first_use(void) {
    echo_server *server = NULL;
    /* The runtime starts with the first connection or server; until then the count may be
     * set (unless a test before this one already started it). */
    int32_t rc = ferrows_set_runtime_threads(2);
    if (tests_before == 0)
        CHECK_RC(rc, FERROWS_OK);
    else
        CHECK(rc == FERROWS_OK || rc == FERROWS_ERR_STATE);
    server = echo_start(NULL);
    CHECK(server);
    CHECK_RC(ferrows_set_runtime_threads(2), FERROWS_ERR_STATE);
    CHECK_RC(ferrows_set_runtime_threads(0), FERROWS_ERR_STATE);
done:
    echo_stop(server);
}

void test_version_string_matches_header_macros(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", FERROWS_VERSION_MAJOR,
             FERROWS_VERSION_MINOR, FERROWS_VERSION_PATCH);
    const char *version = ferrows_version();
    CHECK(version != NULL);
    CHECKF(strcmp(version, expected) == 0, "ferrows_version() is \"%s\", expected \"%s\"",
           version, expected);
    CHECK_EQ(FERROWS_VERSION_NUMBER, FERROWS_VERSION_MAJOR * 1000000 +
                                         FERROWS_VERSION_MINOR * 1000 + FERROWS_VERSION_PATCH);
    /* Static: the same pointer every time. */
    CHECK(ferrows_version() == version);
done:;
}

void test_abi_version_matches_header(void) {
    CHECK_EQ(ferrows_abi_version(), FERROWS_ABI_VERSION);
done:;
}

void test_result_str_is_never_null(void) {
    static const int32_t codes[] = {
        FERROWS_OK,          FERROWS_AGAIN,          FERROWS_TIMEOUT,
        FERROWS_CLOSED,      FERROWS_ERR_NULL_PARAM, FERROWS_ERR_INVALID_ARG,
        FERROWS_ERR_PANIC,   FERROWS_ERR_IO,         FERROWS_ERR_TLS,
        FERROWS_ERR_HANDSHAKE, FERROWS_ERR_PROTOCOL, FERROWS_ERR_MESSAGE_TOO_BIG,
        FERROWS_ERR_WOULD_DEADLOCK, FERROWS_ERR_CONCURRENCY, FERROWS_ERR_INVALID_URI,
        FERROWS_ERR_BUFFER_TOO_SMALL, FERROWS_ERR_STATE, FERROWS_ERR_TLS_UNTRUSTED,
        FERROWS_ERR_PROXY,
    };
    const char *unknown = ferrows_result_str(12345);
    CHECK(unknown != NULL);
    CHECKF(strcmp(unknown, "unknown result") == 0, "unknown code: \"%s\"", unknown);
    CHECK(ferrows_result_str(-14) != NULL);
    CHECK(ferrows_result_str(INT32_MIN) != NULL);
    CHECK(ferrows_result_str(INT32_MAX) != NULL);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *text = ferrows_result_str(codes[i]);
        CHECKF(text != NULL, "ferrows_result_str(%d) is NULL", (int)codes[i]);
        CHECKF(text[0] != '\0', "ferrows_result_str(%d) is empty", (int)codes[i]);
        /* Every known code has its own description. */
        CHECKF(strcmp(text, unknown) != 0, "ferrows_result_str(%d) is \"%s\"", (int)codes[i],
               text);
        for (size_t j = 0; j < i; j++)
            CHECKF(strcmp(text, ferrows_result_str(codes[j])) != 0,
                   "codes %d and %d share the description \"%s\"", (int)codes[i],
                   (int)codes[j], text);
    }
done:;
}

/* ---- the runner ------------------------------------------------------------------------- */

static char alarm_message[512];
static size_t alarm_message_len;

static void on_alarm(int signal_number) {
    (void)signal_number;
    /* Only async-signal-safe calls here. */
    if (write(STDOUT_FILENO, alarm_message, alarm_message_len) < 0) {
    }
    _exit(2);
}

static bool selected(const char *name, int argc, char **argv) {
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    srand((unsigned)getpid());
    const char *alarm_text = getenv("FERROWS_TEST_ALARM");
    unsigned alarm_seconds =
        alarm_text && atoi(alarm_text) > 0 ? (unsigned)atoi(alarm_text) : 60u * (unsigned)time_scale();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    sigemptyset(&action.sa_mask);
    sigaction(SIGALRM, &action, NULL);

    size_t count = sizeof tests / sizeof tests[0];
    for (int i = 1; i < argc; i++) {
        bool known = false;
        for (size_t t = 0; t < count; t++)
            known = known || strcmp(argv[i], tests[t].name) == 0;
        if (!known) {
            fprintf(stderr, "no test named %s\n", argv[i]);
            return 2;
        }
    }

    int passed = 0, failed = 0;
    for (size_t t = 0; t < count; t++) {
        if (!selected(tests[t].name, argc, argv))
            continue;
        int n = snprintf(alarm_message, sizeof alarm_message,
                         "FAIL %s: hung: still running after %u s (alarm)\n%d passed, %d failed\n",
                         tests[t].name, alarm_seconds, passed, failed + 1);
        alarm_message_len = n > 0 ? (size_t)n : 0;
        h_begin_test();
        alarm(alarm_seconds);
        tests[t].run();
        alarm(0);
        tests_before++;
        if (h_failed()) {
            printf("FAIL %s: %s\n", tests[t].name, h_failure());
            failed++;
        } else {
            printf("ok %s\n", tests[t].name);
            passed++;
        }
        if (h_poisoned()) {
            printf("(stopping: a thread of %s is still running)\n", tests[t].name);
            break;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0 || h_poisoned() ? 1 : 0;
}
