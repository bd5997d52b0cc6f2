/*
 * The host API: three hosts in one process, each running groups 1 and 2;
 * every group elects and serves writes and reads through its floyd_t
 * handles, the groups keep apart, a host lists its groups and reports its
 * status, a closed group is dropped, bad input is refused, and a closed
 * host's handles answer FLOYD_STOPPED until floyd_close frees them.
 * Prints one line per check and "N passed, M failed" at the end.
 */
#include "test_util.h"
#include "floyd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOSTS 3
#define GROUPS 2
static floyd_host_t *hosts[HOSTS];
static floyd_t *groups[HOSTS][GROUPS];
static int ports[HOSTS];
static char members[256];
static char dir[] = "/tmp/floyd-c-host-XXXXXX";

/* A group's options naming host `i`; the path is NULL (a host ignores it). */
static floyd_options_t *group_options(int i) {
    floyd_options_t *o = floyd_options_new(members, "127.0.0.1", ports[i], NULL);
    floyd_options_set_heartbeat_us(o, 30000);
    floyd_options_set_check_leader_us(o, 300000);
    floyd_options_set_request_timeout_ms(o, 10000);
    return o;
}

static void open_hosts(void) {
    for (int i = 0; i < HOSTS; i++) {
        char path[512], *msg = NULL;
        snprintf(path, sizeof path, "%s/host%d", dir, i);
        floyd_host_options_t *o = floyd_host_options_new("127.0.0.1", ports[i], path);
        CHECK(floyd_host_options_set_workers(o, 2) == FLOYD_OK, "set_workers");
        CHECK(floyd_host_options_set_cluster_id(o, "c-host-test") == FLOYD_OK, "set_cluster_id");
        int rc = floyd_host_open(o, &hosts[i], &msg);
        CHECK(rc == FLOYD_OK, "host_open");
        if (rc != FLOYD_OK) {
            printf("  %s\n", msg ? msg : "");
            floyd_free(msg);
            exit(1);
        }
        floyd_host_options_free(o);
        for (int g = 0; g < GROUPS; g++) {
            floyd_options_t *go = group_options(i);
            floyd_options_set_cluster_id(go, "c-host-test");
            rc = floyd_host_open_group(hosts[i], (uint64_t)g + 1, go, &groups[i][g], &msg);
            CHECK(rc == FLOYD_OK, "host_open_group");
            if (rc != FLOYD_OK) {
                printf("  %s\n", msg ? msg : "");
                floyd_free(msg);
            }
            floyd_options_free(go);
        }
    }
}

static int write_retrying(int g, const char *key, const char *value) {
    double deadline = now_s() + 30;
    int rc;
    do {
        for (int i = 0; i < HOSTS; i++) {
            rc = floyd_write(groups[i][g], key, strlen(key), value, strlen(value), NULL);
            if (rc == FLOYD_OK) return rc;
        }
        pause_ms(20);
    } while (now_s() < deadline);
    return rc;
}

static void test_groups_serve_and_keep_apart(void) {
    CHECK(write_retrying(0, "k", "one") == FLOYD_OK, "write to group 1");
    CHECK(write_retrying(1, "k", "two") == FLOYD_OK, "write to group 2");
    for (int i = 0; i < HOSTS; i++) {
        char *v = NULL;
        size_t n = 0;
        CHECK(floyd_read(groups[i][0], "k", 1, &v, &n, NULL) == FLOYD_OK && n == 3 && memcmp(v, "one", 3) == 0,
              "group 1 reads its own value on every host");
        floyd_free(v);
        v = NULL;
        CHECK(floyd_read(groups[i][1], "k", 1, &v, &n, NULL) == FLOYD_OK && n == 3 && memcmp(v, "two", 3) == 0,
              "group 2 reads its own value on every host");
        floyd_free(v);
    }
}

static void test_list_status_and_drop(void) {
    uint64_t *ids = NULL;
    size_t count = 0;
    CHECK(floyd_host_list_groups(hosts[0], &ids, &count, NULL) == FLOYD_OK && count == 2 && ids[0] == 1 &&
              ids[1] == 2,
          "list_groups");
    floyd_free(ids);
    char *json = NULL;
    CHECK(floyd_host_get_status_json(hosts[0], &json) == FLOYD_OK && strstr(json, "\"group\":2") != NULL,
          "status json names the groups");
    floyd_free(json);
    char *metrics = NULL;
    CHECK(floyd_host_get_metrics(hosts[0], &metrics) == FLOYD_OK && strstr(metrics, "floyd_commit_index{group=\"1\"}") &&
              strstr(metrics, "floyd_commit_index{group=\"2\"}") && strstr(metrics, "floyd_groups_open 2\n"),
          "host metrics label every group");
    floyd_free(metrics);
    CHECK(floyd_host_get_metrics(NULL, &metrics) == FLOYD_INVALID_ARGUMENT, "host metrics of NULL");
    CHECK(floyd_host_drop_group(hosts[2], 2, NULL) == FLOYD_INVALID_ARGUMENT, "an open group is not dropped");
    floyd_close(groups[2][1]);
    groups[2][1] = NULL;
    CHECK(floyd_host_drop_group(hosts[2], 2, NULL) == FLOYD_OK, "a closed group is dropped");
    CHECK(floyd_host_list_groups(hosts[2], &ids, &count, NULL) == FLOYD_OK && count == 1 && ids[0] == 1,
          "the dropped group is gone from the list");
    floyd_free(ids);
}

static void test_bad_input(void) {
    char *msg = NULL;
    floyd_t *f = NULL;
    floyd_options_t *go = group_options(0);
    CHECK(floyd_host_open_group(hosts[0], 1, go, &f, &msg) == FLOYD_INVALID_ARGUMENT, "a group open twice");
    floyd_free(msg);
    msg = NULL;
    CHECK(floyd_host_open_group(hosts[1], 9, go, &f, &msg) == FLOYD_INVALID_ARGUMENT,
          "options naming another host");
    floyd_free(msg);
    floyd_options_free(go);
    /* The host's options set on a group's would be ignored: refused. */
    go = group_options(0);
    floyd_options_set_tls(go, "/nonexistent/ca.pem", "/nonexistent/cert.pem", "/nonexistent/key.pem");
    CHECK(floyd_host_open_group(hosts[0], 5, go, &f, &msg) == FLOYD_INVALID_ARGUMENT && msg && strstr(msg, "TLS"),
          "TLS on a group's options is refused, not ignored");
    floyd_free(msg);
    msg = NULL;
    floyd_options_free(go);
    go = group_options(0);
    floyd_options_set_cluster_id(go, "another-cluster");
    CHECK(floyd_host_open_group(hosts[0], 5, go, &f, &msg) == FLOYD_INVALID_ARGUMENT,
          "a cluster id other than the host's is refused");
    floyd_free(msg);
    msg = NULL;
    floyd_options_free(go);
    CHECK(floyd_host_open_group(NULL, 1, NULL, &f, NULL) == FLOYD_INVALID_ARGUMENT, "NULL host");
    CHECK(floyd_host_open(NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "NULL host options");
    CHECK(floyd_host_options_set_workers(NULL, 1) == FLOYD_INVALID_ARGUMENT, "set_workers on NULL");
    CHECK(floyd_host_list_groups(NULL, NULL, NULL, NULL) == FLOYD_INVALID_ARGUMENT, "list_groups on NULL");
    floyd_host_options_t *bad = floyd_host_options_new(NULL, 1, "/tmp");
    CHECK(floyd_host_open(bad, &hosts[0], NULL) == FLOYD_INVALID_ARGUMENT, "NULL local_ip reported at open");
    floyd_host_options_free(bad);
    floyd_host_close(NULL);
    floyd_host_options_free(NULL);
}

static void test_close(void) {
    /* Host 0 leads group 1 when it closes: its handle must not go on saying so. */
    char me[64];
    snprintf(me, sizeof me, "127.0.0.1:%d", ports[0]);
    int rc = FLOYD_NO_LEADER;
    for (int attempt = 0; attempt < 100 && rc != FLOYD_OK; attempt++) {
        rc = floyd_transfer_leader(groups[0][0], me, NULL);
    }
    CHECK(rc == FLOYD_OK && floyd_is_leader(groups[0][0]), "host 0 leads group 1");
    floyd_host_close(hosts[0]);
    hosts[0] = NULL;
    CHECK(floyd_write(groups[0][0], "k", 1, "x", 1, NULL) == FLOYD_STOPPED, "a closed host's group answers STOPPED");
    char *leader = NULL;
    CHECK(!floyd_is_leader(groups[0][0]) && !floyd_has_leader(groups[0][0]),
          "a closed host's group leads nothing and knows no leader");
    CHECK(floyd_get_leader(groups[0][0], &leader) == FLOYD_STOPPED && leader == NULL,
          "get_leader on a closed host's group answers STOPPED");
    floyd_close(groups[0][0]);
    floyd_close(groups[0][1]);
    groups[0][0] = groups[0][1] = NULL;
    CHECK(write_retrying(0, "k", "after") == FLOYD_OK, "the two other hosts serve group 1");
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    for (int i = 0; i < HOSTS; i++) ports[i] = free_port();
    snprintf(members, sizeof members, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1], ports[2]);
    open_hosts();
    test_groups_serve_and_keep_apart();
    test_list_status_and_drop();
    test_bad_input();
    test_close();
    for (int i = 0; i < HOSTS; i++) {
        for (int g = 0; g < GROUPS; g++) floyd_close(groups[i][g]);
        floyd_host_close(hosts[i]);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
