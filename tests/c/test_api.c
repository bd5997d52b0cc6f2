/*
 * Every function of the C API on a 3-node cluster in one process: normal use,
 * writes through a follower, reads from every node, NOT_FOUND, bad input,
 * locks (fencing tokens, renewal, expiry), and membership (a fourth node
 * joins and leaves; a lone node refuses to remove its last voter), and the
 * async calls.
 * Prints one line per check and "N passed, M failed" at the end.
 */
#include "test_util.h"
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

static floyd_options_t *options_for(int i) {
    char path[512];
    snprintf(path, sizeof path, "%s/node%d", dir, i);
    floyd_options_t *o = floyd_options_new(members, "127.0.0.1", ports[i], path);
    int rc = floyd_options_set_heartbeat_us(o, 30000) | floyd_options_set_check_leader_us(o, 300000) |
             floyd_options_set_request_timeout_ms(o, 10000) | floyd_options_set_leader_wait_ms(o, 5000) |
             floyd_options_set_append_entries_size_once(o, 1 << 20) |
             floyd_options_set_append_entries_count_once(o, 1024) | floyd_options_set_single_mode(o, false) |
             floyd_options_set_cluster_id(o, "c-test") | floyd_options_set_max_async_in_flight(o, 10000);
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
    char *metrics = NULL;
    CHECK(floyd_get_metrics(nodes[leader], &metrics) == FLOYD_OK && metrics, "get_metrics");
    CHECK(metrics && strstr(metrics, "# TYPE floyd_log_syncs counter\n") &&
              strstr(metrics, "floyd_is_leader{group=\"0\"} 1\n") && strstr(metrics, "\n# EOF\n"),
          "metrics in the OpenMetrics text format, the leader's group labelled");
    floyd_free(metrics);
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
    CHECK(floyd_get_metrics(NULL, &value) == FLOYD_INVALID_ARGUMENT && floyd_get_metrics(f, NULL) == FLOYD_INVALID_ARGUMENT,
          "metrics with a NULL argument");
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
    CHECK(floyd_options_set_session_timeout_ms(NULL, 1000) == FLOYD_INVALID_ARGUMENT,
          "session timeout on NULL options");
    {
        floyd_t *h = NULL;
        floyd_options_t *short_session = floyd_options_new("127.0.0.1:1", "127.0.0.1", 1, "/tmp/floyd-never");
        CHECK(floyd_options_set_session_timeout_ms(short_session, 10) == FLOYD_OK, "session timeout set");
        CHECK(floyd_open(short_session, &h, &msg) == FLOYD_INVALID_ARGUMENT && h == NULL,
              "a session timeout under a second is refused by open");
        CHECK(msg && strstr(msg, "session_timeout"), "the message names session_timeout");
        floyd_free(msg);
        msg = NULL;
        floyd_options_free(short_session);
    }

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

static int try_lock(floyd_t *f, const char *name, const char *holder, uint64_t ttl_ms, uint64_t *token) {
    return floyd_try_lock(f, name, strlen(name), holder, strlen(holder), ttl_ms, token, NULL);
}

static int unlock(floyd_t *f, const char *name, const char *holder) {
    return floyd_unlock(f, name, strlen(name), holder, strlen(holder), NULL);
}

static void test_locks(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader for the lock tests");
    if (leader < 0) return;
    floyd_t *l = nodes[leader], *f = nodes[(leader + 1) % NODES];
    uint64_t t1 = 0, t2 = 0, t = 0;
    char *msg = NULL;
    CHECK(floyd_try_lock(f, "lk", 2, "alice", 5, 10000, &t1, &msg) == FLOYD_OK && msg == NULL,
          "try_lock via a follower");
    CHECK(t1 > 0, "the fencing token is positive");
    CHECK(try_lock(l, "lk", "alice", 10000, &t) == FLOYD_OK && t == t1, "renewal by the holder keeps the token");
    t = 12345;
    CHECK(floyd_try_lock(l, "lk", 2, "bob", 3, 10000, &t, &msg) == FLOYD_LOCKED, "another holder: LOCKED");
    CHECK(t == 12345, "LOCKED writes no token");
    CHECK(msg != NULL, "LOCKED sets errmsg");
    floyd_free(msg);
    msg = NULL;
    CHECK(unlock(f, "lk", "bob") == FLOYD_NOT_HOLDER, "unlock by another holder: NOT_HOLDER");
    CHECK(unlock(l, "lk", "alice") == FLOYD_OK, "unlock by the holder");
    CHECK(unlock(l, "lk", "alice") == FLOYD_NOT_HOLDER, "unlock of a free lock: NOT_HOLDER");
    CHECK(try_lock(f, "lk", "bob", 10000, &t2) == FLOYD_OK && t2 > t1, "re-acquired with a larger token");
    CHECK(try_lock(l, "lk", "bob", 10000, NULL) == FLOYD_OK, "a NULL token pointer is allowed");
    const char bin[] = {'l', '\0', 'k'};
    CHECK(floyd_try_lock(l, bin, sizeof bin, "x\0y", 3, 10000, &t, NULL) == FLOYD_OK,
          "binary lock name and holder");
    CHECK(floyd_try_lock(l, bin, sizeof bin, "x", 1, 10000, &t, NULL) == FLOYD_LOCKED,
          "the holder is compared as bytes");

    uint64_t s1 = 0, s2 = 0;
    CHECK(try_lock(l, "short", "alice", 200, &s1) == FLOYD_OK, "a 200 ms lease");
    double deadline = now_s() + 15;
    int rc = FLOYD_LOCKED;
    while (now_s() < deadline && (rc = try_lock(f, "short", "bob", 10000, &s2)) == FLOYD_LOCKED) pause_ms(20);
    CHECK(rc == FLOYD_OK && s2 > s1, "the lease runs out and another holder takes the lock");
    CHECK(unlock(l, "short", "alice") == FLOYD_NOT_HOLDER, "the expired holder: NOT_HOLDER");

    CHECK(floyd_try_lock(l, "", 0, "h", 1, 1000, &t, NULL) == FLOYD_INVALID_ARGUMENT, "empty lock name");
    CHECK(floyd_try_lock(l, "n", 1, "", 0, 1000, &t, NULL) == FLOYD_INVALID_ARGUMENT, "empty holder");
    CHECK(try_lock(l, "n", "h", 0, &t) == FLOYD_INVALID_ARGUMENT, "ttl 0");
    CHECK(try_lock(l, "n", "h", 86400001ull, &t) == FLOYD_INVALID_ARGUMENT, "ttl over 24 h");
    CHECK(floyd_try_lock(l, NULL, 1, "h", 1, 1000, &t, NULL) == FLOYD_INVALID_ARGUMENT, "NULL lock name");
    CHECK(floyd_try_lock(l, "n", 1, NULL, 1, 1000, &t, NULL) == FLOYD_INVALID_ARGUMENT, "NULL holder");
    CHECK(floyd_try_lock(NULL, "n", 1, "h", 1, 1000, &t, &msg) == FLOYD_INVALID_ARGUMENT && msg,
          "try_lock on a NULL handle");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_unlock(l, "", 0, "h", 1, NULL) == FLOYD_INVALID_ARGUMENT, "unlock: empty name");
    CHECK(floyd_unlock(l, "n", 1, NULL, 0, NULL) == FLOYD_INVALID_ARGUMENT, "unlock: empty holder");
    CHECK(floyd_unlock(l, NULL, 2, "h", 1, NULL) == FLOYD_INVALID_ARGUMENT, "unlock: NULL name");
    CHECK(floyd_unlock(NULL, "n", 1, "h", 1, NULL) == FLOYD_INVALID_ARGUMENT, "unlock on a NULL handle");
    char *json = NULL;
    CHECK(floyd_get_server_status_json(l, &json) == FLOYD_OK && json && strstr(json, "\"locks_held\":"),
          "status JSON counts locks");
    floyd_free(json);
}

static int servers_equal(floyd_t *f, const char *want) {
    char *csv = NULL;
    int ok = floyd_get_all_servers(f, &csv, NULL) == FLOYD_OK && csv && strcmp(csv, want) == 0;
    floyd_free(csv);
    return ok;
}

/* A fourth node started in join mode (knowing only the existing members) is
 * added through a follower, serves, and is removed through the leader. */
static void test_join_and_leave(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader for the membership tests");
    if (leader < 0) return;
    floyd_t *l = nodes[leader], *f = nodes[(leader + 1) % NODES];
    char *msg = NULL;
    int port = free_port();
    char me[64], path[512];
    snprintf(me, sizeof me, "127.0.0.1:%d", port);
    snprintf(path, sizeof path, "%s/joiner", dir);
    floyd_options_t *o = floyd_options_new(members, "127.0.0.1", port, path);
    int set = floyd_options_set_heartbeat_us(o, 30000) | floyd_options_set_check_leader_us(o, 300000) |
              floyd_options_set_cluster_id(o, "c-test") | floyd_options_set_join(o, true);
    CHECK(set == FLOYD_OK, "join options");
    floyd_t *j = NULL;
    int rc = floyd_open(o, &j, &msg);
    CHECK(rc == FLOYD_OK && j, "open a joining node whose members do not name it");
    if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    msg = NULL;
    floyd_options_free(o);
    if (!j) return;
    char three[300], *before = NULL;
    CHECK(floyd_get_all_servers(l, &before, NULL) == FLOYD_OK && before, "the configuration before");
    snprintf(three, sizeof three, "%s", before ? before : "");
    floyd_free(before);
    CHECK(!floyd_is_leader(j), "a joining node does not lead");
    rc = floyd_add_server(f, me, &msg);
    CHECK(rc == FLOYD_OK && msg == NULL, "add_server through a follower");
    if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    msg = NULL;
    char *csv = NULL;
    CHECK(floyd_get_all_servers(l, &csv, NULL) == FLOYD_OK && csv && strstr(csv, me),
          "the leader lists the new member");
    char four[300];
    snprintf(four, sizeof four, "%s", csv ? csv : "");
    floyd_free(csv);
    double deadline = now_s() + 30;
    while (now_s() < deadline && !servers_equal(j, four)) pause_ms(10);
    CHECK(servers_equal(j, four), "the new member learns the configuration");
    CHECK(floyd_write(j, "joined", 6, "yes", 3, NULL) == FLOYD_OK, "write through the new member");
    CHECK(read_equals(l, "joined", "yes", 3, 0), "read it back from the leader");
    CHECK(floyd_add_server(l, me, NULL) == FLOYD_OK, "adding a voter again: OK");
    rc = floyd_remove_server(l, me, &msg);
    CHECK(rc == FLOYD_OK, "remove_server through the leader");
    if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    msg = NULL;
    CHECK(servers_equal(l, three), "the leader lists the original members again");
    floyd_close(j);
}

static void test_membership_bad_input(void) {
    floyd_t *f = nodes[0];
    char *msg = NULL;
    char self[64];
    snprintf(self, sizeof self, "127.0.0.1:%d", ports[0]);
    CHECK(floyd_add_server(f, self, NULL) == FLOYD_OK, "add of an existing voter: OK");
    CHECK(floyd_remove_server(f, "127.0.0.1:1", &msg) == FLOYD_INVALID_ARGUMENT && msg, "remove of a non-member");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_add_server(f, "not-an-address", NULL) == FLOYD_INVALID_ARGUMENT, "add of a bad address");
    CHECK(floyd_add_server(f, "127.0.0.1:99999", NULL) == FLOYD_INVALID_ARGUMENT, "add of a bad port");
    CHECK(floyd_remove_server(f, "", NULL) == FLOYD_INVALID_ARGUMENT, "remove of an empty address");
    CHECK(floyd_add_server(f, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "add of NULL");
    CHECK(floyd_remove_server(f, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "remove of NULL");
    CHECK(floyd_add_server(NULL, self, NULL) == FLOYD_INVALID_ARGUMENT, "add on a NULL handle");
    CHECK(floyd_remove_server(NULL, self, NULL) == FLOYD_INVALID_ARGUMENT, "remove on a NULL handle");
    CHECK(floyd_get_all_servers(f, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "get_all_servers with NULL out");
    CHECK(floyd_options_set_join(NULL, true) == FLOYD_INVALID_ARGUMENT, "set_join on NULL options");

    /* A lone node: it lists itself and cannot remove its last voter. */
    int p = free_port();
    char solo[64], path[512];
    snprintf(solo, sizeof solo, "127.0.0.1:%d", p);
    snprintf(path, sizeof path, "%s/solo", dir);
    floyd_options_t *o = floyd_options_new(solo, "127.0.0.1", p, path);
    floyd_t *g = NULL;
    CHECK(floyd_open(o, &g, NULL) == FLOYD_OK && g, "open a lone node");
    if (g) {
        CHECK(floyd_write(g, "k", 1, "v", 1, NULL) == FLOYD_OK, "the lone node serves");
        CHECK(servers_equal(g, solo), "get_all_servers lists the lone node");
        CHECK(floyd_add_server(g, solo, NULL) == FLOYD_OK, "the lone node adds itself: OK");
        CHECK(floyd_remove_server(g, solo, &msg) == FLOYD_INVALID_ARGUMENT && msg, "remove of the last voter");
        floyd_free(msg);
        msg = NULL;
        CHECK(servers_equal(g, solo), "the last voter stays");
        floyd_close(g);
    }
    /* join and single_mode exclude each other. */
    CHECK(floyd_options_set_join(o, true) == FLOYD_OK && floyd_options_set_single_mode(o, true) == FLOYD_OK,
          "set join and single_mode");
    g = NULL;
    CHECK(floyd_open(o, &g, NULL) == FLOYD_INVALID_ARGUMENT && g == NULL, "join with single_mode: INVALID_ARGUMENT");
    floyd_options_free(o);
}

/* Leadership transfer (Raft dissertation section 3.10): through a follower to
 * the third node, which then leads and serves writes; refusals leave it be. */
static void test_transfer_leader(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader for the transfer tests");
    if (leader < 0) return;
    int target = (leader + 1) % NODES, via = (leader + 2) % NODES;
    char name[64], self[64], *msg = NULL;
    snprintf(name, sizeof name, "127.0.0.1:%d", ports[target]);
    snprintf(self, sizeof self, "127.0.0.1:%d", ports[leader]);
    CHECK(floyd_transfer_leader(nodes[leader], self, NULL) == FLOYD_OK, "transfer to the leader itself: OK");
    int rc = floyd_transfer_leader(nodes[via], name, &msg);
    CHECK(rc == FLOYD_OK && msg == NULL, "transfer_leader through a follower");
    if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_is_leader(nodes[target]), "the target leads");
    CHECK(wait_for_leader() == target, "every node follows the target");
    CHECK(floyd_write(nodes[leader], "moved", 5, "yes", 3, NULL) == FLOYD_OK, "write through the old leader");
    CHECK(read_equals(nodes[target], "moved", "yes", 3, 0), "read it back from the new leader");
    rc = floyd_transfer_leader(nodes[target], "127.0.0.1:1", &msg);
    CHECK(rc == FLOYD_INVALID_ARGUMENT && msg, "transfer to a non-member");
    floyd_free(msg);
    CHECK(floyd_transfer_leader(nodes[target], "not-an-address", NULL) == FLOYD_INVALID_ARGUMENT,
          "transfer to a bad address");
    CHECK(floyd_transfer_leader(nodes[target], NULL, NULL) == FLOYD_INVALID_ARGUMENT, "transfer to NULL");
    CHECK(floyd_transfer_leader(NULL, name, NULL) == FLOYD_INVALID_ARGUMENT, "transfer on a NULL handle");
    CHECK(floyd_is_leader(nodes[target]), "refusals change nothing");
}

/* Async calls: answered once each, on a library thread; refusals never call back. */
struct async_tally {
    atomic_int calls, ok, not_found, other;
};

struct async_read {
    struct async_tally *tally;
    char want[32];
};

static void on_done(void *user_data, int code, const char *errmsg) {
    struct async_tally *t = user_data;
    if (code == FLOYD_OK && errmsg == NULL) atomic_fetch_add(&t->ok, 1);
    else if (code != FLOYD_OK && errmsg != NULL) atomic_fetch_add(&t->other, 1);
    atomic_fetch_add(&t->calls, 1);
}

static void on_read(void *user_data, int code, const char *value, size_t value_len, const char *errmsg) {
    struct async_read *r = user_data;
    if (code == FLOYD_OK && errmsg == NULL && value_len == strlen(r->want) && memcmp(value, r->want, value_len) == 0)
        atomic_fetch_add(&r->tally->ok, 1);
    else if (code == FLOYD_NOT_FOUND && value == NULL && value_len == 0)
        atomic_fetch_add(&r->tally->not_found, 1);
    else
        atomic_fetch_add(&r->tally->other, 1);
    atomic_fetch_add(&r->tally->calls, 1);
    free(r);
}

static int wait_calls(struct async_tally *t, int n) {
    double deadline = now_s() + 30;
    while (atomic_load(&t->calls) < n && now_s() < deadline) pause_ms(5);
    pause_ms(20); /* room for a wrong extra answer to show */
    return atomic_load(&t->calls) == n;
}

static int read_async(floyd_t *f, const char *key, const char *want, struct async_tally *t) {
    struct async_read *r = calloc(1, sizeof *r);
    r->tally = t;
    snprintf(r->want, sizeof r->want, "%s", want);
    int rc = floyd_read_async(f, key, strlen(key), on_read, r);
    if (rc != FLOYD_OK) free(r);
    return rc;
}

static void test_async(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader for the async tests");
    if (leader < 0) return;
    floyd_t *via[2] = {nodes[leader], nodes[(leader + 1) % NODES]};
    struct async_tally w = {0}, r = {0}, bad = {0};
    char key[32];
    int accepted = 0;
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof key, "async-%d", i);
        accepted += floyd_write_async(via[i % 2], key, strlen(key), key, strlen(key), on_done, &w) == FLOYD_OK;
    }
    CHECK(accepted == 400, "400 async writes accepted, through the leader and a follower");
    CHECK(wait_calls(&w, 400) && atomic_load(&w.ok) == 400, "each answered FLOYD_OK exactly once");
    accepted = 0;
    for (int i = 0; i < 400; i += 7) {
        snprintf(key, sizeof key, "async-%d", i);
        accepted += read_async(nodes[i % NODES], key, key, &r) == FLOYD_OK;
    }
    accepted += read_async(nodes[leader], "async-missing", "", &r) == FLOYD_OK;
    CHECK(wait_calls(&r, accepted) && atomic_load(&r.ok) == accepted - 1 && atomic_load(&r.not_found) == 1,
          "async reads from every node see every write; a missing key is NOT_FOUND");
    struct async_tally d = {0};
    CHECK(floyd_delete_async(via[1], "async-0", 7, on_done, &d) == FLOYD_OK && wait_calls(&d, 1) &&
              atomic_load(&d.ok) == 1,
          "delete_async");
    CHECK(!read_equals(nodes[leader], "async-0", "async-0", 7, 0), "the deleted key is gone");
    CHECK(floyd_write_async(NULL, "k", 1, "v", 1, on_done, &bad) == FLOYD_INVALID_ARGUMENT, "write_async NULL handle");
    CHECK(floyd_write_async(via[0], "k", 1, "v", 1, NULL, &bad) == FLOYD_INVALID_ARGUMENT, "write_async NULL callback");
    CHECK(floyd_write_async(via[0], "", 0, "v", 1, on_done, &bad) == FLOYD_INVALID_ARGUMENT, "write_async empty key");
    CHECK(floyd_write_async(via[0], NULL, 3, "v", 1, on_done, &bad) == FLOYD_INVALID_ARGUMENT, "write_async NULL key");
    CHECK(floyd_delete_async(via[0], "", 0, on_done, &bad) == FLOYD_INVALID_ARGUMENT, "delete_async empty key");
    CHECK(floyd_read_async(via[0], "k", 1, NULL, &bad) == FLOYD_INVALID_ARGUMENT, "read_async NULL callback");
    pause_ms(50);
    CHECK(atomic_load(&bad.calls) == 0, "a refused async call never calls back");
    CHECK(floyd_async_in_flight(via[0]) == 0 && floyd_async_in_flight(NULL) == 0, "nothing left in flight");
}

/* Mutual TLS options: argument checks, and unreadable files refused by floyd_open with a message. */
static void test_tls_options(void) {
    CHECK(floyd_options_set_tls(NULL, "ca", "cert", "key") == FLOYD_INVALID_ARGUMENT, "set_tls on NULL options");
    int p = free_port();
    char solo[64], path[512], ca[600];
    snprintf(solo, sizeof solo, "127.0.0.1:%d", p);
    snprintf(path, sizeof path, "%s/tls", dir);
    snprintf(ca, sizeof ca, "%s/no-such-ca.pem", dir);
    floyd_options_t *o = floyd_options_new(solo, "127.0.0.1", p, path);
    CHECK(floyd_options_set_tls(o, ca, NULL, "key") == FLOYD_INVALID_ARGUMENT, "set_tls with a NULL path");
    CHECK(floyd_options_set_tls(o, ca, "", "key") == FLOYD_INVALID_ARGUMENT, "set_tls with an empty path");
    CHECK(floyd_options_set_tls(o, ca, "cert.pem", "key.pem") == FLOYD_OK, "set_tls");
    floyd_t *g = NULL;
    char *msg = NULL;
    CHECK(floyd_open(o, &g, &msg) == FLOYD_INVALID_ARGUMENT && g == NULL && msg && strstr(msg, "no-such-ca.pem"),
          "open with an unreadable CA file: INVALID_ARGUMENT naming it");
    floyd_free(msg);
    CHECK(floyd_options_set_tls(o, NULL, NULL, NULL) == FLOYD_OK, "set_tls(NULL, NULL, NULL) turns TLS off");
    CHECK(floyd_open(o, &g, NULL) == FLOYD_OK && g, "open without TLS");
    floyd_close(g);
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
    test_tls_options();
    if (nodes[0] && nodes[1] && nodes[2]) {
        test_normal_use();
        test_bad_input();
        test_locks();
        test_join_and_leave();
        test_membership_bad_input();
        test_transfer_leader();
        test_async();
    }
    for (int i = 0; i < NODES; i++) floyd_close(nodes[i]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
