/* echo_client: connects to a WebSocket server, sends each argument as a text message,
 * prints each echo on its own line, then closes the connection.
 *
 *   usage: echo_client URL [MESSAGE...]
 *          FERROWS_CA_FILE=ca.pem echo_client wss://host:port/ hello   (trust that CA too)
 *
 * It uses the blocking calls: ferrows_connect_blocking, then ferrows_conn_send and
 * ferrows_conn_recv on this thread. The exit status is 0 when every echo came back and the
 * closing handshake was clean, 1 on any error, 2 on bad usage. */
#define _POSIX_C_SOURCE 200809L

#include <ferrows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every wait is bounded: no server gets to hang this client. */
#define WAIT_MS 10000

/* Prints what failed: the result's description, then this thread's last error message. */
static void report(const char *what, ferrows_result result) {
    size_t length = 0;
    char *message = NULL;
    /* A NULL buffer gets FERROWS_ERR_BUFFER_TOO_SMALL and the length: size it exactly. */
    ferrows_last_error_message(NULL, 0, &length);
    message = malloc(length + 1);
    if (message == NULL || ferrows_last_error_message(message, length + 1, NULL) != FERROWS_OK) {
        free(message);
        message = NULL;
    }
    fprintf(stderr, "echo_client: %s: %s (%s)\n", what, ferrows_result_str(result),
            message != NULL && message[0] != '\0' ? message : "no details");
    free(message);
}

/* Reads a whole file (a PEM bundle); NULL on failure, with errno's story on stderr. */
static unsigned char *read_file(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    unsigned char *data = NULL;
    long end;
    if (file == NULL) {
        perror(path);
        return NULL;
    }
    if (fseek(file, 0, SEEK_END) == 0 && (end = ftell(file)) >= 0 && fseek(file, 0, SEEK_SET) == 0) {
        data = malloc((size_t)end + 1);
        if (data != NULL && fread(data, 1, (size_t)end, file) == (size_t)end) {
            *size = (size_t)end;
        } else {
            free(data);
            data = NULL;
        }
    }
    if (data == NULL) {
        perror(path);
    }
    fclose(file);
    return data;
}

static ferrows_result configure(ferrows_config *config) {
    const char *ca_file = getenv("FERROWS_CA_FILE");
    ferrows_result result = FERROWS_OK;
    if (ca_file != NULL && ca_file[0] != '\0') {
        size_t size = 0;
        unsigned char *pem = read_file(ca_file, &size);
        if (pem == NULL) {
            return FERROWS_ERR_INVALID_ARG;
        }
        result = ferrows_config_tls_add_ca_pem(config, pem, size);
        free(pem);
        if (result != FERROWS_OK) {
            report("ferrows_config_tls_add_ca_pem", result);
        }
    }
    return result;
}

/* Waits for the echo of one message and prints it; 0 on success. */
static int print_echo(ferrows_conn *conn) {
    ferrows_event *event = NULL;
    ferrows_result result = ferrows_conn_recv(conn, WAIT_MS, &event);
    uint32_t type;
    if (result != FERROWS_OK) {
        report("ferrows_conn_recv", result);
        return 1;
    }
    type = ferrows_event_type(event);
    if (type == FERROWS_EVENT_TEXT || type == FERROWS_EVENT_BINARY) {
        size_t length = 0;
        const uint8_t *data = ferrows_event_data(event, &length);
        fwrite(data, 1, length, stdout);
        fputc('\n', stdout);
        ferrows_event_free(event);
        return 0;
    }
    /* FERROWS_EVENT_CLOSED: the server closed before echoing. */
    {
        char reason[128] = "";
        ferrows_event_message(event, reason, sizeof reason, NULL);
        fprintf(stderr, "echo_client: closed before the echo: code %u, %s (%s)\n",
                (unsigned)ferrows_event_close_code(event),
                ferrows_result_str(ferrows_event_result(event)), reason);
    }
    ferrows_event_free(event);
    return 1;
}

/* Closes with 1000 and waits for the server's close; 0 when the close was clean. */
static int close_cleanly(ferrows_conn *conn) {
    ferrows_result result = ferrows_conn_close(conn, 1000, "bye");
    if (result != FERROWS_OK) {
        report("ferrows_conn_close", result);
        return 1;
    }
    for (;;) {
        ferrows_event *event = NULL;
        uint16_t code;
        int32_t why;
        result = ferrows_conn_recv(conn, WAIT_MS, &event);
        if (result != FERROWS_OK) {
            report("ferrows_conn_recv (closing)", result);
            return 1;
        }
        if (ferrows_event_type(event) != FERROWS_EVENT_CLOSED) {
            ferrows_event_free(event); /* a message that crossed our close */
            continue;
        }
        code = ferrows_event_close_code(event);
        why = ferrows_event_result(event);
        ferrows_event_free(event);
        fprintf(stderr, "echo_client: closed with code %u (%s)\n", (unsigned)code,
                ferrows_result_str(why));
        return code == 1000 && why == FERROWS_OK ? 0 : 1;
    }
}

int main(int argc, char **argv) {
    ferrows_config *config = NULL;
    ferrows_conn *conn = NULL;
    ferrows_result result;
    int status = 1;
    int i;

    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [MESSAGE...]\n", argv[0]);
        return 2;
    }
    result = ferrows_config_new(&config);
    if (result != FERROWS_OK) {
        report("ferrows_config_new", result);
        return 1;
    }
    if (configure(config) != FERROWS_OK) {
        goto done;
    }
    /* -1: wait as long as the config's open timeout (10 s by default) allows. */
    result = ferrows_connect_blocking(config, argv[1], -1, NULL, &conn);
    if (result != FERROWS_OK) {
        report("ferrows_connect_blocking", result);
        goto done;
    }
    for (i = 2; i < argc; i++) {
        result = ferrows_conn_send(conn, FERROWS_MESSAGE_TEXT, (const uint8_t *)argv[i],
                                   strlen(argv[i]), WAIT_MS);
        if (result != FERROWS_OK) {
            report("ferrows_conn_send", result);
            goto done;
        }
        if (print_echo(conn) != 0) {
            goto done;
        }
    }
    fflush(stdout);
    status = close_cleanly(conn);

done:
    ferrows_conn_free(conn); /* NULL is a no-op; an open connection would close with 1001 */
    ferrows_config_free(config);
    return status;
}
