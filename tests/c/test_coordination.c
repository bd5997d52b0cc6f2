/*
 * The coordination calls of the C API on a 3-node cluster in one process:
 * revisions (floyd_read_meta), compare-and-swap (floyd_write_if,
 * floyd_delete_if), transactions (floyd_txn_*), range scans paged with a
 * limit (floyd_scan, floyd_prefix_end, floyd_kv_list_*), floyd_count, and
 * bad input for every one of them.
 * Prints one line per check ("ok N - what") and "N passed, M failed" at the end.
 */
#include "test_cluster.h"

static int leader = -1, follower = -1, other = -1;

/* floyd_read of `key` equals `want` (NULL: NOT_FOUND). */
static int read_is(floyd_t *f, const char *key, const char *want) {
    char *v = NULL;
    size_t n = 0;
    int rc;
    RETRY(rc, floyd_read(f, key, strlen(key), &v, &n, NULL));
    int ok = want ? rc == FLOYD_OK && n == strlen(want) && memcmp(v, want, n) == 0 : rc == FLOYD_NOT_FOUND;
    floyd_free(v);
    return ok;
}

/* The group's revision now: what an empty transaction answers (0 on failure). */
static uint64_t group_revision(floyd_t *f) {
    floyd_txn_t *t = floyd_txn_new();
    uint64_t rev = 0;
    int rc;
    RETRY(rc, floyd_txn_commit(f, t, NULL, NULL, &rev, NULL));
    floyd_txn_free(t);
    return rc == FLOYD_OK ? rev : 0;
}

static int meta_is(floyd_kv_meta_t m, uint64_t create, uint64_t mod, uint64_t version) {
    return m.create_revision == create && m.mod_revision == mod && m.version == version && m.lease == 0;
}

/* Entry i of `list` is (key, value) with those revisions. */
static int entry_is(const floyd_kv_list_t *list, size_t i, const char *key, const char *value, uint64_t create,
                    uint64_t mod, uint64_t version) {
    const char *k = NULL, *v = NULL;
    size_t kl = 0, vl = 0;
    floyd_kv_meta_t m;
    memset(&m, 0xAB, sizeof m);
    if (floyd_kv_list_get(list, i, &k, &kl, &v, &vl, &m) != FLOYD_OK) return 0;
    return kl == strlen(key) && memcmp(k, key, kl) == 0 && vl == strlen(value) && memcmp(v, value, vl) == 0 &&
           meta_is(m, create, mod, version);
}

static void test_codes(void) {
    CHECK(FLOYD_CONFLICT == 14 && FLOYD_COMPACTED == 15, "FLOYD_CONFLICT is 14, FLOYD_COMPACTED 15");
    CHECK(strcmp(floyd_status_str(FLOYD_CONFLICT), "CONFLICT") == 0, "status_str(14) is CONFLICT");
    CHECK(strcmp(floyd_status_str(FLOYD_COMPACTED), "COMPACTED") == 0, "status_str(15) is COMPACTED");
    CHECK(strcmp(floyd_status_str(16), "UNKNOWN") == 0, "status_str(16) is UNKNOWN");
    CHECK(FLOYD_CMP_EQUAL == 0 && FLOYD_CMP_NOT_EQUAL == 1 && FLOYD_CMP_LESS == 2 && FLOYD_CMP_GREATER == 3,
          "FLOYD_CMP_* are 0..3");
    CHECK(FLOYD_TXN_ELSE == 0 && FLOYD_TXN_THEN == 1, "FLOYD_TXN_ELSE 0, FLOYD_TXN_THEN 1");
    CHECK(sizeof(floyd_kv_meta_t) == 4 * sizeof(uint64_t), "floyd_kv_meta_t is four uint64_t");
}

static int prefix_end_is(const char *prefix, size_t len, const char *want, size_t want_len) {
    char *end = NULL;
    size_t n = 99;
    if (floyd_prefix_end(prefix, len, &end, &n) != FLOYD_OK || end == NULL) return 0;
    int ok = n == want_len && memcmp(end, want, n) == 0 && end[n] == '\0';
    floyd_free(end);
    return ok;
}

static void test_prefix_end(void) {
    CHECK(prefix_end_is("a/", 2, "a0", 2), "prefix_end(\"a/\") is \"a0\"");
    CHECK(prefix_end_is("a\xff", 2, "b", 1), "prefix_end(\"a\\xff\") is \"b\"");
    CHECK(prefix_end_is("a\0", 2, "a\1", 2), "prefix_end of a prefix ending in NUL");
    CHECK(prefix_end_is("\xff\xff", 2, "", 0), "prefix_end of 0xff bytes only is empty (to the last key)");
    CHECK(prefix_end_is(NULL, 0, "", 0), "prefix_end of the empty prefix (NULL, 0) is empty");
    char *end = (char *)0x1;
    size_t n = 7;
    CHECK(floyd_prefix_end(NULL, 3, &end, &n) == FLOYD_INVALID_ARGUMENT && end == (char *)0x1 && n == 7,
          "prefix_end: NULL prefix with a length is INVALID_ARGUMENT, outputs untouched");
    CHECK(floyd_prefix_end("a", 1, NULL, &n) == FLOYD_INVALID_ARGUMENT, "prefix_end: NULL end");
    CHECK(floyd_prefix_end("a", 1, &end, NULL) == FLOYD_INVALID_ARGUMENT, "prefix_end: NULL end_len");
}

/* Compare-and-swap through two followers: create, conflict, update, stale
 * update, stale and current delete, recreate. */
static void test_compare_and_swap(void) {
    floyd_t *f = nodes[follower], *o = nodes[other], *l = nodes[leader];
    uint64_t created = 0, next = 0, again = 0, untouched = 4242;
    char *msg = NULL;
    int rc;
    RETRY(rc, floyd_write_if(f, "cfg", 3, "v1", 2, 0, &created, NULL));
    CHECK(rc == FLOYD_OK && created > 0, "write_if with 0 creates an absent key (through a follower)");
    rc = floyd_write_if(o, "cfg", 3, "again", 5, 0, &untouched, &msg);
    CHECK(rc == FLOYD_CONFLICT, "write_if with 0 again: CONFLICT (through another node)");
    CHECK(msg != NULL && untouched == 4242, "CONFLICT sets errmsg and leaves new_revision untouched");
    floyd_free(msg);
    msg = NULL;

    char *value = NULL;
    size_t len = 0;
    floyd_kv_meta_t meta;
    memset(&meta, 0xAB, sizeof meta);
    RETRY(rc, floyd_read_meta(o, "cfg", 3, &value, &len, &meta, NULL));
    floyd_free(value);
    value = NULL;
    rc = floyd_read_meta(o, "cfg", 3, &value, &len, &meta, &msg);
    CHECK(rc == FLOYD_OK && msg == NULL, "read_meta on another node (no message on OK)");
    CHECK(value && len == 2 && memcmp(value, "v1", 2) == 0 && value[2] == '\0',
          "read_meta: the value, NUL-terminated");
    CHECK(meta_is(meta, created, created, 1), "read_meta: create == mod == the write's revision, version 1");
    floyd_free(value);
    value = NULL;

    CHECK(floyd_write_if(o, "cfg", 3, "v2", 2, created, &next, NULL) == FLOYD_OK,
          "write_if with the current mod revision succeeds");
    CHECK(next == created + 1, "the group's revision grew by one");
    CHECK(floyd_write_if(f, "cfg", 3, "lost", 4, created, NULL, NULL) == FLOYD_CONFLICT,
          "write_if with a stale mod revision: CONFLICT");
    CHECK(read_is(l, "cfg", "v2"), "the stale write wrote nothing");
    CHECK(floyd_read_meta(f, "cfg", 3, &value, &len, &meta, NULL) == FLOYD_OK && meta_is(meta, created, next, 2),
          "after an update: create kept, mod the update's, version 2");
    floyd_free(value);
    value = NULL;

    CHECK(floyd_delete_if(f, "cfg", 3, created, &msg) == FLOYD_CONFLICT && msg != NULL,
          "delete_if with a stale revision: CONFLICT with a message");
    floyd_free(msg);
    msg = NULL;
    CHECK(read_is(l, "cfg", "v2"), "the stale delete deleted nothing");
    CHECK(floyd_delete_if(o, "cfg", 3, 0, NULL) == FLOYD_CONFLICT, "delete_if with 0 of a present key: CONFLICT");
    CHECK(floyd_delete_if(f, "cfg", 3, next, NULL) == FLOYD_OK, "delete_if with the current revision");
    value = (char *)0x1;
    len = 77;
    memset(&meta, 0xAB, sizeof meta);
    CHECK(floyd_read_meta(o, "cfg", 3, &value, &len, &meta, &msg) == FLOYD_NOT_FOUND && msg != NULL,
          "read_meta of the deleted key: NOT_FOUND with a message");
    CHECK(value == (char *)0x1 && len == 77 && meta.version == 0xABABABABABABABABull,
          "NOT_FOUND writes no output");
    floyd_free(msg);
    msg = NULL;
    value = NULL;
    CHECK(floyd_delete_if(f, "cfg", 3, 0, NULL) == FLOYD_OK, "delete_if with 0 of an absent key: OK (nothing)");

    CHECK(floyd_write_if(o, "cfg", 3, "v3", 2, 0, &again, NULL) == FLOYD_OK && again == next + 2,
          "created again with 0 (the delete counted one revision, the refusals none)");
    CHECK(floyd_read_meta(f, "cfg", 3, &value, &len, &meta, NULL) == FLOYD_OK && meta_is(meta, again, again, 1),
          "a key created again starts over: version 1, create revision new");
    floyd_free(value);
    value = NULL;

    /* A plain floyd_write counts a revision too, and write_if sees it. */
    CHECK(floyd_write(l, "cfg", 3, "plain", 5, NULL) == FLOYD_OK, "a plain floyd_write");
    CHECK(floyd_read_meta(l, "cfg", 3, &value, &len, &meta, NULL) == FLOYD_OK &&
              meta_is(meta, again, again + 1, 2),
          "a plain write is counted: mod revision + 1, version 2");
    floyd_free(value);
    value = NULL;
    CHECK(floyd_write_if(f, "cfg", 3, "v4", 2, again, NULL, NULL) == FLOYD_CONFLICT,
          "write_if with the revision before the plain write: CONFLICT");
    CHECK(floyd_write_if(f, "cfg", 3, NULL, 0, again + 1, NULL, NULL) == FLOYD_OK,
          "write_if of an empty value (NULL, 0), NULL new_revision");
    CHECK(floyd_read_meta(o, "cfg", 3, &value, &len, &meta, NULL) == FLOYD_OK && len == 0 && value &&
              value[0] == '\0' && meta.version == 3,
          "read_meta of an empty value");
    floyd_free(value);
    value = NULL;

    const char key[] = {'b', '\0', 'k'};
    const char val[] = {'\0', 'v', '\0'};
    uint64_t rb = 0;
    CHECK(floyd_write_if(f, key, sizeof key, val, sizeof val, 0, &rb, NULL) == FLOYD_OK,
          "write_if of a key and value with NUL bytes");
    CHECK(floyd_read_meta(l, key, sizeof key, &value, &len, &meta, NULL) == FLOYD_OK && len == sizeof val &&
              memcmp(value, val, len) == 0 && meta_is(meta, rb, rb, 1),
          "read_meta of the binary key");
    floyd_free(value);
    value = NULL;
    CHECK(floyd_read_meta(l, "b", 1, &value, &len, &meta, NULL) == FLOYD_NOT_FOUND,
          "the binary key was not truncated at its NUL");
}

static void test_bad_input(void) {
    floyd_t *f = nodes[follower];
    char *value = NULL, *msg = NULL;
    size_t len = 0;
    uint64_t n = 0;
    floyd_kv_meta_t meta;
    floyd_kv_list_t *list = NULL;

    CHECK(floyd_read_meta(NULL, "k", 1, &value, &len, &meta, &msg) == FLOYD_INVALID_ARGUMENT && msg,
          "read_meta: NULL handle, with a message");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_read_meta(f, "", 0, &value, &len, &meta, NULL) == FLOYD_INVALID_ARGUMENT, "read_meta: empty key");
    CHECK(floyd_read_meta(f, NULL, 2, &value, &len, &meta, NULL) == FLOYD_INVALID_ARGUMENT,
          "read_meta: NULL key with a length");
    CHECK(floyd_read_meta(f, "k", 1, NULL, &len, &meta, NULL) == FLOYD_INVALID_ARGUMENT, "read_meta: NULL value");
    CHECK(floyd_read_meta(f, "k", 1, &value, NULL, &meta, NULL) == FLOYD_INVALID_ARGUMENT,
          "read_meta: NULL value_len");
    CHECK(floyd_read_meta(f, "k", 1, &value, &len, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "read_meta: NULL meta");

    CHECK(floyd_write_if(NULL, "k", 1, "v", 1, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT, "write_if: NULL handle");
    CHECK(floyd_write_if(f, "", 0, "v", 1, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT, "write_if: empty key");
    CHECK(floyd_write_if(f, NULL, 1, "v", 1, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT,
          "write_if: NULL key with a length");
    CHECK(floyd_write_if(f, "k", 1, NULL, 1, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT,
          "write_if: NULL value with a length");
    size_t big = (16u << 20) + 1;
    char *huge = calloc(big, 1);
    CHECK(huge && floyd_write_if(f, "big", 3, huge, big, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT,
          "write_if: a value over 16 MiB");
    free(huge);
    CHECK(floyd_delete_if(NULL, "k", 1, 0, NULL) == FLOYD_INVALID_ARGUMENT, "delete_if: NULL handle");
    CHECK(floyd_delete_if(f, "", 0, 0, NULL) == FLOYD_INVALID_ARGUMENT, "delete_if: empty key");
    CHECK(floyd_delete_if(f, NULL, 4, 0, NULL) == FLOYD_INVALID_ARGUMENT, "delete_if: NULL key with a length");

    CHECK(floyd_scan(NULL, "a", 1, "b", 1, 0, &list, &msg) == FLOYD_INVALID_ARGUMENT && msg && list == NULL,
          "scan: NULL handle, with a message");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_scan(f, "a", 1, "b", 1, 0, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "scan: NULL out");
    CHECK(floyd_scan(f, NULL, 1, "b", 1, 0, &list, NULL) == FLOYD_INVALID_ARGUMENT && list == NULL,
          "scan: NULL start with a length");
    size_t over = 70000;
    char *long_bound = calloc(over, 1);
    CHECK(long_bound && floyd_scan(f, long_bound, over, NULL, 0, 0, &list, NULL) == FLOYD_INVALID_ARGUMENT &&
              list == NULL,
          "scan: a start bound over 64 KiB");
    CHECK(long_bound && floyd_scan(f, "a", 1, long_bound, over, 0, &list, NULL) == FLOYD_INVALID_ARGUMENT &&
              list == NULL,
          "scan: an end bound over 64 KiB");
    CHECK(long_bound && floyd_count(f, long_bound, over, NULL, 0, &n, NULL) == FLOYD_INVALID_ARGUMENT,
          "count: a bound over 64 KiB");
    free(long_bound);
    CHECK(floyd_count(NULL, "a", 1, "b", 1, &n, NULL) == FLOYD_INVALID_ARGUMENT, "count: NULL handle");
    CHECK(floyd_count(f, "a", 1, "b", 1, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "count: NULL count");
    CHECK(floyd_count(f, NULL, 1, "b", 1, &n, NULL) == FLOYD_INVALID_ARGUMENT, "count: NULL start with a length");

    /* Lists: NULL-safe accessors and free, index checks. */
    CHECK(floyd_kv_list_len(NULL) == 0, "kv_list_len(NULL) is 0");
    CHECK(!floyd_kv_list_more(NULL), "kv_list_more(NULL) is false");
    CHECK(floyd_kv_list_revision(NULL) == 0, "kv_list_revision(NULL) is 0");
    const char *k = NULL;
    size_t kl = 0;
    CHECK(floyd_kv_list_get(NULL, 0, &k, &kl, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "kv_list_get(NULL)");
    floyd_kv_list_free(NULL);
    CHECK(1, "kv_list_free(NULL) is a no-op");
    int rc;
    RETRY(rc, floyd_scan(f, "no-such-range/", 14, "no-such-range0", 14, 0, &list, NULL));
    CHECK(rc == FLOYD_OK && list && floyd_kv_list_len(list) == 0 && !floyd_kv_list_more(list),
          "scan of an empty range: an empty list");
    k = (const char *)0x1;
    CHECK(floyd_kv_list_get(list, 0, &k, &kl, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT && k == (const char *)0x1,
          "kv_list_get past the end: INVALID_ARGUMENT, outputs untouched");
    CHECK(floyd_kv_list_get(list, SIZE_MAX, NULL, NULL, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT,
          "kv_list_get(SIZE_MAX)");
    floyd_kv_list_free(list);
    list = NULL;

    /* Transactions: bad arguments to the builders. */
    floyd_txn_free(NULL);
    CHECK(1, "txn_free(NULL) is a no-op");
    floyd_txn_t *t = floyd_txn_new();
    CHECK(t != NULL, "txn_new");
    CHECK(floyd_txn_if_value(NULL, "k", 1, FLOYD_CMP_EQUAL, "v", 1) == FLOYD_INVALID_ARGUMENT,
          "txn_if_value: NULL txn");
    CHECK(floyd_txn_if_value(t, "", 0, FLOYD_CMP_EQUAL, "v", 1) == FLOYD_INVALID_ARGUMENT,
          "txn_if_value: empty key");
    CHECK(floyd_txn_if_value(t, NULL, 1, FLOYD_CMP_EQUAL, "v", 1) == FLOYD_INVALID_ARGUMENT,
          "txn_if_value: NULL key with a length");
    CHECK(floyd_txn_if_value(t, "k", 1, FLOYD_CMP_EQUAL, NULL, 1) == FLOYD_INVALID_ARGUMENT,
          "txn_if_value: NULL value with a length");
    CHECK(floyd_txn_if_value(t, "k", 1, 4, "v", 1) == FLOYD_INVALID_ARGUMENT, "txn_if_value: unknown cmp 4");
    CHECK(floyd_txn_if_value(t, "k", 1, -1, "v", 1) == FLOYD_INVALID_ARGUMENT, "txn_if_value: unknown cmp -1");
    CHECK(floyd_txn_if_version(NULL, "k", 1, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_version: NULL txn");
    CHECK(floyd_txn_if_version(t, "", 0, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT, "txn_if_version: empty key");
    CHECK(floyd_txn_if_version(t, "k", 1, 17, 0) == FLOYD_INVALID_ARGUMENT, "txn_if_version: unknown cmp");
    CHECK(floyd_txn_if_mod_revision(NULL, "k", 1, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_mod_revision: NULL txn");
    CHECK(floyd_txn_if_mod_revision(t, NULL, 0, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_mod_revision: empty key");
    CHECK(floyd_txn_if_mod_revision(t, "k", 1, 4, 0) == FLOYD_INVALID_ARGUMENT, "txn_if_mod_revision: unknown cmp");
    CHECK(floyd_txn_if_create_revision(NULL, "k", 1, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_create_revision: NULL txn");
    CHECK(floyd_txn_if_create_revision(t, "", 0, FLOYD_CMP_EQUAL, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_create_revision: empty key");
    CHECK(floyd_txn_if_create_revision(t, "k", 1, -3, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_if_create_revision: unknown cmp");
    CHECK(floyd_txn_put(NULL, FLOYD_TXN_THEN, "k", 1, "v", 1, 0) == FLOYD_INVALID_ARGUMENT, "txn_put: NULL txn");
    CHECK(floyd_txn_put(t, FLOYD_TXN_THEN, "", 0, "v", 1, 0) == FLOYD_INVALID_ARGUMENT, "txn_put: empty key");
    CHECK(floyd_txn_put(t, FLOYD_TXN_THEN, "k", 1, NULL, 1, 0) == FLOYD_INVALID_ARGUMENT,
          "txn_put: NULL value with a length");
    CHECK(floyd_txn_put(t, 2, "k", 1, "v", 1, 0) == FLOYD_INVALID_ARGUMENT, "txn_put: unknown branch 2");
    CHECK(floyd_txn_put(t, -1, "k", 1, "v", 1, 0) == FLOYD_INVALID_ARGUMENT, "txn_put: unknown branch -1");
    CHECK(floyd_txn_delete(NULL, FLOYD_TXN_THEN, "k", 1) == FLOYD_INVALID_ARGUMENT, "txn_delete: NULL txn");
    CHECK(floyd_txn_delete(t, FLOYD_TXN_ELSE, "", 0) == FLOYD_INVALID_ARGUMENT, "txn_delete: empty key");
    CHECK(floyd_txn_delete(t, 7, "k", 1) == FLOYD_INVALID_ARGUMENT, "txn_delete: unknown branch");
    CHECK(floyd_txn_get(NULL, FLOYD_TXN_THEN, "k", 1) == FLOYD_INVALID_ARGUMENT, "txn_get: NULL txn");
    CHECK(floyd_txn_get(t, FLOYD_TXN_THEN, NULL, 0) == FLOYD_INVALID_ARGUMENT, "txn_get: empty key");
    CHECK(floyd_txn_get(t, 2, "k", 1) == FLOYD_INVALID_ARGUMENT, "txn_get: unknown branch");
    /* The refusals above added nothing: t is still empty and runs its THEN branch. */
    bool ok = false;
    uint64_t rev = 0;
    RETRY(rc, floyd_txn_commit(f, t, &ok, &list, &rev, NULL));
    CHECK(rc == FLOYD_OK && ok && rev > 0 && list && floyd_kv_list_len(list) == 0,
          "the refused builder calls added nothing: an empty txn succeeds with no gets");
    CHECK(floyd_kv_list_revision(list) == rev && !floyd_kv_list_more(list), "the gets list has the txn's revision");
    floyd_kv_list_free(list);
    list = NULL;
    CHECK(floyd_txn_commit(NULL, t, &ok, &list, &rev, &msg) == FLOYD_INVALID_ARGUMENT && msg && list == NULL,
          "txn_commit: NULL handle, with a message");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_txn_commit(f, NULL, &ok, &list, &rev, NULL) == FLOYD_INVALID_ARGUMENT && list == NULL,
          "txn_commit: NULL txn");
    floyd_txn_free(t);
}

/* Bounds checked at commit: too many operations or comparisons, a key
 * written twice in one branch; a put naming a lease. Nothing is written. */
static void test_txn_limits(void) {
    floyd_t *f = nodes[follower];
    char key[32], *msg = NULL;
    floyd_kv_list_t *gets = NULL;
    bool ok = false;
    uint64_t rev = 0;
    int rc;

    floyd_txn_t *t = floyd_txn_new();
    for (int i = 0; i < 128; i++) {
        snprintf(key, sizeof key, "lim/%d", i);
        floyd_txn_get(t, FLOYD_TXN_THEN, key, strlen(key));
    }
    RETRY(rc, floyd_txn_commit(f, t, &ok, &gets, &rev, NULL));
    CHECK(rc == FLOYD_OK && ok && floyd_kv_list_len(gets) == 0, "128 operations in a branch: OK");
    floyd_kv_list_free(gets);
    gets = NULL;
    CHECK(floyd_txn_put(t, FLOYD_TXN_THEN, "lim/new", 7, "v", 1, 0) == FLOYD_OK,
          "the builder takes a 129th operation");
    rc = floyd_txn_commit(f, t, &ok, &gets, &rev, &msg);
    CHECK(rc == FLOYD_INVALID_ARGUMENT && msg && strstr(msg, "128") && gets == NULL,
          "129 operations in THEN: INVALID_ARGUMENT at commit, naming the limit");
    floyd_free(msg);
    msg = NULL;
    floyd_txn_free(t);

    t = floyd_txn_new();
    for (int i = 0; i < 129; i++) {
        snprintf(key, sizeof key, "lim/%d", i);
        floyd_txn_delete(t, FLOYD_TXN_ELSE, key, strlen(key));
    }
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT,
          "129 operations in ELSE (never run): INVALID_ARGUMENT all the same");
    floyd_txn_free(t);

    t = floyd_txn_new();
    for (int i = 0; i < 129; i++) {
        snprintf(key, sizeof key, "lim/%d", i);
        floyd_txn_if_version(t, key, strlen(key), FLOYD_CMP_EQUAL, 0);
    }
    floyd_txn_put(t, FLOYD_TXN_THEN, "lim/cmp", 7, "v", 1, 0);
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "129 comparisons: INVALID_ARGUMENT");
    floyd_txn_free(t);
    CHECK(read_is(nodes[leader], "lim/new", NULL) && read_is(nodes[leader], "lim/cmp", NULL),
          "the refused transactions wrote nothing");

    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "dup/x", 5, "1", 1, 0);
    floyd_txn_put(t, FLOYD_TXN_THEN, "dup/other", 9, "1", 1, 0);
    floyd_txn_put(t, FLOYD_TXN_THEN, "dup/x", 5, "2", 1, 0);
    rc = floyd_txn_commit(f, t, &ok, NULL, NULL, &msg);
    CHECK(rc == FLOYD_INVALID_ARGUMENT && msg && strstr(msg, "twice"), "a key put twice in one branch: INVALID_ARGUMENT");
    floyd_free(msg);
    msg = NULL;
    floyd_txn_free(t);
    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_ELSE, "dup/x", 5, "1", 1, 0);
    floyd_txn_delete(t, FLOYD_TXN_ELSE, "dup/x", 5);
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT,
          "a key put and deleted in one branch: INVALID_ARGUMENT");
    floyd_txn_free(t);
    CHECK(read_is(nodes[leader], "dup/x", NULL) && read_is(nodes[leader], "dup/other", NULL),
          "the duplicate-key transactions wrote nothing");
    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "dup/x", 5, "then", 4, 0);
    floyd_txn_get(t, FLOYD_TXN_THEN, "dup/x", 5);
    floyd_txn_put(t, FLOYD_TXN_ELSE, "dup/x", 5, "else", 4, 0);
    RETRY(rc, floyd_txn_commit(f, t, &ok, &gets, &rev, NULL));
    CHECK(rc == FLOYD_OK && ok && floyd_kv_list_len(gets) == 1 && entry_is(gets, 0, "dup/x", "then", rev, rev, 1),
          "one key in each branch, and a get after the put: allowed (the get sees the put)");
    floyd_kv_list_free(gets);
    gets = NULL;
    floyd_txn_free(t);

    /* Leases are not implemented: a put naming one answers NOT_FOUND. */
    uint64_t before = group_revision(f);
    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "lease/plain", 11, "1", 1, 0);
    CHECK(floyd_txn_put(t, FLOYD_TXN_THEN, "lease/leased", 12, "1", 1, 42) == FLOYD_OK,
          "the builder takes a put naming a lease");
    uint64_t untouched = 4242;
    RETRY(rc, floyd_txn_commit(f, t, NULL, NULL, NULL, NULL));
    CHECK(rc == FLOYD_NOT_FOUND, "a put naming lease 42: NOT_FOUND");
    rc = floyd_txn_commit(f, t, &ok, &gets, &untouched, &msg);
    CHECK(rc == FLOYD_NOT_FOUND && msg && gets == NULL && untouched == 4242,
          "committed again: NOT_FOUND with a message, no outputs");
    floyd_free(msg);
    msg = NULL;
    floyd_txn_free(t);
    CHECK(read_is(nodes[leader], "lease/plain", NULL) && read_is(nodes[leader], "lease/leased", NULL),
          "the leased transaction wrote nothing, not even its lease-free put");
    CHECK(before > 0 && group_revision(f) == before, "the leased transactions left the group's revision");
    t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "lease/plain", 11, "1", 1, 0);
    floyd_txn_put(t, FLOYD_TXN_ELSE, "lease/leased", 12, "1", 1, 7);
    RETRY(rc, floyd_txn_commit(f, t, &ok, NULL, NULL, NULL));
    CHECK(rc == FLOYD_OK && ok && read_is(nodes[leader], "lease/plain", "1"),
          "a lease named only in the branch not taken: OK");
    floyd_txn_free(t);
}

/* A transaction with every kind of comparison and both branches, committed
 * through a follower; then one whose comparison fails. */
static void test_txn(void) {
    floyd_t *f = nodes[follower], *o = nodes[other];
    uint64_t ra = 0, rb = 0, rt = 0, rev = 0;
    bool ok = false;
    floyd_kv_list_t *gets = NULL;
    int rc;
    RETRY(rc, floyd_write_if(o, "acct/a", 6, "10", 2, 0, &ra, NULL));
    CHECK(rc == FLOYD_OK, "txn setup: acct/a");
    CHECK(floyd_write_if(o, "acct/b", 6, "5", 1, 0, &rb, NULL) == FLOYD_OK && rb == ra + 1, "txn setup: acct/b");

    floyd_txn_t *t = floyd_txn_new();
    int built = floyd_txn_if_value(t, "acct/a", 6, FLOYD_CMP_EQUAL, "10", 2) |
                floyd_txn_if_version(t, "acct/a", 6, FLOYD_CMP_EQUAL, 1) |
                floyd_txn_if_mod_revision(t, "acct/a", 6, FLOYD_CMP_EQUAL, ra) |
                floyd_txn_if_create_revision(t, "acct/a", 6, FLOYD_CMP_LESS, rb) |
                floyd_txn_if_value(t, "acct/b", 6, FLOYD_CMP_GREATER, "4", 1) |
                floyd_txn_if_mod_revision(t, "acct/b", 6, FLOYD_CMP_GREATER, ra) |
                floyd_txn_if_version(t, "acct/missing", 12, FLOYD_CMP_EQUAL, 0) |
                floyd_txn_if_create_revision(t, "acct/missing", 12, FLOYD_CMP_EQUAL, 0) |
                floyd_txn_if_value(t, "acct/missing", 12, FLOYD_CMP_NOT_EQUAL, "x", 1) |
                floyd_txn_put(t, FLOYD_TXN_THEN, "acct/a", 6, "7", 1, 0) |
                floyd_txn_put(t, FLOYD_TXN_THEN, "acct/c", 6, "3", 1, 0) |
                floyd_txn_delete(t, FLOYD_TXN_THEN, "acct/b", 6) |
                floyd_txn_get(t, FLOYD_TXN_THEN, "acct/a", 6) |
                floyd_txn_get(t, FLOYD_TXN_THEN, "acct/b", 6) |
                floyd_txn_get(t, FLOYD_TXN_THEN, "acct/c", 6) |
                floyd_txn_put(t, FLOYD_TXN_ELSE, "acct/else", 9, "ran", 3, 0) |
                floyd_txn_get(t, FLOYD_TXN_ELSE, "acct/a", 6);
    CHECK(built == FLOYD_OK, "build a txn: every comparison kind, puts, a delete, gets in both branches");
    CHECK(floyd_txn_commit(f, t, &ok, &gets, &rt, NULL) == FLOYD_OK, "txn_commit through a follower");
    CHECK(ok, "every comparison held: succeeded");
    CHECK(rt == rb + 1, "the whole txn is one revision");
    CHECK(floyd_kv_list_len(gets) == 2, "gets: the deleted key is left out");
    CHECK(entry_is(gets, 0, "acct/a", "7", ra, rt, 2), "gets[0]: acct/a, its new value, version 2, mod the txn's");
    CHECK(entry_is(gets, 1, "acct/c", "3", rt, rt, 1), "gets[1]: acct/c, created by the txn");
    CHECK(floyd_kv_list_revision(gets) == rt && !floyd_kv_list_more(gets), "gets: revision and more");
    const char *k = NULL;
    size_t kl = 0;
    CHECK(floyd_kv_list_get(gets, 1, &k, &kl, NULL, NULL, NULL) == FLOYD_OK && kl == 6 && memcmp(k, "acct/c", 6) == 0,
          "kv_list_get with NULL value, value_len and meta");
    CHECK(floyd_kv_list_get(gets, 0, NULL, NULL, NULL, NULL, NULL) == FLOYD_OK, "kv_list_get with every output NULL");
    CHECK(floyd_kv_list_get(gets, 2, &k, &kl, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT,
          "kv_list_get at len: INVALID_ARGUMENT");
    floyd_kv_list_free(gets);
    gets = NULL;
    CHECK(read_is(nodes[leader], "acct/b", NULL) && read_is(nodes[leader], "acct/else", NULL),
          "the delete ran, the ELSE branch did not");

    /* The same txn again: now acct/a is "7" at version 2, so ELSE runs. */
    CHECK(floyd_txn_commit(o, t, &ok, &gets, &rev, NULL) == FLOYD_OK && !ok, "committed again: ELSE runs");
    CHECK(rev == rt + 1, "the ELSE branch's put counts one revision");
    CHECK(floyd_kv_list_len(gets) == 1 && entry_is(gets, 0, "acct/a", "7", ra, rt, 2),
          "the ELSE branch's get, nothing of THEN's");
    floyd_kv_list_free(gets);
    gets = NULL;
    CHECK(read_is(nodes[leader], "acct/else", "ran") && read_is(nodes[leader], "acct/a", "7"),
          "ELSE wrote, THEN did not");
    floyd_txn_free(t);

    /* A failing comparison and an ELSE with only gets: nothing changes, the revision stays. */
    t = floyd_txn_new();
    floyd_txn_if_value(t, "acct/a", 6, FLOYD_CMP_LESS, "5", 1); /* "7" < "5": no */
    floyd_txn_put(t, FLOYD_TXN_THEN, "acct/a", 6, "x", 1, 0);
    floyd_txn_get(t, FLOYD_TXN_ELSE, "acct/c", 6);
    floyd_txn_get(t, FLOYD_TXN_ELSE, "acct/nothing", 12);
    floyd_txn_get(t, FLOYD_TXN_ELSE, "acct/a", 6);
    ok = true;
    CHECK(floyd_txn_commit(f, t, &ok, &gets, &rev, NULL) == FLOYD_OK && !ok, "a failed comparison: not succeeded");
    CHECK(rev == rt + 1, "a read-only branch leaves the revision");
    CHECK(floyd_kv_list_len(gets) == 2 && entry_is(gets, 0, "acct/c", "3", rt, rt, 1) &&
              entry_is(gets, 1, "acct/a", "7", ra, rt, 2),
          "the gets come in order, the missing key left out");
    floyd_kv_list_free(gets);
    gets = NULL;
    CHECK(floyd_txn_commit(f, t, NULL, NULL, NULL, NULL) == FLOYD_OK, "txn_commit with every output NULL");
    floyd_txn_free(t);

    /* A missing key is neither less nor greater than any value. */
    t = floyd_txn_new();
    floyd_txn_if_value(t, "acct/missing", 12, FLOYD_CMP_LESS, "zzz", 3);
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_OK && !ok, "missing key LESS than a value: false");
    floyd_txn_free(t);
    t = floyd_txn_new();
    floyd_txn_if_value(t, "acct/missing", 12, FLOYD_CMP_GREATER, NULL, 0);
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_OK && !ok,
          "missing key GREATER than the empty value: false");
    floyd_txn_free(t);
    t = floyd_txn_new();
    floyd_txn_if_value(t, "acct/missing", 12, FLOYD_CMP_EQUAL, NULL, 0);
    CHECK(floyd_txn_commit(f, t, &ok, NULL, NULL, NULL) == FLOYD_OK && !ok,
          "missing key EQUAL to the empty value: false");
    floyd_txn_free(t);
    t = floyd_txn_new();
    floyd_txn_if_mod_revision(t, "acct/c", 6, FLOYD_CMP_NOT_EQUAL, rt);
    floyd_txn_delete(t, FLOYD_TXN_ELSE, "acct/c", 6);
    floyd_txn_delete(t, FLOYD_TXN_ELSE, "acct/never", 10);
    CHECK(floyd_txn_commit(nodes[leader], t, &ok, NULL, &rev, NULL) == FLOYD_OK && !ok && rev == rt + 2,
          "a delete in ELSE counts one revision; deleting a missing key none");
    CHECK(read_is(nodes[other], "acct/c", NULL), "acct/c is gone");
    floyd_txn_free(t);
}

/* 23 keys under "dir/" (and neighbours outside) paged through 5 at a time. */
static void test_scan(void) {
    floyd_t *f = nodes[follower], *o = nodes[other];
    char key[32];
    int rc;
    floyd_txn_t *t = floyd_txn_new();
    for (int i = 0; i < 23; i++) {
        snprintf(key, sizeof key, "dir/%02d", i);
        floyd_txn_put(t, FLOYD_TXN_THEN, key, strlen(key), key + 4, 2, 0);
    }
    floyd_txn_put(t, FLOYD_TXN_THEN, "dir.", 4, "before", 6, 0);
    floyd_txn_put(t, FLOYD_TXN_THEN, "dir0", 4, "after", 5, 0);
    uint64_t rt = 0;
    bool ok = false;
    RETRY(rc, floyd_txn_commit(o, t, &ok, NULL, &rt, NULL));
    CHECK(rc == FLOYD_OK && ok, "put 25 keys in one txn");
    floyd_txn_free(t);

    char *end = NULL;
    size_t end_len = 0;
    CHECK(floyd_prefix_end("dir/", 4, &end, &end_len) == FLOYD_OK && end_len == 4 && memcmp(end, "dir0", 4) == 0,
          "prefix_end(\"dir/\") is \"dir0\"");
    char start[64];
    size_t start_len = 4;
    memcpy(start, "dir/", 4);
    int seen = 0, pages = 0, in_order = 1, sizes_ok = 1, metas_ok = 1, revisions_ok = 1, more_ok = 1;
    for (;;) {
        floyd_kv_list_t *page = NULL;
        RETRY(rc, floyd_scan(f, start, start_len, end, end_len, 5, &page, NULL));
        if (rc != FLOYD_OK) break;
        pages++;
        size_t n = floyd_kv_list_len(page);
        sizes_ok &= n <= 5;
        revisions_ok &= floyd_kv_list_revision(page) == rt;
        for (size_t i = 0; i < n; i++) {
            const char *k = NULL, *v = NULL;
            size_t kl = 0, vl = 0;
            floyd_kv_meta_t m;
            floyd_kv_list_get(page, i, &k, &kl, &v, &vl, &m);
            snprintf(key, sizeof key, "dir/%02d", seen);
            in_order &= kl == strlen(key) && memcmp(k, key, kl) == 0 && vl == 2 && memcmp(v, key + 4, 2) == 0;
            metas_ok &= meta_is(m, rt, rt, 1);
            seen++;
        }
        bool more = floyd_kv_list_more(page);
        /* Pages of 5, 5, 5, 5, 3: more on all but the last. */
        more_ok &= more == (pages < 5);
        if (more && n > 0) {
            const char *k = NULL;
            size_t kl = 0;
            floyd_kv_list_get(page, n - 1, &k, &kl, NULL, NULL, NULL);
            memcpy(start, k, kl);
            start[kl] = '\0'; /* restart after the last key: the key followed by a zero byte */
            start_len = kl + 1;
        }
        floyd_kv_list_free(page);
        if (!more || n == 0 || pages > 10) break;
    }
    CHECK(rc == FLOYD_OK, "scan with a limit of 5 through a follower");
    CHECK(seen == 23 && pages == 5, "paging by more and last key + \"\\0\": 23 keys in 5 pages");
    CHECK(in_order && sizes_ok, "every key once, in order, with its value; no page over the limit");
    CHECK(metas_ok, "every key's meta: created and modified at the txn's revision, version 1");
    CHECK(revisions_ok, "every page's revision is the group's (the txn's)");
    CHECK(more_ok, "more on every page but the last");

    floyd_kv_list_t *all = NULL;
    CHECK(floyd_scan(o, "dir/", 4, end, end_len, 0, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == 23 &&
              !floyd_kv_list_more(all),
          "limit 0: the whole prefix in one page");
    CHECK(entry_is(all, 0, "dir/00", "00", rt, rt, 1) && entry_is(all, 22, "dir/22", "22", rt, rt, 1),
          "the whole prefix: first and last");
    floyd_kv_list_free(all);
    all = NULL;
    CHECK(floyd_scan(f, "dir/05", 6, "dir/10", 6, 0, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == 5 &&
              entry_is(all, 0, "dir/05", "05", rt, rt, 1) && entry_is(all, 4, "dir/09", "09", rt, rt, 1),
          "[dir/05, dir/10): start included, end excluded");
    floyd_kv_list_free(all);
    all = NULL;
    CHECK(floyd_scan(f, "dir/21", 6, NULL, 0, 3, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == 3 &&
              entry_is(all, 0, "dir/21", "21", rt, rt, 1) && entry_is(all, 2, "dir0", "after", rt, rt, 1) &&
              floyd_kv_list_more(all),
          "end NULL: to the last key (the key at the prefix's end is outside the prefix)");
    floyd_kv_list_free(all);
    all = NULL;
    CHECK(floyd_scan(f, "dir/", 4, "dir/", 4, 0, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == 0,
          "start == end: empty");
    floyd_kv_list_free(all);
    all = NULL;
    CHECK(floyd_scan(f, "dir/10", 6, "dir/05", 6, 0, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == 0,
          "start after end: empty");
    floyd_kv_list_free(all);
    all = NULL;

    uint64_t n = 0, everything = 0;
    CHECK(floyd_count(f, "dir/", 4, end, end_len, &n, NULL) == FLOYD_OK && n == 23, "count of the prefix: 23");
    CHECK(floyd_count(o, "dir/05", 6, "dir/10", 6, &n, NULL) == FLOYD_OK && n == 5, "count of [dir/05, dir/10): 5");
    CHECK(floyd_count(f, NULL, 0, NULL, 0, &everything, NULL) == FLOYD_OK && everything >= 25,
          "count of everything (NULL, NULL)");
    CHECK(floyd_scan(f, NULL, 0, NULL, 0, 0, &all, NULL) == FLOYD_OK && floyd_kv_list_len(all) == everything,
          "scan of everything agrees with count");
    floyd_kv_list_free(all);
    all = NULL;
    floyd_free(end);

    /* The list's revision follows the group's: a write, then a scan. */
    uint64_t w = 0;
    CHECK(floyd_write_if(f, "dir/05", 6, "changed", 7, rt, &w, NULL) == FLOYD_OK && w == rt + 1,
          "write_if of a scanned key");
    CHECK(floyd_scan(o, "dir/05", 6, "dir/06", 6, 0, &all, NULL) == FLOYD_OK &&
              floyd_kv_list_revision(all) == w && entry_is(all, 0, "dir/05", "changed", rt, w, 2),
          "kv_list_revision after a write is the write's revision; the key's meta shows it");
    floyd_kv_list_free(all);
}

int main(void) {
    int opened = open_cluster("c-coord-test");
    test_codes();
    test_prefix_end();
    if (opened) {
        leader = wait_for_leader();
        CHECK(leader >= 0, "a leader is elected and known everywhere");
        if (leader >= 0) {
            follower = (leader + 1) % NODES;
            other = (leader + 2) % NODES;
            test_compare_and_swap();
            test_bad_input();
            test_txn_limits();
            test_txn();
            test_scan();
        }
    }
    return close_cluster();
}
