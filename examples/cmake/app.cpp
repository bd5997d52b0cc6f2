// Opens a single-node floyd in a temporary directory, writes a key, reads it back.
#include <floyd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

static int free_port() {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a;
    socklen_t len = sizeof a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (sockaddr *)&a, sizeof a) != 0 || getsockname(s, (sockaddr *)&a, &len) != 0) {
        std::perror("free_port");
        std::exit(2);
    }
    close(s);
    return ntohs(a.sin_port);
}

int main() {
    char dir[] = "/tmp/floyd-cmake-XXXXXX";
    if (!mkdtemp(dir)) { std::perror("mkdtemp"); return 1; }
    std::printf("floyd %s (header %d.%d.%d)\n", floyd_version(), FLOYD_VERSION_MAJOR,
                FLOYD_VERSION_MINOR, FLOYD_VERSION_PATCH);
    int port = free_port();
    std::string member = "127.0.0.1:" + std::to_string(port);
    floyd_options_t *o = floyd_options_new(member.c_str(), "127.0.0.1", port, dir);
    floyd_options_set_single_mode(o, true);
    floyd_t *f = NULL;
    char *err = NULL;
    int rc = floyd_open(o, &f, &err);
    floyd_options_free(o);
    if (rc != FLOYD_OK) { std::fprintf(stderr, "open: %s %s\n", floyd_status_str(rc), err ? err : ""); return 1; }
    rc = floyd_write(f, "key", 3, "value", 5, &err);
    if (rc != FLOYD_OK) { std::fprintf(stderr, "write: %s %s\n", floyd_status_str(rc), err ? err : ""); return 1; }
    char *v = NULL;
    size_t n = 0;
    rc = floyd_read(f, "key", 3, &v, &n, &err);
    if (rc != FLOYD_OK) { std::fprintf(stderr, "read: %s %s\n", floyd_status_str(rc), err ? err : ""); return 1; }
    bool ok = std::string(v, n) == "value";
    floyd_free(v);
    floyd_close(f);
    std::system((std::string("rm -rf ") + dir).c_str());
    std::printf("read back %s\n", ok ? "value: ok" : "something else");
    return ok ? 0 : 1;
}
