/*
 * What every C test program here shares: checks printed as "ok N - what" (and
 * a tally), free ports, a monotonic clock and pauses. Included once per test
 * program (everything here is static).
 */
#ifndef FLOYD_TEST_UTIL_H
#define FLOYD_TEST_UTIL_H

#define _POSIX_C_SOURCE 200809L
#include "floyd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, what)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
            printf("ok %d - %s\n", passed + failed, what);                                 \
        } else {                                                                           \
            failed++;                                                                      \
            printf("not ok %d - %s (%s:%d: %s)\n", passed + failed, what, __FILE__, __LINE__, #cond); \
        }                                                                                  \
        fflush(stdout);                                                                    \
    } while (0)

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(2);
    }
    close(s);
    return ntohs(a.sin_port);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pause_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

#endif
