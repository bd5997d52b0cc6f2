/*
 * User-defined state machines through the C API, driving the ledger of
 * examples/c/ledger.c (included here) on a 3-node cluster in one process:
 * every node applies the same commands at the same indexes, proposals
 * through the leader and a follower get apply's answer, a refusal (code and
 * message) reaches floyd_propose's caller and the node goes on, the ledger's
 * snapshot round-trips (directly, and through floyd: a node restarted with
 * an empty ledger loads its snapshot), NULL arguments are
 * FLOYD_INVALID_ARGUMENT, and
 * finalize runs exactly once per machine (at close, or when open fails).
 * Prints one line per check and "N passed, M failed" at the end.
 */
#include "test_util.h"
#define LEDGER_NO_MAIN
#include "../../examples/c/ledger.c"

#include <sys/stat.h>

#define NODES 3
#define MAX_APPLIED 64

/* A node's ledger, and every (index, command) it applied, in order. */
typedef struct {
    ledger_t ledger;
    pthread_mutex_t mu;
    int count;
    uint64_t indexes[MAX_APPLIED];
    char commands[MAX_APPLIED][64];
} recorded_t;

static recorded_t machines[NODES];
static floyd_t *nodes[NODES];
static int ports[NODES];
static char members[256];
static char dir[] = "/tmp/floyd-c-sm-test-XXXXXX";

static int recording_apply(void *user_data, uint64_t index, const char *data, size_t len, char **result,
                           size_t *result_len) {
    recorded_t *r = user_data;
    pthread_mutex_lock(&r->mu);
    if (r->count < MAX_APPLIED) {
        r->indexes[r->count] = index;
        snprintf(r->commands[r->count], sizeof r->commands[0], "%.*s", (int)len, data);
        r->count++;
    }
    pthread_mutex_unlock(&r->mu);
    return ledger_apply(&r->ledger, index, data, len, result, result_len);
}

/* The other callbacks: the ledger's own, on the ledger inside. */
static ledger_t *inner(void *user_data) { return &((recorded_t *)user_data)->ledger; }
static int recorded_save(void *user_data, const char *d) { return ledger_snapshot_save(inner(user_data), d); }
static int recorded_load(void *user_data, const char *d) { return ledger_snapshot_load(inner(user_data), d); }
static void recorded_start(void *user_data, uint64_t term) { ledger_on_leader_start(inner(user_data), term); }
static void recorded_stop(void *user_data) { ledger_on_leader_stop(inner(user_data)); }
static void recorded_finalize(void *user_data) { ledger_finalize(inner(user_data)); }

static floyd_state_machine_t recorded_machine(recorded_t *r) {
    floyd_state_machine_t sm = ledger_state_machine(&r->ledger);
    sm.user_data = r;
    sm.apply = recording_apply;
    sm.snapshot_save = recorded_save;
    sm.snapshot_load = recorded_load;
    sm.on_leader_start = recorded_start;
    sm.on_leader_stop = recorded_stop;
    sm.destroy = recorded_finalize;
    return sm;
}

static floyd_options_t *options_for(const char *member_list, int port, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    floyd_options_t *o = floyd_options_new(member_list, "127.0.0.1", port, path);
    floyd_options_set_heartbeat_us(o, 30000);
    floyd_options_set_check_leader_us(o, 300000);
    floyd_options_set_request_timeout_ms(o, 10000);
    floyd_options_set_leader_wait_ms(o, 5000);
    /* Small: the restart test finds the log compacted and a snapshot to load. */
    floyd_options_set_snapshot_log_entries(o, 10);
    floyd_options_set_snapshot_log_bytes(o, 0);
    floyd_options_set_snapshot_keep_entries(o, 2);
    return o;
}

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

/* Proposes `command`; 1 if the code is `want` and, on FLOYD_OK, the answer `answer`. */
static int propose_is(floyd_t *f, const char *command, int want, const char *answer) {
    char *result = NULL, *msg = NULL;
    size_t len = 0;
    int rc = floyd_propose(f, command, strlen(command), &result, &len, &msg);
    int ok = rc == want && (rc != FLOYD_OK || (answer != NULL && strlen(answer) == len &&
                                               memcmp(result, answer, len) == 0 && result[len] == '\0'));
    if (!ok)
        printf("     %s -> %s (%.*s) %s\n", command, floyd_status_str(rc), (int)len, result ? result : "",
               msg ? msg : "");
    floyd_free(result);
    floyd_free(msg);
    return ok;
}

static int finalized_count;
static void count_finalize(void *user_data) {
    (void)user_data;
    finalized_count++;
}

static void test_bad_arguments(void) {
    ledger_t spare;
    ledger_init(&spare);
    floyd_state_machine_t sm = ledger_state_machine(&spare);
    sm.destroy = count_finalize;
    floyd_options_t *o = options_for("127.0.0.1:1", 1, "unused");
    floyd_t *f = NULL;
    char *msg = NULL;
    CHECK(floyd_open_with_state_machine(o, NULL, &f, &msg) == FLOYD_INVALID_ARGUMENT && msg != NULL,
          "NULL state machine: INVALID_ARGUMENT with a message");
    floyd_free(msg);
    CHECK(floyd_open_with_state_machine(NULL, &sm, &f, NULL) == FLOYD_INVALID_ARGUMENT, "NULL options");
    CHECK(finalized_count == 1, "a failed open finalizes the machine once");
    CHECK(floyd_open_with_state_machine(o, &sm, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "NULL out");
    floyd_state_machine_t no_apply = sm;
    no_apply.apply = NULL;
    CHECK(floyd_open_with_state_machine(o, &no_apply, &f, NULL) == FLOYD_INVALID_ARGUMENT, "NULL apply");
    floyd_state_machine_t no_save = sm;
    no_save.snapshot_save = NULL;
    CHECK(floyd_open_with_state_machine(o, &no_save, &f, NULL) == FLOYD_INVALID_ARGUMENT, "NULL snapshot_save");
    CHECK(finalized_count == 4 && f == NULL, "every failed open finalized exactly once, no handle");
    floyd_options_free(o);
    pthread_mutex_destroy(&spare.mu);

    char *result = NULL;
    size_t len = 0;
    CHECK(floyd_propose(NULL, "x", 1, &result, &len, NULL) == FLOYD_INVALID_ARGUMENT, "propose on NULL");
    CHECK(floyd_propose(nodes[0], "x", 1, NULL, &len, NULL) == FLOYD_INVALID_ARGUMENT, "propose, NULL result");
    CHECK(floyd_propose(nodes[0], "x", 1, &result, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "propose, NULL result_len");
    CHECK(floyd_propose(nodes[0], NULL, 3, &result, &len, NULL) == FLOYD_INVALID_ARGUMENT, "propose, NULL data");
    CHECK(result == NULL, "nothing handed out on error");
}

static void test_kv_node_refuses_propose(void) {
    int port = free_port();
    char member[64];
    snprintf(member, sizeof member, "127.0.0.1:%d", port);
    floyd_options_t *o = options_for(member, port, "kv");
    floyd_t *kv = NULL;
    int rc = floyd_open(o, &kv, NULL);
    floyd_options_free(o);
    CHECK(rc == FLOYD_OK, "open a key-value node");
    char *result = NULL, *msg = NULL;
    size_t len = 0;
    CHECK(floyd_propose(kv, "x", 1, &result, &len, &msg) == FLOYD_INVALID_ARGUMENT && msg != NULL,
          "propose on a key-value node: INVALID_ARGUMENT");
    floyd_free(msg);
    floyd_close(kv);
}

/* Returns the leader's index, or -1. */
static int test_cluster(void) {
    int leader = wait_for_leader();
    CHECK(leader >= 0, "a leader is elected");
    if (leader < 0) return -1;
    int follower = (leader + 1) % NODES;
    double deadline = now_s() + 30;
    int started = 0;
    while (!started && now_s() < deadline) {
        pthread_mutex_lock(&machines[leader].ledger.mu);
        started = machines[leader].ledger.leader_term > 0;
        pthread_mutex_unlock(&machines[leader].ledger.mu);
        if (!started) pause_ms(10);
    }
    CHECK(started, "on_leader_start on the leader");

    CHECK(propose_is(nodes[leader], "deposit alice 100", FLOYD_OK, "100"), "propose via the leader");
    CHECK(propose_is(nodes[follower], "deposit alice 20", FLOYD_OK, "120"), "propose via a follower: leader's answer");
    CHECK(propose_is(nodes[follower], "withdraw alice 50", FLOYD_OK, "70"), "withdraw");
    char *result = (char *)0x1, *msg = NULL;
    size_t len = 77;
    int rc = floyd_propose(nodes[follower], "withdraw alice 500", 18, &result, &len, &msg);
    CHECK(rc == FLOYD_STATE_MACHINE, "a refused command: FLOYD_STATE_MACHINE");
    CHECK(msg != NULL && strstr(msg, "insufficient funds: alice has 70, 500 asked") != NULL,
          "the refusal's message reaches the proposer");
    CHECK(result == (char *)0x1 && len == 77, "a refusal writes no result");
    floyd_free(msg);
    CHECK(propose_is(nodes[leader], "steal alice", FLOYD_STATE_MACHINE, NULL), "a bad command is refused");
    const char with_nul[] = {'d', 'e', 'p', '\0', 'x'};
    result = NULL;
    CHECK(floyd_propose(nodes[leader], with_nul, sizeof with_nul, &result, &len, NULL) == FLOYD_STATE_MACHINE,
          "a command with a NUL inside reaches apply whole (and is refused)");
    CHECK(propose_is(nodes[follower], "deposit bob 5", FLOYD_OK, "5"), "the node goes on after refusals");
    CHECK(propose_is(nodes[leader], "balance alice", FLOYD_OK, "70"), "balance through the log");
    CHECK(floyd_write(nodes[leader], "k", 1, "v", 1, NULL) == FLOYD_INVALID_ARGUMENT, "write is refused");
    CHECK(floyd_dirty_read(nodes[follower], "k", 1, &result, &len, NULL) == FLOYD_INVALID_ARGUMENT,
          "dirty_read is refused");

    /* Identical applies everywhere: same count, same indexes, same commands. */
    const int expected = 8;
    int same = 0;
    deadline = now_s() + 30;
    while (!same && now_s() < deadline) {
        same = 1;
        for (int i = 0; i < NODES; i++) {
            pthread_mutex_lock(&machines[i].mu);
            same &= machines[i].count == expected;
            pthread_mutex_unlock(&machines[i].mu);
        }
        if (!same) pause_ms(10);
    }
    CHECK(same, "every node applied every command");
    int identical = 1;
    for (int i = 1; i < NODES; i++) {
        pthread_mutex_lock(&machines[i].mu);
        for (int k = 0; k < machines[i].count && k < machines[0].count; k++)
            identical &= machines[i].indexes[k] == machines[0].indexes[k] &&
                         strcmp(machines[i].commands[k], machines[0].commands[k]) == 0;
        pthread_mutex_unlock(&machines[i].mu);
    }
    CHECK(identical, "every node applied the same commands at the same indexes");
    for (int i = 0; i < NODES; i++)
        CHECK(ledger_balance(&machines[i].ledger, "alice") == 70 && ledger_balance(&machines[i].ledger, "bob") == 5,
              "every node holds the same balances");
    return leader;
}

static int count_of(recorded_t *r) {
    pthread_mutex_lock(&r->mu);
    int n = r->count;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Waits until node i's ledger holds the balances the cluster has. */
static int converged(int i, long long carol) {
    double deadline = now_s() + 30;
    while (now_s() < deadline) {
        ledger_t *l = &machines[i].ledger;
        if (ledger_balance(l, "alice") == 70 && ledger_balance(l, "bob") == 5 && ledger_balance(l, "carol") == carol)
            return 1;
        pause_ms(10);
    }
    return 0;
}

/* A node restarted with an empty ledger gets its state back from its own
 * latest snapshot (snapshot_save, then snapshot_load at open) and the log tail. */
static void test_restart_from_snapshot(int leader) {
    int r = (leader + 2) % NODES, ok = 1;
    for (int k = 1; k <= 30; k++) {
        char want[16];
        snprintf(want, sizeof want, "%d", k);
        ok &= propose_is(nodes[leader], "deposit carol 1", FLOYD_OK, want);
    }
    CHECK(ok, "30 more proposals (the log is compacted behind snapshots)");
    CHECK(converged(r, 30), "the follower applied them");
    int first_life = count_of(&machines[r]);
    floyd_close(nodes[r]);
    nodes[r] = NULL;
    CHECK(machines[r].ledger.finalized == 1, "closing finalizes the machine once");
    pthread_mutex_destroy(&machines[r].ledger.mu);
    ledger_init(&machines[r].ledger);
    machines[r].count = 0;
    char name[16];
    snprintf(name, sizeof name, "node%d", r);
    floyd_options_t *o = options_for(members, ports[r], name);
    floyd_state_machine_t sm = recorded_machine(&machines[r]);
    CHECK(floyd_open_with_state_machine(o, &sm, &nodes[r], NULL) == FLOYD_OK, "reopen it with an empty ledger");
    floyd_options_free(o);
    if (nodes[r] == NULL) return;
    CHECK(converged(r, 30), "the restarted node holds every balance again");
    CHECK(count_of(&machines[r]) < first_life, "it loaded a snapshot rather than replaying every command");
    CHECK(propose_is(nodes[r], "deposit carol 1", FLOYD_OK, "31") && converged(r, 31), "and goes on applying");
}

/* The example's snapshot: save one node's ledger, load it into a fresh one. */
static void test_snapshot_round_trip(void) {
    char snap[600];
    snprintf(snap, sizeof snap, "%s/snap", dir);
    CHECK(mkdir(snap, 0700) == 0, "a snapshot directory");
    CHECK(recorded_save(&machines[1], snap) == 0, "snapshot_save");
    ledger_t fresh;
    ledger_init(&fresh);
    CHECK(ledger_snapshot_load(&fresh, snap) == 0, "snapshot_load into a fresh ledger");
    CHECK(ledger_balance(&fresh, "alice") == 70 && ledger_balance(&fresh, "bob") == 5 && fresh.count == 2,
          "the loaded ledger equals the saved one");
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    CHECK(mkdir(empty, 0700) == 0 && ledger_snapshot_load(&fresh, empty) != 0, "loading nothing fails");
    CHECK(ledger_balance(&fresh, "alice") == 70, "a failed load keeps the state");
    pthread_mutex_destroy(&fresh.mu);
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
        char name[16];
        snprintf(name, sizeof name, "node%d", i);
        ledger_init(&machines[i].ledger);
        pthread_mutex_init(&machines[i].mu, NULL);
        floyd_options_t *o = options_for(members, ports[i], name);
        floyd_state_machine_t sm = recorded_machine(&machines[i]);
        char *msg = NULL;
        int rc = floyd_open_with_state_machine(o, &sm, &nodes[i], &msg);
        CHECK(rc == FLOYD_OK && nodes[i] != NULL, "open a node with a state machine");
        if (rc != FLOYD_OK) printf("     %s: %s\n", floyd_status_str(rc), msg ? msg : "");
        floyd_free(msg);
        floyd_options_free(o);
    }
    if (nodes[0] && nodes[1] && nodes[2]) {
        test_bad_arguments();
        int leader = test_cluster();
        test_snapshot_round_trip();
        if (leader >= 0) test_restart_from_snapshot(leader);
        test_kv_node_refuses_propose();
    }
    for (int i = 0; i < NODES; i++) {
        floyd_close(nodes[i]);
        CHECK(machines[i].ledger.finalized == 1, "finalize ran once, at close");
        CHECK(machines[i].ledger.leader_term == 0, "no node is left thinking it leads");
        pthread_mutex_destroy(&machines[i].ledger.mu);
        pthread_mutex_destroy(&machines[i].mu);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
