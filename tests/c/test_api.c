/*
 * Every function of the C API on a 3-node cluster in one process: normal use,
 * writes through a follower, reads from every node, NOT_FOUND, and bad input.
 * Prints one line per check and "N passed, M failed" at the end.
 */
#define _POSIX_C_SOURCE 200809L
#include "floyd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, what)                                                  \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
            printf("ok   %s\n", what);                                     \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s (%s:%d: %s)\n", what, __FILE__, __LINE__, #cond); \
        }                                                                  \
    } while (0)

#define NODES 3
static floyd_t *nodes[NODES];
static int ports[NODES];
static char members[256];
static char dir[] = "/tmp/floyd-c-test-XXXXXX";
static atomic_int log_lines;

static void on_log(void *user_data, int level, const char *msg, size_t msg_len) {
    (void)user_data;
    if (level >= FLOYD_LOG_DEBUG && level <= FLOYD_LOG_FATAL && msg[msg_len] == '\0') {
        atomic_fetch_add(&log_lines, 1);
    }
}

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

static floyd_options_t *options_for(int i) {
    char path[512];
    snprintf(path, sizeof path, "%s/node%d", dir, i);
    floyd_options_t *o = floyd_options_new(members, "127.0.0.1", ports[i], path);
    int rc = floyd_options_set_heartbeat_us(o, 30000) | floyd_options_set_check_leader_us(o, 300000) |
             floyd_options_set_request_timeout_ms(o, 10000) | floyd_options_set_leader_wait_ms(o, 5000) |
             floyd_options_set_append_entries_size_once(o, 1 << 20) |
             floyd_options_set_append_entries_count_once(o, 1024) | floyd_options_set_single_mode(o, false) |
             floyd_options_set_cluster_id(o, "c-test");
    CHECK(rc == FLOYD_OK, "every option setter");
    CHECK(floyd_options_set_log_level(o, 42) == FLOYD_INVALID_ARGUMENT, "log level out of range");
    CHECK(floyd_options_set_cluster_id(o, NULL) == FLOYD_INVALID_ARGUMENT, "NULL cluster id");
    return o;
}

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

static int read_equals(floyd_t *f, const char *key, const char *want, size_t want_len, int dirty) {
    char *value = NULL;
    size_t len = 0;
    int rc = dirty ? floyd_dirty_read(f, key, strlen(key), &value, &len, NULL)
                   : floyd_read(f, key, strlen(key), &value, &len, NULL);
    int ok = rc == FLOYD_OK && len == want_len && memcmp(value, want, len) == 0 && value[len] == '\0';
    floyd_free(value);
    return ok;
}

static void test_normal_use(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader is elected and known everywhere");
    if (leader < 0) return;
    int follower = (leader + 1) % NODES;
    char *msg = NULL;
    CHECK(floyd_write(nodes[leader], "k1", 2, "v1", 2, &msg) == FLOYD_OK && msg == NULL, "write via the leader");
    CHECK(floyd_write(nodes[follower], "k2", 2, "v2", 2, NULL) == FLOYD_OK, "write via a follower");
    for (int i = 0; i < NODES; i++) {
        CHECK(read_equals(nodes[i], "k1", "v1", 2, 0) && read_equals(nodes[i], "k2", "v2", 2, 0),
              "consistent read on every node");
    }
    char *value = (char *)0x1;
    size_t len = 77;
    CHECK(floyd_read(nodes[follower], "nope", 4, &value, &len, &msg) == FLOYD_NOT_FOUND, "missing key: NOT_FOUND");
    CHECK(value == (char *)0x1 && len == 77, "NOT_FOUND writes no output");
    CHECK(msg != NULL, "NOT_FOUND sets errmsg");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_delete(nodes[follower], "k1", 2, NULL) == FLOYD_OK, "delete via a follower");
    CHECK(floyd_read(nodes[leader], "k1", 2, &value, &len, NULL) == FLOYD_NOT_FOUND, "deleted key is gone");
    double deadline = now_s() + 30;
    int converged = 0;
    while (!converged && now_s() < deadline) {
        converged = 1;
        for (int i = 0; i < NODES; i++) converged &= read_equals(nodes[i], "k2", "v2", 2, 1);
        if (!converged) pause_ms(10);
    }
    CHECK(converged, "dirty reads converge on every node");

    const char binary[] = {'a', '\0', 'b', '\0', '\0', 'c'};
    CHECK(floyd_write(nodes[follower], "bin", 3, binary, sizeof binary, NULL) == FLOYD_OK, "write value with NULs");
    CHECK(read_equals(nodes[leader], "bin", binary, sizeof binary, 0), "embedded NUL bytes round-trip exactly");
    CHECK(floyd_write(nodes[leader], "empty", 5, NULL, 0, NULL) == FLOYD_OK, "empty value with NULL pointer");
    CHECK(read_equals(nodes[leader], "empty", "", 0, 0), "empty value reads back empty");

    char *ip_port = NULL;
    CHECK(floyd_get_leader(nodes[follower], &ip_port) == FLOYD_OK && ip_port != NULL, "get_leader");
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", ports[leader]);
    CHECK(ip_port && strcmp(ip_port, want) == 0, "get_leader names the leader");
    floyd_free(ip_port);
    CHECK(floyd_is_leader(nodes[leader]) && !floyd_is_leader(nodes[follower]), "is_leader");

    char *text = NULL;
    CHECK(floyd_get_server_status(nodes[leader], &text) == FLOYD_OK, "get_server_status");
    CHECK(text && strstr(text, "LastApplied") && strstr(text, "leader"), "status has Floyd's header and the role");
    floyd_free(text);
    char *json = NULL;
    CHECK(floyd_get_server_status_json(nodes[follower], &json) == FLOYD_OK, "get_server_status_json");
    CHECK(json && strstr(json, "\"role\":\"follower\"") && strstr(json, "\"commit_index\":"), "status JSON fields");
    floyd_free(json);
    char *servers = NULL;
    CHECK(floyd_get_all_servers(nodes[0], &servers, NULL) == FLOYD_OK && servers, "get_all_servers");
    CHECK(servers && strstr(servers, want) && strchr(servers, ','), "all servers listed");
    floyd_free(servers);
    floyd_set_log_level(nodes[0], FLOYD_LOG_DEBUG);
    floyd_set_log_level(nodes[0], FLOYD_LOG_WARN);
    CHECK(atomic_load(&log_lines) > 0, "the log callback received lines");
}

static void test_bad_input(void) {
    floyd_t *f = nodes[0];
    char *value = NULL, *msg = NULL;
    size_t len = 0;
    CHECK(floyd_write(NULL, "k", 1, "v", 1, &msg) == FLOYD_INVALID_ARGUMENT && msg, "NULL handle");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_write(f, NULL, 3, "v", 1, NULL) == FLOYD_INVALID_ARGUMENT, "NULL key with non-zero length");
    CHECK(floyd_write(f, "k", 1, NULL, 3, NULL) == FLOYD_INVALID_ARGUMENT, "NULL value with non-zero length");
    CHECK(floyd_write(f, "", 0, "v", 1, NULL) == FLOYD_INVALID_ARGUMENT, "empty key");
    CHECK(floyd_delete(f, NULL, 0, NULL) == FLOYD_INVALID_ARGUMENT, "empty key on delete");
    CHECK(floyd_read(f, "k", 1, NULL, &len, NULL) == FLOYD_INVALID_ARGUMENT, "NULL value out pointer");
    CHECK(floyd_dirty_read(f, "k", 1, &value, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "NULL length out pointer");
    CHECK(floyd_get_leader(f, NULL) == FLOYD_INVALID_ARGUMENT, "get_leader with NULL out");
    CHECK(floyd_get_server_status(f, NULL) == FLOYD_INVALID_ARGUMENT, "status with NULL out");
    CHECK(floyd_get_server_status_json(NULL, &value) == FLOYD_INVALID_ARGUMENT, "status JSON on NULL handle");
    CHECK(!floyd_has_leader(NULL) && !floyd_is_leader(NULL), "queries on NULL handle are false");
    size_t big = (16u << 20) + 1;
    char *huge = calloc(big, 1);
    CHECK(huge && floyd_write(f, "big", 3, huge, big, &msg) == FLOYD_INVALID_ARGUMENT, "value over the size limit");
    CHECK(msg && strstr(msg, "exceeds"), "size limit message");
    free(huge);
    floyd_free(msg);
    msg = NULL;
    floyd_close(NULL);
    floyd_free(NULL);
    floyd_options_free(NULL);
    floyd_set_log_level(NULL, FLOYD_LOG_INFO);
    CHECK(floyd_options_set_heartbeat_us(NULL, 1) == FLOYD_INVALID_ARGUMENT, "setter on NULL options");

    floyd_t *g = NULL;
    floyd_options_t *bad = floyd_options_new("not-a-member-list", "127.0.0.1", 1, "/tmp/floyd-never");
    CHECK(floyd_open(bad, &g, &msg) == FLOYD_INVALID_ARGUMENT && g == NULL, "invalid member string");
    CHECK(msg && strlen(msg) > 0, "invalid member string has a message");
    floyd_free(msg);
    msg = NULL;
    floyd_options_free(bad);
    CHECK(floyd_open(NULL, &g, NULL) == FLOYD_INVALID_ARGUMENT, "NULL options");
    int p = free_port();
    char solo[64];
    snprintf(solo, sizeof solo, "127.0.0.1:%d", p);
    floyd_options_t *o = floyd_options_new(solo, "127.0.0.1", p, "/proc/floyd-unwritable");
    CHECK(floyd_open(o, &g, &msg) == FLOYD_IO_ERROR && g == NULL, "unwritable path: IO_ERROR");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_open(o, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "NULL out handle");
    floyd_options_free(o);
    o = floyd_options_new(NULL, "127.0.0.1", 1, "/tmp/x");
    CHECK(o && floyd_open(o, &g, NULL) == FLOYD_INVALID_ARGUMENT, "NULL members reported by open");
    floyd_options_free(o);
}

static void test_codes_and_version(void) {
    CHECK(strcmp(floyd_status_str(FLOYD_OK), "OK") == 0, "status_str(OK)");
    CHECK(strcmp(floyd_status_str(FLOYD_NOT_HOLDER), "NOT_HOLDER") == 0, "status_str(NOT_HOLDER)");
    CHECK(strcmp(floyd_status_str(12345), "UNKNOWN") == 0, "status_str(unknown)");
    for (int c = FLOYD_OK; c <= FLOYD_FAILED; c++) CHECK(strlen(floyd_status_str(c)) > 1, "every code has a name");
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", FLOYD_VERSION_MAJOR, FLOYD_VERSION_MINOR, FLOYD_VERSION_PATCH);
    CHECK(strcmp(floyd_version(), v) == 0, "version matches the macros");
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    size_t used = 0;
    for (int i = 0; i < NODES; i++) {
        ports[i] = free_port();
        used += (size_t)snprintf(members + used, sizeof members - used, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    }
    for (int i = 0; i < NODES; i++) {
        floyd_options_t *o = options_for(i);
        CHECK(floyd_options_set_log_callback(o, on_log, NULL) == FLOYD_OK, "set log callback");
        CHECK(floyd_options_set_log_level(o, FLOYD_LOG_INFO) == FLOYD_OK, "set log level");
        char *msg = NULL;
        int rc = floyd_open(o, &nodes[i], &msg);
        CHECK(rc == FLOYD_OK && nodes[i] != NULL, "open a node");
        if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
        floyd_free(msg);
        floyd_options_free(o);
    }
    test_codes_and_version();
    if (nodes[0] && nodes[1] && nodes[2]) {
        test_normal_use();
        test_bad_input();
    }
    for (int i = 0; i < NODES; i++) floyd_close(nodes[i]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
