/*
 * Leases through the C API on a 3-node cluster in one process:
 * floyd_lease_grant, floyd_write_with_lease, floyd_lease_keepalive,
 * floyd_lease_time_to_live, floyd_lease_revoke, a transaction's put with a
 * lease, expiry deleting the keys on every node, and bad input for each.
 * Prints one line per check ("ok N - what") and "N passed, M failed" at the end.
 */
#include "test_cluster.h"

static int leader = -1, follower = -1;

/* Whether `key` is in node `f`'s own state machine. */
static int present(floyd_t *f, const char *key) {
    char *v = NULL;
    size_t n = 0;
    int rc = floyd_dirty_read(f, key, strlen(key), &v, &n, NULL);
    floyd_free(v);
    return rc == FLOYD_OK;
}

static uint64_t lease_of(floyd_t *f, const char *key) {
    char *v = NULL;
    size_t n = 0;
    floyd_kv_meta_t m = {0, 0, 0, 0};
    int rc = floyd_read_meta(f, key, strlen(key), &v, &n, &m, NULL);
    floyd_free(v);
    return rc == FLOYD_OK ? m.lease : 0;
}

static void test_expiry(void) {
    floyd_t *f = nodes[follower];
    uint64_t id = 0, ttl = 0, left = 0, keys = 0, renewed = 0;
    int rc;
    RETRY(rc, floyd_lease_grant(f, 1, &id, NULL));
    CHECK(rc == FLOYD_OK && id != 0, "a follower grants a lease");
    CHECK(floyd_write_with_lease(f, "svc/a", 5, "up", 2, id, NULL) == FLOYD_OK &&
              floyd_write_with_lease(f, "svc/b", 5, "up", 2, id, NULL) == FLOYD_OK &&
              floyd_write(f, "svc/c", 5, "kept", 4, NULL) == FLOYD_OK,
          "two keys attached to it, one not");
    CHECK(lease_of(f, "svc/a") == id && lease_of(f, "svc/c") == 0, "read_meta names the lease");
    CHECK(floyd_lease_time_to_live(f, id, &ttl, &left, &keys, NULL) == FLOYD_OK && ttl == 600 && left <= ttl &&
              keys == 2,
          "time to live: the TTL raised to twice the election timeout, 2 keys");
    CHECK(floyd_lease_time_to_live(f, id, NULL, NULL, NULL, NULL) == FLOYD_OK, "its out-pointers may be NULL");
    CHECK(floyd_lease_keepalive(f, id, &renewed, NULL) == FLOYD_OK && renewed == 600, "a keep-alive renews its TTL");
    CHECK(floyd_lease_keepalive(f, id, NULL, NULL) == FLOYD_OK, "ttl_ms_left may be NULL");
    double deadline = now_s() + 30;
    int gone = 0;
    while (!gone && now_s() < deadline) {
        gone = 1;
        for (int i = 0; i < NODES; i++) gone &= !present(nodes[i], "svc/a") && !present(nodes[i], "svc/b");
        if (!gone) pause_ms(20);
    }
    CHECK(gone, "left alone, the lease expires and its keys go on every node");
    CHECK(present(f, "svc/c"), "a key without the lease stays");
    CHECK(floyd_lease_keepalive(f, id, NULL, NULL) == FLOYD_NOT_FOUND, "keep-alive of an expired lease: NOT_FOUND");
    CHECK(floyd_lease_time_to_live(f, id, &ttl, NULL, NULL, NULL) == FLOYD_NOT_FOUND, "so is its time to live");
}

static void test_revoke_and_txn(void) {
    floyd_t *f = nodes[leader], *o = nodes[follower];
    uint64_t id = 0;
    int rc;
    RETRY(rc, floyd_lease_grant(f, 60000, &id, NULL));
    CHECK(rc == FLOYD_OK, "grant a lease of a minute");
    floyd_txn_t *t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "t/1", 3, "x", 1, id);
    floyd_txn_put(t, FLOYD_TXN_THEN, "t/2", 3, "y", 1, 0);
    bool ok = false;
    CHECK(floyd_txn_commit(o, t, &ok, NULL, NULL, NULL) == FLOYD_OK && ok, "a transaction puts a key with the lease");
    floyd_txn_free(t);
    CHECK(lease_of(o, "t/1") == id && lease_of(o, "t/2") == 0, "only that key is attached");
    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "t/3", 3, "z", 1, id + 1000);
    char *msg = NULL;
    CHECK(floyd_txn_commit(o, t, &ok, NULL, NULL, &msg) == FLOYD_NOT_FOUND && msg != NULL,
          "a transaction naming an unknown lease: NOT_FOUND");
    floyd_free(msg);
    floyd_txn_free(t);
    CHECK(!present(o, "t/3"), "and writes nothing");
    CHECK(floyd_lease_revoke(o, id, NULL) == FLOYD_OK, "revoke from a follower");
    char *v = NULL;
    size_t n = 0;
    CHECK(floyd_read(f, "t/1", 3, &v, &n, NULL) == FLOYD_NOT_FOUND, "the revoked lease's key is gone");
    CHECK(floyd_read(f, "t/2", 3, &v, &n, NULL) == FLOYD_OK && n == 1, "the other stays");
    floyd_free(v);
    CHECK(floyd_lease_revoke(o, id, NULL) == FLOYD_NOT_FOUND, "revoking it again: NOT_FOUND");
}

static void test_bad_input(void) {
    floyd_t *f = nodes[leader];
    uint64_t id = 0, x = 0;
    char *msg = NULL;
    CHECK(floyd_lease_grant(NULL, 1000, &id, &msg) == FLOYD_INVALID_ARGUMENT && msg, "grant: NULL handle");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_lease_grant(f, 1000, NULL, &msg) == FLOYD_INVALID_ARGUMENT && msg, "grant: NULL lease_id");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_lease_grant(f, 0, &id, NULL) == FLOYD_INVALID_ARGUMENT, "grant: TTL 0");
    CHECK(floyd_lease_grant(f, UINT64_MAX, &id, NULL) == FLOYD_INVALID_ARGUMENT, "grant: TTL over a year");
    CHECK(floyd_lease_keepalive(NULL, 1, &x, NULL) == FLOYD_INVALID_ARGUMENT, "keep-alive: NULL handle");
    CHECK(floyd_lease_keepalive(f, 0, &x, NULL) == FLOYD_INVALID_ARGUMENT, "keep-alive: lease 0");
    CHECK(floyd_lease_keepalive(f, 987654, &x, &msg) == FLOYD_NOT_FOUND && msg, "keep-alive: unknown lease");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_lease_revoke(NULL, 1, NULL) == FLOYD_INVALID_ARGUMENT, "revoke: NULL handle");
    CHECK(floyd_lease_revoke(f, 0, NULL) == FLOYD_INVALID_ARGUMENT, "revoke: lease 0");
    CHECK(floyd_lease_revoke(f, 987654, NULL) == FLOYD_NOT_FOUND, "revoke: unknown lease");
    CHECK(floyd_lease_time_to_live(NULL, 1, &x, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "ttl: NULL handle");
    CHECK(floyd_lease_time_to_live(f, 0, &x, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "ttl: lease 0");
    CHECK(floyd_write_with_lease(NULL, "k", 1, "v", 1, 1, NULL) == FLOYD_INVALID_ARGUMENT, "write: NULL handle");
    CHECK(floyd_write_with_lease(f, NULL, 1, "v", 1, 1, NULL) == FLOYD_INVALID_ARGUMENT, "write: NULL key");
    CHECK(floyd_write_with_lease(f, "k", 1, NULL, 1, 1, NULL) == FLOYD_INVALID_ARGUMENT, "write: NULL value");
    CHECK(floyd_write_with_lease(f, "k", 1, "v", 1, 0, NULL) == FLOYD_INVALID_ARGUMENT, "write: lease 0");
    CHECK(floyd_write_with_lease(f, "k", 1, "v", 1, 987654, NULL) == FLOYD_NOT_FOUND, "write: unknown lease");
    CHECK(!present(f, "k"), "nothing written");
}

int main(void) {
    if (open_cluster("c-lease-test")) {
        leader = wait_for_leader();
        CHECK(leader >= 0, "a leader is elected and known everywhere");
        if (leader >= 0) {
            follower = (leader + 1) % NODES;
            test_expiry();
            test_revoke_and_txn();
            test_bad_input();
        }
    }
    return close_cluster();
}
