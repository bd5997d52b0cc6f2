// A 3-node cluster inside the test process, for the C++ tests that need one
// (coordination_test.cpp, lease_test.cpp, watch_test.cpp): checks printed as
// "ok N - what" (the first failure ends the program), free ports, a data
// directory removed at the end, waits polled against deadlines, and retries
// of what was certainly not applied. Nodes run 30 ms heartbeats and a 300 ms
// election timeout (check_leader_us).
//
// Defines its globals: include it in one file per test program.
#ifndef FLOYD_BINDINGS_CPP_TEST_TEST_CLUSTER_HPP_
#define FLOYD_BINDINGS_CPP_TEST_TEST_CLUSTER_HPP_

#include "floyd.hpp"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

namespace floyd_test {

const int kNodes = 3;
const uint64_t kCheckLeaderUs = 300000;
const uint64_t kHeartbeatUs = 30000;

floyd::Floyd* g_nodes[kNodes] = {NULL, NULL, NULL};
int g_ports[kNodes];
std::string g_members;
char g_dir[64];
bool g_dir_made = false;
int g_passed = 0;

inline int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

inline bool RemoveTree(const char* dir) { return nftw(dir, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) == 0; }

inline void CloseAll() {
  for (int i = 0; i < kNodes; i++) {
    delete g_nodes[i];
    g_nodes[i] = NULL;
  }
}

// Counts and prints a check that held; at the first that did not, prints it,
// closes the nodes, removes the data directory and exits 1.
inline void Check(bool cond, const std::string& what, const std::string& detail = std::string()) {
  if (cond) {
    g_passed++;
    std::printf("ok %d - %s\n", g_passed, what.c_str());
    std::fflush(stdout);
    return;
  }
  std::printf("FAILED: %s%s%s\n", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  std::printf("%d passed, 1 failed\n", g_passed);
  std::fflush(stdout);
  CloseAll();
  if (g_dir_made) RemoveTree(g_dir);
  std::exit(1);
}

inline void CheckStatus(const floyd::Status& s, const std::string& what) { Check(s.ok(), what, s.ToString()); }

inline std::string Addr(int port) {
  std::ostringstream s;
  s << "127.0.0.1:" << port;
  return s.str();
}

// A fresh data directory /tmp/floyd_cpp_<name>.XXXXXX in g_dir.
inline void MakeDataDir(const char* name) {
  std::snprintf(g_dir, sizeof g_dir, "/tmp/floyd_cpp_%s.XXXXXX", name);
  Check(mkdtemp(g_dir) != NULL, "mkdtemp");
  g_dir_made = true;
  std::printf("# floyd %s, data in %s\n", floyd_version(), g_dir);
}

inline void RemoveDataDir() {
  Check(RemoveTree(g_dir), "remove the data directory");
  g_dir_made = false;
}

// Free ports: bind 127.0.0.1:0 for every node at once, read the ports, close.
inline void PickPorts() {
  int fds[kNodes];
  bool bound = true;
  for (int i = 0; i < kNodes; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    bound = bound && fds[i] >= 0 && bind(fds[i], reinterpret_cast<struct sockaddr*>(&a), sizeof a) == 0 &&
            getsockname(fds[i], reinterpret_cast<struct sockaddr*>(&a), &len) == 0;
    g_ports[i] = ntohs(a.sin_port);
  }
  for (int i = 0; i < kNodes; i++) {
    if (fds[i] >= 0) close(fds[i]);
  }
  Check(bound, "pick 3 free ports (bind 127.0.0.1:0, then close)");
}

// One more free port (for a node of its own beside the cluster), as PickPorts.
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  bool bound = fd >= 0 && bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof a) == 0 &&
               getsockname(fd, reinterpret_cast<struct sockaddr*>(&a), &len) == 0;
  if (fd >= 0) close(fd);
  Check(bound, "pick a free port (bind 127.0.0.1:0, then close)");
  return ntohs(a.sin_port);
}

typedef std::chrono::steady_clock Clock;

inline bool Expired(const Clock::time_point& deadline) { return Clock::now() >= deadline; }

inline void Pause() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }

// Polls until one node leads and every node knows it as leader; returns its index.
inline int WaitForLeader(int seconds) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(seconds);
  while (!Expired(deadline)) {
    int leaders = 0, leader = -1;
    for (int i = 0; i < kNodes; i++) {
      if (g_nodes[i]->IsLeader()) {
        leaders++;
        leader = i;
      }
    }
    if (leaders == 1) {
      bool agreed = true;
      for (int i = 0; i < kNodes; i++) {
        std::string ip_port;
        agreed = agreed && g_nodes[i]->GetLeader(&ip_port) && ip_port == Addr(g_ports[leader]);
      }
      if (agreed) return leader;
    }
    Pause();
  }
  return -1;
}

// Opens the 3 nodes under g_dir (MakeDataDir first) and waits for a leader
// that every node knows; returns its index.
inline int OpenCluster() {
  PickPorts();
  for (int i = 0; i < kNodes; i++) g_members += (i ? "," : "") + Addr(g_ports[i]);
  for (int i = 0; i < kNodes; i++) {
    std::ostringstream path;
    path << g_dir << "/n" << i;
    floyd::Options opts(g_members, "127.0.0.1", g_ports[i], path.str());
    opts.heartbeat_us = kHeartbeatUs;
    opts.check_leader_us = kCheckLeaderUs;
    floyd::Status s = floyd::Floyd::Open(opts, &g_nodes[i]);
    Check(s.ok() && g_nodes[i] != NULL, "Open a node at " + Addr(g_ports[i]), s.ToString());
  }
  int leader = WaitForLeader(30);
  Check(leader >= 0, "a leader is elected and known by every node");
  return leader;
}

// Runs `call` again while it answers no leader (Incomplete) or Busy (right
// after an election a transaction or a lease call may be Busy briefly):
// certainly not applied. At most 30 s.
inline floyd::Status Retry(const std::function<floyd::Status()>& call) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    floyd::Status s = call();
    bool again = s.floyd_code() == FLOYD_NO_LEADER || s.floyd_code() == FLOYD_BUSY;
    if (!again || Expired(deadline)) return s;
    Pause();
  }
}

}  // namespace floyd_test

#endif  // FLOYD_BINDINGS_CPP_TEST_TEST_CLUSTER_HPP_
