/*
 * A 3-node cluster in one process for the C tests of the coordination calls
 * (test_coordination.c, test_leases.c): checks printed as "ok N - what",
 * free ports, waits with deadlines, retries of what was certainly not applied.
 * Included once per test program (everything here is static).
 */
#ifndef FLOYD_TEST_CLUSTER_H
#define FLOYD_TEST_CLUSTER_H

#include "test_util.h"

#define NODES 3
static floyd_t *nodes[NODES];
static int ports[NODES];
static char members[256];
static char dir[] = "/tmp/floyd-c-test-XXXXXX";

/* Runs `call` into `rc` again while it answers NO_LEADER or BUSY (certainly not
 * applied: leadership moving, or a member's protocol not known yet right after
 * an election), for at most 30 s. */
#define RETRY(rc, call)                                                   \
    do {                                                                  \
        double deadline_ = now_s() + 30;                                  \
        for (;;) {                                                        \
            (rc) = (call);                                                \
            if (((rc) != FLOYD_NO_LEADER && (rc) != FLOYD_BUSY) || now_s() >= deadline_) break; \
            pause_ms(20);                                                 \
        }                                                                 \
    } while (0)

/* Index of the node all others agree leads, or -1 after the deadline. */
static int wait_for_leader(void) {
    double deadline = now_s() + 30;
    while (now_s() < deadline) {
        for (int i = 0; i < NODES; i++) {
            if (!floyd_is_leader(nodes[i])) continue;
            int agreed = 1;
            for (int j = 0; j < NODES; j++) agreed &= floyd_has_leader(nodes[j]);
            if (agreed) return i;
        }
        pause_ms(10);
    }
    return -1;
}

/* Opens NODES nodes in a fresh directory (a check per node); whether all opened. */
static int open_cluster(const char *cluster_id) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    size_t used = 0;
    for (int i = 0; i < NODES; i++) {
        ports[i] = free_port();
        used += (size_t)snprintf(members + used, sizeof members - used, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    }
    int all = 1;
    for (int i = 0; i < NODES; i++) {
        char path[512], *msg = NULL;
        snprintf(path, sizeof path, "%s/node%d", dir, i);
        floyd_options_t *o = floyd_options_new(members, "127.0.0.1", ports[i], path);
        int rc = floyd_options_set_heartbeat_us(o, 30000) | floyd_options_set_check_leader_us(o, 300000) |
                 floyd_options_set_request_timeout_ms(o, 10000) | floyd_options_set_leader_wait_ms(o, 5000) |
                 floyd_options_set_cluster_id(o, cluster_id);
        CHECK(rc == FLOYD_OK, "options");
        rc = floyd_open(o, &nodes[i], &msg);
        CHECK(rc == FLOYD_OK && nodes[i] != NULL, "open a node");
        if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
        all &= rc == FLOYD_OK;
        floyd_free(msg);
        floyd_options_free(o);
    }
    return all;
}

/* Closes every node, removes the directory, prints the tally; the exit code. */
static int close_cluster(void) {
    for (int i = 0; i < NODES; i++) floyd_close(nodes[i]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
