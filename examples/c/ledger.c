/*
 * A replicated bank ledger: a user-defined state machine in C, run by three
 * floyd nodes in one process. Accounts live in memory; every node applies
 * the same commands in the same order:
 *
 *   "deposit <account> <amount>"   answers the new balance
 *   "withdraw <account> <amount>"  answers the new balance; refused (an error
 *                                  for the proposer) when funds are short
 *   "balance <account>"            answers the balance (through the log:
 *                                  linearizable)
 *
 * A snapshot is one file, ledger.txt ("<account> <balance>" per line), in the
 * directory floyd gives. The callbacks run on each node's apply thread; the
 * main thread reads balances under the ledger's mutex.
 *
 *   make examples     (builds and runs it)
 *
 * tests/c/test_state_machine.c includes this file with LEDGER_NO_MAIN defined
 * and drives the same machine.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "floyd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LEDGER_ACCOUNTS 64
#define LEDGER_NAME 32

typedef struct {
    char name[LEDGER_NAME];
    long long balance;
} account_t;

typedef struct {
    /* Guards the accounts against readers on other threads (floyd itself
     * never calls two callbacks at once). */
    pthread_mutex_t mu;
    account_t accounts[LEDGER_ACCOUNTS];
    int count;
    uint64_t applied;     /* the last index applied */
    uint64_t leader_term; /* 0 when this node is not the leader */
    int finalized;        /* times finalize ran: exactly once, at close */
} ledger_t;

static void ledger_init(ledger_t *l) {
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

/* The account called `name`, created with balance 0 if `create`; NULL if absent or full. */
static account_t *ledger_account(ledger_t *l, const char *name, int create) {
    for (int i = 0; i < l->count; i++)
        if (strcmp(l->accounts[i].name, name) == 0) return &l->accounts[i];
    if (!create || l->count == LEDGER_ACCOUNTS) return NULL;
    account_t *a = &l->accounts[l->count++];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->balance = 0;
    return a;
}

/* A malloc'ed, formatted answer for floyd (which frees it with free()). */
static int answer(char **result, size_t *result_len, int rc, const char *fmt, ...) {
    char text[160];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    /* Out of memory: the code stands alone (an empty answer, or floyd's message
     * for the code), and the state is the same on every node. */
    *result = malloc(len + 1);
    if (*result == NULL) return rc;
    memcpy(*result, text, len + 1);
    *result_len = len;
    return rc;
}

/* Deterministic: the answer depends only on the state and the command. */
static int ledger_apply(void *user_data, uint64_t index, const char *data, size_t len, char **result,
                        size_t *result_len) {
    ledger_t *l = user_data;
    char verb[16], name[LEDGER_NAME], extra;
    long long amount = 0;
    /* data is NUL-terminated by floyd; a NUL inside it makes the command end early, and is refused. */
    int fields = strlen(data) == len ? sscanf(data, "%15s %31s %lld %c", verb, name, &amount, &extra) : 0;
    int rc;
    pthread_mutex_lock(&l->mu);
    l->applied = index;
    if (fields == 3 && strcmp(verb, "deposit") == 0 && amount > 0) {
        account_t *a = ledger_account(l, name, 1);
        rc = a ? answer(result, result_len, 0, "%lld", a->balance += amount)
               : answer(result, result_len, 1, "too many accounts");
    } else if (fields == 3 && strcmp(verb, "withdraw") == 0 && amount > 0) {
        account_t *a = ledger_account(l, name, 0);
        if (a == NULL || a->balance < amount)
            rc = answer(result, result_len, 1, "insufficient funds: %s has %lld, %lld asked", name,
                        a ? a->balance : 0, amount);
        else
            rc = answer(result, result_len, 0, "%lld", a->balance -= amount);
    } else if (fields == 2 && strcmp(verb, "balance") == 0) {
        account_t *a = ledger_account(l, name, 0);
        rc = answer(result, result_len, 0, "%lld", a ? a->balance : 0);
    } else {
        rc = answer(result, result_len, 2, "bad command (deposit|withdraw ACCOUNT AMOUNT, balance ACCOUNT)");
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int ledger_snapshot_save(void *user_data, const char *dir) {
    ledger_t *l = user_data;
    char path[4096];
    snprintf(path, sizeof path, "%s/ledger.txt", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return errno ? errno : 1;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->count; i++) fprintf(f, "%s %lld\n", l->accounts[i].name, l->accounts[i].balance);
    pthread_mutex_unlock(&l->mu);
    return fclose(f) == 0 ? 0 : 1;
}

/* Reads the whole file first, so a bad one leaves the state as it was. */
static int ledger_snapshot_load(void *user_data, const char *dir) {
    ledger_t *l = user_data;
    char path[4096];
    snprintf(path, sizeof path, "%s/ledger.txt", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) return errno ? errno : 1;
    account_t loaded[LEDGER_ACCOUNTS];
    int count = 0, fields;
    char name[LEDGER_NAME];
    long long balance;
    while (count < LEDGER_ACCOUNTS && (fields = fscanf(f, "%31s %lld", name, &balance)) == 2) {
        snprintf(loaded[count].name, sizeof loaded[count].name, "%s", name);
        loaded[count++].balance = balance;
    }
    int bad = !feof(f) && count < LEDGER_ACCOUNTS;
    fclose(f);
    if (bad) return 1;
    pthread_mutex_lock(&l->mu);
    memcpy(l->accounts, loaded, sizeof loaded[0] * (size_t)count);
    l->count = count;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static void ledger_on_leader_start(void *user_data, uint64_t term) {
    ledger_t *l = user_data;
    pthread_mutex_lock(&l->mu);
    l->leader_term = term;
    pthread_mutex_unlock(&l->mu);
}

static void ledger_on_leader_stop(void *user_data) {
    ledger_t *l = user_data;
    pthread_mutex_lock(&l->mu);
    l->leader_term = 0;
    pthread_mutex_unlock(&l->mu);
}

/* floyd is done with the ledger: nothing calls it any more. */
static void ledger_finalize(void *user_data) {
    ledger_t *l = user_data;
    l->finalized++;
}

static floyd_state_machine_t ledger_state_machine(ledger_t *l) {
    floyd_state_machine_t sm;
    memset(&sm, 0, sizeof sm);
    sm.user_data = l;
    sm.apply = ledger_apply;
    sm.snapshot_save = ledger_snapshot_save;
    sm.snapshot_load = ledger_snapshot_load;
    sm.on_leader_start = ledger_on_leader_start;
    sm.on_leader_stop = ledger_on_leader_stop;
    sm.destroy = ledger_finalize;
    return sm;
}

/* This node's balance of `name` (0 if it has no such account). */
static long long ledger_balance(ledger_t *l, const char *name) {
    pthread_mutex_lock(&l->mu);
    account_t *a = ledger_account(l, name, 0);
    long long balance = a ? a->balance : 0;
    pthread_mutex_unlock(&l->mu);
    return balance;
}

#ifndef LEDGER_NO_MAIN

/* The last index this node applied. */
static uint64_t ledger_applied(ledger_t *l) {
    pthread_mutex_lock(&l->mu);
    uint64_t applied = l->applied;
    pthread_mutex_unlock(&l->mu);
    return applied;
}

#define NODES 3

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) exit(2);
    close(s);
    return ntohs(a.sin_port);
}

static void pause_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Proposes `command` through `node` and prints what the leader's ledger answered. */
static int propose(floyd_t *node, const char *command) {
    char *result = NULL, *msg = NULL;
    size_t len = 0;
    int rc = floyd_propose(node, command, strlen(command), &result, &len, &msg);
    if (rc == FLOYD_OK)
        printf("%-22s -> %.*s\n", command, (int)len, result);
    else
        printf("%-22s -> %s: %s\n", command, floyd_status_str(rc), msg ? msg : "");
    floyd_free(result);
    floyd_free(msg);
    return rc;
}

int main(void) {
    char dir[] = "/tmp/floyd-ledger-XXXXXX";
    char members[256] = "";
    int ports[NODES];
    floyd_t *nodes[NODES] = {0};
    static ledger_t ledgers[NODES];
    if (!mkdtemp(dir)) return 2;
    for (int i = 0; i < NODES; i++) {
        ports[i] = free_port();
        size_t used = strlen(members);
        snprintf(members + used, sizeof members - used, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    }
    for (int i = 0; i < NODES; i++) {
        char path[512], *msg = NULL;
        snprintf(path, sizeof path, "%s/node%d", dir, i);
        floyd_options_t *opts = floyd_options_new(members, "127.0.0.1", ports[i], path);
        ledger_init(&ledgers[i]);
        floyd_state_machine_t sm = ledger_state_machine(&ledgers[i]);
        int rc = floyd_open_with_state_machine(opts, &sm, &nodes[i], &msg);
        floyd_options_free(opts);
        if (rc != FLOYD_OK) {
            fprintf(stderr, "open: %s: %s\n", floyd_status_str(rc), msg ? msg : "");
            return 1;
        }
    }
    int leader = -1;
    for (int tries = 0; leader < 0 && tries < 3000; tries++) {
        for (int i = 0; i < NODES; i++)
            if (floyd_is_leader(nodes[i])) leader = i;
        if (leader < 0) pause_ms(10);
    }
    if (leader < 0) return 1;
    int follower = (leader + 1) % NODES;
    printf("node %d leads; proposing through it and through node %d\n", leader, follower);
    const char *script[] = {"deposit alice 100", "deposit bob 50", "withdraw alice 30", "withdraw bob 80",
                            "balance alice"};
    for (int i = 0; i < 5; i++) {
        int rc = propose(nodes[i % 2 ? follower : leader], script[i]);
        if (rc != (i == 3 ? FLOYD_STATE_MACHINE : FLOYD_OK)) return 1; /* bob has only 50 */
    }

    /* Every node applies the same commands: wait until each has applied as far as the leader. */
    int same = 0;
    for (int tries = 0; !same && tries < 3000; tries++) {
        same = 1;
        for (int i = 0; i < NODES; i++) same &= ledger_applied(&ledgers[i]) == ledger_applied(&ledgers[leader]);
        if (!same) pause_ms(10);
    }
    for (int i = 0; i < NODES; i++) {
        long long alice = ledger_balance(&ledgers[i], "alice"), bob = ledger_balance(&ledgers[i], "bob");
        printf("node %d: alice %lld, bob %lld (applied up to index %llu)\n", i, alice, bob,
               (unsigned long long)ledger_applied(&ledgers[i]));
        same &= alice == 70 && bob == 50;
    }
    for (int i = 0; i < NODES; i++) floyd_close(nodes[i]);
    for (int i = 0; i < NODES; i++) {
        if (ledgers[i].finalized != 1) return 1;
        pthread_mutex_destroy(&ledgers[i].mu);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return same && system(cmd) == 0 ? 0 : 1;
}

#endif
