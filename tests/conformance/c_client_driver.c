/* Client driver on the ferrows C ABI, for the Autobahn fuzzingserver.
 *
 *   usage: c_client_driver URL AGENT
 *
 * Asks /getCaseCount, runs every case (/runCase?case=N&agent=AGENT: echoes each message
 * back with its type until the connection is CLOSED), then /updateReports?agent=AGENT.
 * Limits are raised and keepalive is off, as for the echo server. */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPEN_MS 30000
#define REPORTS_MS 60000

static void report(const char *what, ferrows_result result) {
    char message[1024] = "";
    size_t length = 0;
    if (ferrows_last_error_message(message, sizeof message, &length) != FERROWS_OK) {
        snprintf(message, sizeof message, "(%zu-byte message)", length);
    }
    fprintf(stderr, "c_client_driver: %s: %s (%s)\n", what, ferrows_result_str(result), message);
}

static ferrows_conn *open_url(const ferrows_config *config, const char *url) {
    ferrows_conn *conn = NULL;
    ferrows_result result = ferrows_connect_blocking(config, url, OPEN_MS, NULL, &conn);
    if (result != FERROWS_OK) {
        fprintf(stderr, "%s: ", url);
        report("ferrows_connect_blocking", result);
        return NULL;
    }
    return conn;
}

/* Echoes every message until the connection ends; how it ends is the suite's to judge. */
static void run_case(const ferrows_config *config, const char *url) {
    ferrows_conn *conn = open_url(config, url);
    if (conn == NULL) {
        return;
    }
    for (;;) {
        ferrows_event *event = NULL;
        ferrows_result result = ferrows_conn_recv(conn, -1, &event);
        uint32_t type;
        if (result != FERROWS_OK) {
            report("ferrows_conn_recv", result);
            break;
        }
        type = ferrows_event_type(event);
        if (type == FERROWS_EVENT_CLOSED) {
            ferrows_event_free(event);
            break;
        }
        if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
            size_t length = 0;
            const uint8_t *data = ferrows_event_data(event, &length);
            result = ferrows_conn_send(conn,
                                       type == FERROWS_EVENT_TEXT ? FERROWS_MESSAGE_TEXT
                                                                  : FERROWS_MESSAGE_BINARY,
                                       data, length, -1);
            if (result != FERROWS_OK && result != FERROWS_CLOSED) {
                report("ferrows_conn_send", result);
            }
        }
        ferrows_event_free(event);
    }
    ferrows_conn_free(conn);
}

int main(int argc, char **argv) {
    ferrows_config *config = NULL;
    ferrows_conn *conn;
    ferrows_event *event = NULL;
    ferrows_result result;
    const char *base, *agent;
    char *url;
    size_t url_size;
    long count, i;

    if (argc != 3) {
        fprintf(stderr, "usage: %s URL AGENT\n", argv[0]);
        return 2;
    }
    base = argv[1];
    agent = argv[2];
    url_size = strlen(base) + strlen(agent) + 64;
    url = malloc(url_size);
    if (url == NULL) {
        return 1;
    }
    result = ferrows_config_new(&config);
    if (result != FERROWS_OK || ferrows_config_set_max_message_size(config, 0) != FERROWS_OK ||
        ferrows_config_set_keepalive_ms(config, 0, 0) != FERROWS_OK ||
        ferrows_config_set_timeouts_ms(config, OPEN_MS, 10000) != FERROWS_OK) {
        report("configuring", result);
        return 1;
    }

    snprintf(url, url_size, "%s/getCaseCount", base);
    conn = open_url(config, url);
    if (conn == NULL) {
        return 1;
    }
    result = ferrows_conn_recv(conn, OPEN_MS, &event);
    if (result != FERROWS_OK || ferrows_event_type(event) != FERROWS_EVENT_TEXT) {
        report("reading the case count", result);
        return 1;
    }
    {
        size_t length = 0;
        const uint8_t *data = ferrows_event_data(event, &length);
        char digits[32] = "";
        memcpy(digits, data, length < sizeof digits - 1 ? length : sizeof digits - 1);
        count = strtol(digits, NULL, 10);
    }
    ferrows_event_free(event);
    ferrows_conn_free(conn);

    for (i = 1; i <= count; i++) {
        snprintf(url, url_size, "%s/runCase?case=%ld&agent=%s", base, i, agent);
        run_case(config, url);
    }

    snprintf(url, url_size, "%s/updateReports?agent=%s", base, agent);
    conn = open_url(config, url);
    if (conn == NULL) {
        return 1;
    }
    result = ferrows_conn_wait_closed(conn, REPORTS_MS);
    if (result != FERROWS_OK) {
        report("waiting for the reports", result);
    }
    ferrows_conn_free(conn);
    ferrows_config_free(config);
    free(url);
    printf("ran %ld cases\n", count);
    return result == FERROWS_OK ? 0 : 1;
}
