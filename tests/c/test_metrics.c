/* ferrows_server_metrics: the exact counts a known workload leaves on a server, a smaller
 * (older) struct filled only as far as it goes, and the argument checks. */
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MESSAGES 3
#define MESSAGE_SIZE 10

/* The first fields of the struct, as a program built against an older header has it. */
typedef struct {
    size_t struct_size;
    uint64_t connections_open;
    uint64_t handshakes_accepted;
} metrics_v0;

void test_server_metrics_count_a_known_workload(void) {
    echo_server *server = echo_start(NULL);
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_event *event = NULL;
    ferrows_metrics metrics;
    metrics_v0 older = {sizeof(metrics_v0), 99, 99};
    char url[64], head[1024];
    int fd = -1;
    static const char payload[MESSAGE_SIZE + 1] = "0123456789";
    static const char no_upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    CHECK(server);
    CHECK_OK(ferrows_config_new(&config));
    echo_url(server, false, url, sizeof url);
    CHECK_OK(ferrows_connect_blocking(config, url, long_wait_ms(), NULL, &conn));
    for (int i = 0; i < MESSAGES; i++) {
        CHECK_OK(ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)payload,
                                   MESSAGE_SIZE, long_wait_ms()));
        event = recv_event_of(conn, FERROWS_EVENT_TEXT, long_wait_ms());
        CHECK(event);
        CHECK(event_data_is(event, payload, MESSAGE_SIZE));
        ferrows_event_free(event);
        event = NULL;
    }
    /* A request that is no upgrade: refused as a bad request (426). */
    fd = raw_connect(echo_port(server));
    CHECK(fd >= 0);
    CHECK(raw_send_all(fd, no_upgrade, strlen(no_upgrade)));
    CHECK(raw_read_head(fd, head, sizeof head));
    CHECKF(strncmp(head, "HTTP/1.1 426", 12) == 0, "unexpected answer: %s", head);
    CHECK_OK(ferrows_conn_close(conn, 1000, "bye"));
    CHECK_OK(ferrows_conn_wait_closed(conn, long_wait_ms()));
    CHECK(echo_wait_closed(server, 1, long_wait_ms(), NULL, NULL, 0, NULL, NULL, 0));

    memset(&metrics, 0xff, sizeof metrics);
    metrics.struct_size = sizeof metrics;
    CHECK_OK(ferrows_server_metrics(echo_ferrows_server(server), &metrics));
    CHECK_EQ(metrics.struct_size, sizeof metrics);
    CHECK_EQ(metrics.connections_open, 0);
    CHECK_EQ(metrics.handshakes_accepted, 1);
    CHECK_EQ(metrics.refused_bad_request, 1);
    CHECK_EQ(metrics.refused_origin + metrics.refused_subprotocol + metrics.refused_limit +
                 metrics.refused_tls,
             0);
    CHECK_EQ(metrics.messages_in, MESSAGES);
    CHECK_EQ(metrics.messages_out, MESSAGES);
    CHECK_EQ(metrics.bytes_in, MESSAGES * MESSAGE_SIZE);
    CHECK_EQ(metrics.bytes_out, MESSAGES * MESSAGE_SIZE);
    CHECK_EQ(metrics.close_codes[0], 1); /* 1000 */
    for (size_t i = 1; i < FERROWS_METRICS_CLOSE_CODES; i++)
        CHECK_EQ(metrics.close_codes[i], 0);
    for (size_t i = 0; i < FERROWS_METRICS_PING_BUCKETS; i++)
        CHECK_EQ(metrics.ping_latency_buckets[i], 0);
    CHECK_EQ(metrics.ping_latency_sum_us, 0);
    CHECK_EQ(metrics.broadcast_skips, 0);
    CHECK_EQ(metrics.read_pauses + metrics.write_pauses, 0);

    /* An older, smaller struct gets the fields it has, and nothing past them. */
    CHECK_OK(ferrows_server_metrics(echo_ferrows_server(server), (ferrows_metrics *)&older));
    CHECK_EQ(older.struct_size, sizeof older);
    CHECK_EQ(older.connections_open, 0);
    CHECK_EQ(older.handshakes_accepted, 1);

    metrics.struct_size = 0;
    CHECK_RC(ferrows_server_metrics(echo_ferrows_server(server), &metrics),
             FERROWS_ERR_INVALID_ARG);
    CHECK_RC(ferrows_server_metrics(NULL, &metrics), FERROWS_ERR_NULL_PARAM);
    CHECK_RC(ferrows_server_metrics(echo_ferrows_server(server), NULL), FERROWS_ERR_NULL_PARAM);
done:
    if (fd >= 0)
        close(fd);
    ferrows_event_free(event);
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    echo_stop(server);
}
