/*
 * Watches through the C API on a 3-node cluster in one process: floyd_watch
 * on every node (events in revision order, each once, puts and deletes, a
 * transaction's changes at one revision), FLOYD_COMPACTED before the
 * history, floyd_unwatch (no call after it returns), the last call with
 * FLOYD_STOPPED at floyd_close, and bad input.
 * Prints one line per check ("ok N - what") and "N passed, M failed" at the end.
 */
#include "test_cluster.h"

#include <pthread.h>

static int leader = -1;

/* What one watch was told (its callback runs on the library's watch thread). */
struct seen {
    pthread_mutex_t mu;
    int events, deletes, calls_after_end, out_of_order;
    uint64_t last_revision;
    int ended; /* the code of the last call, or -1 */
    char last_key[64];
};

static void seen_init(struct seen *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->ended = -1;
}

static void on_change(void *user_data, const floyd_watch_event_t *events, size_t n, int code) {
    struct seen *s = user_data;
    pthread_mutex_lock(&s->mu);
    if (s->ended != -1) s->calls_after_end++;
    if (code != FLOYD_OK) {
        s->ended = code;
    }
    for (size_t i = 0; i < n; i++) {
        if (events[i].mod_revision < s->last_revision) s->out_of_order++;
        s->last_revision = events[i].mod_revision;
        s->events++;
        if (events[i].type == FLOYD_EVENT_DELETE) s->deletes++;
        size_t len = events[i].key_len < sizeof s->last_key - 1 ? events[i].key_len : sizeof s->last_key - 1;
        memcpy(s->last_key, events[i].key, len);
        s->last_key[len] = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

static int count_of(struct seen *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->events;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int wait_count(struct seen *s, int want) {
    double deadline = now_s() + 30;
    while (count_of(s) < want && now_s() < deadline) pause_ms(5);
    return count_of(s) == want;
}

static struct seen seen[NODES], unwatched;

static void test_watch_everywhere(void) {
    floyd_t *f = nodes[leader];
    int rc;
    RETRY(rc, floyd_write(f, "w/warm", 6, "", 0, NULL));
    for (int i = 0; i < NODES; i++) {
        double deadline = now_s() + 30;
        char *v = NULL;
        size_t n = 0;
        while (floyd_dirty_read(nodes[i], "w/warm", 6, &v, &n, NULL) != FLOYD_OK && now_s() < deadline) pause_ms(5);
        floyd_free(v);
    }
    char *end = NULL;
    size_t end_len = 0;
    floyd_prefix_end("w/", 2, &end, &end_len);
    for (int i = 0; i < NODES; i++) {
        uint64_t id = 0;
        seen_init(&seen[i]);
        CHECK(floyd_watch(nodes[i], "w/", 2, end, end_len, 0, on_change, &seen[i], &id, NULL) == FLOYD_OK && id != 0,
              "watch the prefix w/ on a node");
    }
    floyd_free(end);
    for (int k = 0; k < 10; k++) {
        char key[16];
        snprintf(key, sizeof key, "w/%d", k);
        RETRY(rc, floyd_write(nodes[(leader + k) % NODES], key, strlen(key), "v", 1, NULL));
    }
    CHECK(floyd_write(f, "other", 5, "v", 1, NULL) == FLOYD_OK, "a write outside the prefix");
    CHECK(floyd_delete(f, "w/3", 3, NULL) == FLOYD_OK, "a delete");
    floyd_txn_t *t = floyd_txn_new();
    floyd_txn_put(t, FLOYD_TXN_THEN, "w/t1", 4, "1", 1, 0);
    floyd_txn_put(t, FLOYD_TXN_THEN, "w/t2", 4, "2", 1, 0);
    bool ok = false;
    uint64_t txn_rev = 0;
    CHECK(floyd_txn_commit(f, t, &ok, NULL, &txn_rev, NULL) == FLOYD_OK && ok, "a transaction of two puts");
    floyd_txn_free(t);
    for (int i = 0; i < NODES; i++) {
        CHECK(wait_count(&seen[i], 13), "every node delivers the 13 changes under w/, once");
        pthread_mutex_lock(&seen[i].mu);
        CHECK(seen[i].out_of_order == 0 && seen[i].deletes == 1 && seen[i].last_revision == txn_rev &&
                  strcmp(seen[i].last_key, "w/t2") == 0,
              "in revision order, the delete as such, the transaction last at its revision");
        pthread_mutex_unlock(&seen[i].mu);
    }
}

static void test_unwatch_and_compacted(void) {
    floyd_t *f = nodes[leader];
    uint64_t id = 0;
    seen_init(&unwatched);
    CHECK(floyd_watch(f, "u/", 2, NULL, 0, 0, on_change, &unwatched, &id, NULL) == FLOYD_OK, "watch u/...");
    CHECK(floyd_write(f, "u/1", 3, "v", 1, NULL) == FLOYD_OK && wait_count(&unwatched, 1), "sees a change");
    CHECK(floyd_unwatch(f, id) == FLOYD_OK, "unwatch");
    CHECK(floyd_unwatch(f, id) == FLOYD_NOT_FOUND, "unwatch again: NOT_FOUND");
    CHECK(floyd_unwatch(f, 987654321) == FLOYD_NOT_FOUND, "unwatch an unknown id: NOT_FOUND");
    CHECK(floyd_write(f, "u/2", 3, "v", 1, NULL) == FLOYD_OK, "a later change");
    /* Seen by a second watch from the revision before it: the first would have too. */
    struct seen later;
    seen_init(&later);
    uint64_t id2 = 0;
    CHECK(floyd_watch(f, "u/2", 3, NULL, 0, unwatched.last_revision + 1, on_change, &later, &id2, NULL) == FLOYD_OK &&
              wait_count(&later, 1),
          "a watch from a past revision reads the history");
    floyd_unwatch(f, id2);
    CHECK(count_of(&unwatched) == 1 && unwatched.ended == -1, "no call after unwatch, no last call");
    char *msg = NULL;
    CHECK(floyd_watch(f, "", 0, NULL, 0, 1, on_change, &later, &id2, &msg) == FLOYD_COMPACTED && msg,
          "a watch from before the history: FLOYD_COMPACTED");
    floyd_free(msg);
}

static void test_bad_input(void) {
    floyd_t *f = nodes[leader];
    uint64_t id = 0;
    struct seen s;
    seen_init(&s);
    CHECK(floyd_watch(NULL, "a", 1, NULL, 0, 0, on_change, &s, &id, NULL) == FLOYD_INVALID_ARGUMENT, "NULL handle");
    CHECK(floyd_watch(f, "a", 1, NULL, 0, 0, NULL, &s, &id, NULL) == FLOYD_INVALID_ARGUMENT, "NULL callback");
    CHECK(floyd_watch(f, "a", 1, NULL, 0, 0, on_change, &s, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "NULL watch_id");
    CHECK(floyd_watch(f, NULL, 1, NULL, 0, 0, on_change, &s, &id, NULL) == FLOYD_INVALID_ARGUMENT,
          "NULL start with a length");
    CHECK(floyd_unwatch(NULL, 1) == FLOYD_INVALID_ARGUMENT, "unwatch: NULL handle");
}

int main(void) {
    if (open_cluster("c-watch-test")) {
        leader = wait_for_leader();
        CHECK(leader >= 0, "a leader is elected and known everywhere");
        if (leader >= 0) {
            test_watch_everywhere();
            test_unwatch_and_compacted();
            test_bad_input();
            int other = (leader + 1) % NODES;
            floyd_close(nodes[other]);
            nodes[other] = NULL;
            pthread_mutex_lock(&seen[other].mu);
            CHECK(seen[other].ended == FLOYD_STOPPED && seen[other].calls_after_end == 0,
                  "floyd_close ends the watch with a last FLOYD_STOPPED call before it returns");
            pthread_mutex_unlock(&seen[other].mu);
        }
    }
    return close_cluster();
}
