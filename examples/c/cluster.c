/*
 * A 3-node floyd cluster in one C process: elect a leader, write through the
 * leader and a follower, read from every node, take a lock (a second holder
 * is refused), list the members, print the leader and every node's status.
 *
 *   make examples && ./examples/c/cluster     (see README, "Use from C / C++")
 */
#define _POSIX_C_SOURCE 200809L
#include "floyd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

static int fail(const char *what, int rc, char *msg) {
    fprintf(stderr, "%s: %s: %s\n", what, floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    return 1;
}

int main(void) {
    char dir[] = "/tmp/floyd-c-example-XXXXXX";
    char members[256] = "";
    int ports[NODES];
    floyd_t *nodes[NODES] = {0};
    if (!mkdtemp(dir)) return 2;
    for (int i = 0; i < NODES; i++) {
        ports[i] = free_port();
        size_t used = strlen(members);
        snprintf(members + used, sizeof members - used, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    }
    printf("floyd %s: starting %s\n", floyd_version(), members);
    for (int i = 0; i < NODES; i++) {
        char path[512], *msg = NULL;
        snprintf(path, sizeof path, "%s/node%d", dir, i);
        floyd_options_t *opts = floyd_options_new(members, "127.0.0.1", ports[i], path);
        int rc = floyd_open(opts, &nodes[i], &msg);
        floyd_options_free(opts);
        if (rc != FLOYD_OK) return fail("open", rc, msg);
    }

    int leader = -1;
    for (int tries = 0; leader < 0 && tries < 2000; tries++) {
        for (int i = 0; i < NODES; i++)
            if (floyd_is_leader(nodes[i])) leader = i;
        struct timespec t = {0, 10 * 1000 * 1000};
        if (leader < 0) nanosleep(&t, NULL);
    }
    if (leader < 0) return fail("election", FLOYD_NO_LEADER, NULL);
    char *ip_port = NULL;
    if (floyd_get_leader(nodes[(leader + 1) % NODES], &ip_port) == FLOYD_OK) printf("leader: %s\n", ip_port);
    floyd_free(ip_port);

    char *msg = NULL;
    int rc = floyd_write(nodes[leader], "greeting", 8, "hello", 5, &msg);
    if (rc != FLOYD_OK) return fail("write via leader", rc, msg);
    rc = floyd_write(nodes[(leader + 1) % NODES], "forwarded", 9, "via a follower", 14, &msg);
    if (rc != FLOYD_OK) return fail("write via follower", rc, msg);
    for (int i = 0; i < NODES; i++) {
        char *value = NULL;
        size_t len = 0;
        rc = floyd_read(nodes[i], "forwarded", 9, &value, &len, &msg);
        if (rc != FLOYD_OK) return fail("read", rc, msg);
        printf("node %d read forwarded = %.*s\n", i, (int)len, value);
        floyd_free(value);
    }
    uint64_t token = 0;
    rc = floyd_try_lock(nodes[(leader + 1) % NODES], "job", 3, "worker-1", 8, 10000, &token, &msg);
    if (rc != FLOYD_OK) return fail("try_lock", rc, msg);
    printf("worker-1 holds lock job, fencing token %llu\n", (unsigned long long)token);
    rc = floyd_try_lock(nodes[leader], "job", 3, "worker-2", 8, 10000, NULL, &msg);
    printf("worker-2 tries it: %s (%s)\n", floyd_status_str(rc), msg ? msg : "");
    floyd_free(msg);
    msg = NULL;
    if (rc != FLOYD_LOCKED) return 1;
    rc = floyd_unlock(nodes[leader], "job", 3, "worker-1", 8, &msg);
    if (rc != FLOYD_OK) return fail("unlock", rc, msg);
    char *servers = NULL;
    rc = floyd_get_all_servers(nodes[0], &servers, &msg);
    if (rc != FLOYD_OK) return fail("get_all_servers", rc, msg);
    printf("members: %s\n", servers);
    floyd_free(servers);
    for (int i = 0; i < NODES; i++) {
        char *text = NULL;
        if (floyd_get_server_status(nodes[i], &text) == FLOYD_OK) printf("%s\n", i ? strchr(text, '\n') + 1 : text);
        floyd_free(text);
    }
    for (int i = 0; i < NODES; i++) floyd_close(nodes[i]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
