/* The floor of the C clients: the same echoes over bare TCP, no WebSocket (see bench.h). */
#include "bench.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const unsigned char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written <= 0) return -1;
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct bench_args args;
    struct sockaddr_in address;
    struct bench_meter meter;
    unsigned char *payload, *incoming;
    size_t received = 0, incoming_size;
    long outstanding;
    int fd, one = 1;
    if (bench_client_args(argc, argv, &args) != 0) return 2;
    incoming_size = args.size < 256 * 1024 ? args.size : 256 * 1024;
    payload = bench_payload(args.size, 0);
    incoming = malloc(incoming_size);
    if (payload == NULL || incoming == NULL) return 1;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)args.port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("tcp_client: connect");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    meter = bench_meter(args.warmup, args.seconds);
    for (outstanding = 0; outstanding < args.inflight; outstanding++) {
        if (write_all(fd, payload, args.size) != 0) return 1;
    }
    while (outstanding > 0) {
        ssize_t got = read(fd, incoming, incoming_size);
        if (got <= 0) {
            fprintf(stderr, "tcp_client: the server closed the connection\n");
            return 1;
        }
        for (received += (size_t)got; received >= args.size; received -= args.size) {
            outstanding--;
            if (bench_echoed(&meter)) {
                if (write_all(fd, payload, args.size) != 0) return 1;
                outstanding++;
            }
        }
    }
    close(fd);
    free(payload);
    free(incoming);
    return bench_report(&meter);
}
