/* What the benchmark suite's C programs share: the arguments, the clocks, the meter (the
 * rules of bench/clients.py's Meter) and the JSON line a client prints.
 *
 * Clients:  PROGRAM PORT SIZE INFLIGHT WARMUP SECONDS   (the server is on 127.0.0.1)
 *   keep INFLIGHT echoes of SIZE bytes outstanding; the first echo starts the warm-up, the
 *   first after it the measured window, the first after SECONDS ends it; then they drain
 *   what is in flight and print {"count": N, "seconds": S, "cpu_s": C}, C being the
 *   process's CPU time (all threads) in the window.
 * Servers:  PROGRAM PORT   print "ready" once listening, then echo until killed. */
#ifndef BENCH_H
#define BENCH_H

#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct bench_args {
    int port;
    size_t size;
    long inflight;
    double warmup;
    double seconds;
};

static inline int bench_client_args(int argc, char **argv, struct bench_args *args) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT SIZE INFLIGHT WARMUP SECONDS\n", argv[0]);
        return -1;
    }
    args->port = atoi(argv[1]);
    args->size = (size_t)atol(argv[2]);
    args->inflight = atol(argv[3]);
    args->warmup = atof(argv[4]);
    args->seconds = atof(argv[5]);
    if (args->port <= 0 || args->size == 0 || args->inflight <= 0 || args->seconds <= 0) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return -1;
    }
    return 0;
}

static inline int bench_server_port(int argc, char **argv) {
    if (argc != 2 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return -1;
    }
    return atoi(argv[1]);
}

/* A payload of `size` bytes, or NULL. */
static inline unsigned char *bench_payload(size_t size, size_t headroom) {
    unsigned char *payload = malloc(headroom + size);
    if (payload != NULL) memset(payload + headroom, 'x', size);
    return payload;
}

static inline double bench_clock(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct bench_meter {
    double warmup, seconds;
    double warm_until, started, started_cpu;
    long count, started_count;
    int phase; /* 0 before the first echo, 1 warming up, 2 measuring, 3 done */
    long result_count;
    double result_seconds, result_cpu;
};

static inline struct bench_meter bench_meter(double warmup, double seconds) {
    struct bench_meter meter;
    memset(&meter, 0, sizeof meter);
    meter.warmup = warmup;
    meter.seconds = seconds;
    return meter;
}

/* Counts one echo; returns whether to send another. */
static inline int bench_echoed(struct bench_meter *meter) {
    double now = bench_clock(CLOCK_MONOTONIC);
    meter->count++;
    switch (meter->phase) {
    case 0:
        meter->warm_until = now + meter->warmup;
        meter->phase = 1;
        return 1;
    case 1:
        if (now >= meter->warm_until) {
            meter->started = now;
            meter->started_cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
            meter->started_count = meter->count;
            meter->phase = 2;
        }
        return 1;
    case 2:
        if (now - meter->started < meter->seconds) return 1;
        meter->result_count = meter->count - meter->started_count;
        meter->result_seconds = now - meter->started;
        meter->result_cpu = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - meter->started_cpu;
        meter->phase = 3;
        return 0;
    default:
        return 0;
    }
}

/* Prints the result line; fails if the window never closed. */
static inline int bench_report(const struct bench_meter *meter) {
    if (meter->phase != 3) {
        fprintf(stderr, "the measured window did not complete (%ld echoes)\n", meter->count);
        return 1;
    }
    printf("{\"count\": %ld, \"seconds\": %.6f, \"cpu_s\": %.6f}\n", meter->result_count,
           meter->result_seconds, meter->result_cpu);
    fflush(stdout);
    return 0;
}

/* 10,000 connections need more descriptors than the usual soft limit: take the hard one. */
static inline void bench_raise_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

static inline void bench_ready(void) {
    printf("ready\n");
    fflush(stdout);
}

#endif
