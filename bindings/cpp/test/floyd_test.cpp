// Tests the whole C++ API of floyd.hpp on a 3-node cluster inside this process.
// Prints every check; exits non-zero at the first failure; ends with
// "N passed, 0 failed".
//
// floyd.hpp is included twice on purpose: it proves the include guard.
#include "floyd.hpp"
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
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const int kNodes = 3;
floyd::Floyd* g_nodes[kNodes] = {NULL, NULL, NULL};
int g_ports[kNodes];
std::string g_members;
char g_dir[] = "/tmp/floyd_cpp_test.XXXXXX";
bool g_dir_made = false;
int g_passed = 0;

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

bool RemoveTree(const char* dir) {
  return nftw(dir, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

void CloseAll() {
  for (int i = 0; i < kNodes; i++) {
    delete g_nodes[i];
    g_nodes[i] = NULL;
  }
}

void Check(bool cond, const std::string& what, const std::string& detail = std::string()) {
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

void CheckStatus(const floyd::Status& s, const std::string& what) { Check(s.ok(), what, s.ToString()); }

std::string Addr(int port) {
  std::ostringstream s;
  s << "127.0.0.1:" << port;
  return s.str();
}

// Free ports: bind 127.0.0.1:0 for every node at once, read the ports, close.
void PickPorts() {
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

typedef std::chrono::steady_clock Clock;

bool Expired(const Clock::time_point& deadline) { return Clock::now() >= deadline; }

void Pause() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }

// Polls until one node leads and every node knows it as leader; returns its index.
int WaitForLeader(int seconds) {
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

// Polls DirtyRead on node i until it returns `want` (found) or NotFound (!found).
bool DirtyConverges(int i, const std::string& key, bool found, const std::string& want) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (!Expired(deadline)) {
    std::string v;
    floyd::Status s = g_nodes[i]->DirtyRead(key, &v);
    if (found ? (s.ok() && v == want) : s.IsNotFound()) return true;
    Pause();
  }
  return false;
}

std::string Node(int i) {
  std::ostringstream s;
  s << "node " << i;
  return s.str();
}

void TestStatusAndOptions() {
  floyd::Status ok = floyd::Status::OK();
  Check(ok.ok() && ok.ToString() == "OK" && floyd::Status().ok(), "Status::OK");
  Check(floyd::Status::NotFound("k").IsNotFound() && floyd::Status::NotFound("k").ToString() == "NotFound: k",
        "Status::NotFound", floyd::Status::NotFound("k").ToString());
  Check(floyd::Status::Corruption("c").IsCorruption(), "Status::Corruption");
  Check(floyd::Status::NotSupported("n").IsNotSupported(), "Status::NotSupported");
  Check(floyd::Status::InvalidArgument("a", "b").IsInvalidArgument() &&
            floyd::Status::InvalidArgument("a", "b").ToString() == "Invalid argument: a: b",
        "Status::InvalidArgument with two messages");
  Check(floyd::Status::IOError("io").IsIOError(), "Status::IOError");
  Check(floyd::Status::Incomplete("no leader").IsIncomplete(), "Status::Incomplete");
  Check(floyd::Status::Timeout("t").IsTimeout(), "Status::Timeout");
  Check(floyd::Status::Busy("b").IsBusy() && !floyd::Status::Busy("b").ok(), "Status::Busy");

  // Every FLOYD_* code, through the one mapping.
  using floyd::Status;
  Check(Status::FromCode(FLOYD_OK, "").ok(), "FLOYD_OK -> OK");
  Check(Status::FromCode(FLOYD_NOT_FOUND, "not found").IsNotFound(), "FLOYD_NOT_FOUND -> NotFound");
  Check(Status::FromCode(FLOYD_NO_LEADER, "no leader: x").IsIncomplete(), "FLOYD_NO_LEADER -> Incomplete");
  Check(Status::FromCode(FLOYD_TIMEOUT, "timed out").IsTimeout(), "FLOYD_TIMEOUT -> Timeout");
  Check(Status::FromCode(FLOYD_LOCKED, "held").IsBusy() &&
            Status::FromCode(FLOYD_LOCKED, "held").ToString() == "Busy: LOCKED: held",
        "FLOYD_LOCKED -> Busy", Status::FromCode(FLOYD_LOCKED, "held").ToString());
  Check(Status::FromCode(FLOYD_NOT_HOLDER, "").IsNotFound() &&
            Status::FromCode(FLOYD_NOT_HOLDER, "").floyd_code() == FLOYD_NOT_HOLDER,
        "FLOYD_NOT_HOLDER -> NotFound");
  Check(Status::FromCode(FLOYD_INVALID_ARGUMENT, "bad").IsInvalidArgument(),
        "FLOYD_INVALID_ARGUMENT -> InvalidArgument");
  Check(Status::FromCode(FLOYD_IO_ERROR, "disk").IsIOError(), "FLOYD_IO_ERROR -> IOError");
  Check(Status::FromCode(FLOYD_CORRUPTION, "crc").IsCorruption(), "FLOYD_CORRUPTION -> Corruption");
  Status stopped = Status::FromCode(FLOYD_STOPPED, "stopped: node closed");
  Check(stopped.IsIOError() && stopped.floyd_code() == FLOYD_STOPPED &&
            stopped.ToString() == "IO error: STOPPED: stopped: node closed",
        "FLOYD_STOPPED -> IOError, message kept", stopped.ToString());
  Check(Status::FromCode(FLOYD_BUSY, "busy").IsBusy(), "FLOYD_BUSY -> Busy");
  Status internal = Status::FromCode(FLOYD_INTERNAL, "panic: x");
  Check(internal.IsCorruption() && internal.floyd_code() == FLOYD_INTERNAL &&
            internal.ToString().find("panic: x") != std::string::npos,
        "FLOYD_INTERNAL -> Corruption, message kept", internal.ToString());
  Check(Status::FromCode(99, "").IsCorruption(), "unknown code -> Corruption");
  Check(Status::FromCode(FLOYD_TIMEOUT, "").ToString() == "Timeout: TIMEOUT",
        "an empty message falls back to the code's name");

  floyd::Options d;
  Check(d.members.empty() && d.check_leader_us == 1000000 && d.heartbeat_us == 100000 &&
            d.append_entries_size_once == 4u * 1024 * 1024 && d.append_entries_count_once == 4096 &&
            !d.single_mode,
        "Options() defaults");
  floyd::Options o(" 127.0.0.1:1 ,127.0.0.1:2,,127.0.0.1:3", "127.0.0.1", 1, "/tmp/x");
  Check(o.members.size() == 3 && o.members[0] == "127.0.0.1:1" && o.members[2] == "127.0.0.1:3" &&
            o.local_port == 1 && o.path == "/tmp/x" && !o.single_mode && o.check_leader_us == 1000000,
        "Options(cluster_string, ip, port, path)");
  o.SetMembers("127.0.0.1:1");
  Check(o.members.size() == 1, "Options::SetMembers replaces members");
  Check(floyd::Options("127.0.0.1:1", "127.0.0.1", 1, "/tmp/x").single_mode, "one member forces single_mode");
  Check(o.ToString().find("append_entries_count_once : 4096") != std::string::npos &&
            o.ToString().find("member 0 : 127.0.0.1:1") != std::string::npos,
        "Options::ToString", o.ToString());
  std::printf("# Options::Dump():\n");
  o.Dump();
}

void TestOpenFailures() {
  floyd::Floyd* f = reinterpret_cast<floyd::Floyd*>(1);
  std::string path = std::string(g_dir) + "/bad";
  floyd::Status s = floyd::Floyd::Open(floyd::Options("not-an-address", "127.0.0.1", 1, path), &f);
  Check(s.IsInvalidArgument() && f == NULL, "Open with an invalid member string: InvalidArgument", s.ToString());
  s = floyd::Floyd::Open(floyd::Options("127.0.0.1:1,127.0.0.1:2", "127.0.0.1", 3, path), &f);
  Check(s.IsInvalidArgument() && f == NULL, "Open of a node not among members: InvalidArgument", s.ToString());
  s = floyd::Floyd::Open(floyd::Options("127.0.0.1:1", "127.0.0.1", 1, std::string("a\0b", 3)), &f);
  Check(s.IsInvalidArgument() && f == NULL, "Open with a NUL in the path: InvalidArgument", s.ToString());
  s = floyd::Floyd::Open(floyd::Options("127.0.0.1:1", "127.0.0.1", 1, path), NULL);
  Check(s.IsInvalidArgument(), "Open with a NULL output: InvalidArgument", s.ToString());
}

void TestCluster() {
  PickPorts();
  for (int i = 0; i < kNodes; i++) g_members += (i ? "," : "") + Addr(g_ports[i]);
  for (int i = 0; i < kNodes; i++) {
    std::ostringstream path;
    path << g_dir << "/n" << i;
    floyd::Options opts(g_members, "127.0.0.1", g_ports[i], path.str());
    opts.heartbeat_us = 30000;
    opts.check_leader_us = 300000;
    floyd::Status s = floyd::Floyd::Open(opts, &g_nodes[i]);
    Check(s.ok() && g_nodes[i] != NULL, "Open " + Node(i) + " at " + Addr(g_ports[i]), s.ToString());
  }

  int leader = WaitForLeader(30);
  Check(leader >= 0, "a leader is elected and known by every node");
  int follower = (leader + 1) % kNodes;
  std::printf("# leader is node %d (%s), follower used: node %d\n", leader, Addr(g_ports[leader]).c_str(),
              follower);

  for (int i = 0; i < kNodes; i++) {
    Check(g_nodes[i]->HasLeader(), "HasLeader on " + Node(i));
    Check(g_nodes[i]->IsLeader() == (i == leader), "IsLeader on " + Node(i));
    std::string ip_port, ip;
    int port = 0;
    Check(g_nodes[i]->GetLeader(&ip_port) && ip_port == Addr(g_ports[leader]),
          "GetLeader(ip_port) on " + Node(i), ip_port);
    Check(g_nodes[i]->GetLeader(&ip, &port) && ip == "127.0.0.1" && port == g_ports[leader],
          "GetLeader(ip, port) on " + Node(i), ip);
  }

  CheckStatus(g_nodes[leader]->Write("k1", "v1"), "Write via the leader");
  CheckStatus(g_nodes[follower]->Write("k2", "v2"), "Write via a follower");
  for (int i = 0; i < kNodes; i++) {
    std::string v1, v2;
    floyd::Status s1 = g_nodes[i]->Read("k1", &v1);
    floyd::Status s2 = g_nodes[i]->Read("k2", &v2);
    Check(s1.ok() && v1 == "v1" && s2.ok() && v2 == "v2", "Read k1, k2 from " + Node(i),
          s1.ToString() + " / " + s2.ToString());
  }
  for (int i = 0; i < kNodes; i++) {
    Check(DirtyConverges(i, "k1", true, "v1") && DirtyConverges(i, "k2", true, "v2"),
          "DirtyRead converges on " + Node(i));
  }

  for (int i = 0; i < kNodes; i++) {
    std::string v = "untouched";
    floyd::Status s = g_nodes[i]->Read("missing", &v);
    Check(s.IsNotFound() && v == "untouched", "Read of a missing key: NotFound on " + Node(i), s.ToString());
    s = g_nodes[i]->DirtyRead("missing", &v);
    Check(s.IsNotFound() && v == "untouched", "DirtyRead of a missing key: NotFound on " + Node(i),
          s.ToString());
  }

  CheckStatus(g_nodes[follower]->Delete("k1"), "Delete via a follower");
  CheckStatus(g_nodes[leader]->Delete("never-written"), "Delete of a missing key succeeds");
  for (int i = 0; i < kNodes; i++) {
    std::string v;
    floyd::Status s = g_nodes[i]->Read("k1", &v);
    Check(s.IsNotFound(), "deleted key: Read NotFound on " + Node(i), s.ToString());
    Check(DirtyConverges(i, "k1", false, ""), "deleted key: DirtyRead converges to NotFound on " + Node(i));
  }

  // Binary safety: NUL bytes inside keys and values, every byte value, an empty value.
  std::string nul_value("a\0b\0\0c", 6);
  std::string nul_key("bin\0key", 7);
  std::string all_bytes;
  for (int b = 0; b < 256; b++) all_bytes.push_back(static_cast<char>(b));
  CheckStatus(g_nodes[follower]->Write(nul_key, nul_value), "Write a key and a value with embedded NULs");
  CheckStatus(g_nodes[leader]->Write("bytes", all_bytes), "Write a value holding all 256 byte values");
  CheckStatus(g_nodes[leader]->Write("empty", std::string()), "Write an empty value");
  for (int i = 0; i < kNodes; i++) {
    std::string v, w, e = "x";
    floyd::Status s = g_nodes[i]->Read(nul_key, &v);
    Check(s.ok() && v.size() == 6 && v == nul_value, "embedded NULs round-trip exactly on " + Node(i),
          s.ToString());
    s = g_nodes[i]->Read("bytes", &w);
    Check(s.ok() && w == all_bytes, "all 256 byte values round-trip on " + Node(i), s.ToString());
    s = g_nodes[i]->Read("empty", &e);
    Check(s.ok() && e.empty(), "empty value round-trips on " + Node(i), s.ToString());
    Check(DirtyConverges(i, nul_key, true, nul_value), "DirtyRead of the NUL key converges on " + Node(i));
  }
  CheckStatus(g_nodes[follower]->Delete(nul_key), "Delete a key with an embedded NUL");
  {
    std::string v;
    Check(g_nodes[leader]->Read(nul_key, &v).IsNotFound() && g_nodes[leader]->Read("bin", &v).IsNotFound(),
          "the NUL key is gone (and was never truncated to \"bin\")");
  }

  Check(g_nodes[leader]->Write("", "v").IsInvalidArgument(), "Write of an empty key: InvalidArgument");
  {
    std::string v;
    Check(g_nodes[follower]->Read("", &v).IsInvalidArgument(), "Read of an empty key: InvalidArgument");
    Check(g_nodes[follower]->Read("k2", NULL).IsInvalidArgument(), "Read into NULL: InvalidArgument");
  }

  // Concurrent writers on every node.
  {
    const int threads = 6, items = 20;
    std::vector<std::thread> workers;
    std::vector<int> failures(threads, 0);
    for (int t = 0; t < threads; t++) {
      workers.push_back(std::thread([t, &failures]() {
        for (int j = 0; j < items; j++) {
          std::ostringstream k;
          k << "c_" << t << "_" << j;
          if (!g_nodes[t % kNodes]->Write(k.str(), k.str()).ok()) failures[t]++;
        }
      }));
    }
    for (size_t t = 0; t < workers.size(); t++) workers[t].join();
    int failed = 0;
    for (int t = 0; t < threads; t++) failed += failures[t];
    Check(failed == 0, "6 threads write 20 keys each through all nodes at once");
    std::string v;
    Check(g_nodes[follower]->Read("c_5_19", &v).ok() && v == "c_5_19", "a concurrent write is readable");
  }

  std::set<std::string> want;
  for (int i = 0; i < kNodes; i++) want.insert(Addr(g_ports[i]));
  for (int i = 0; i < kNodes; i++) {
    std::set<std::string> all;
    all.insert("stale");
    floyd::Status s = g_nodes[i]->GetAllServers(&all);
    Check(s.ok() && all == want, "GetAllServers on " + Node(i), s.ToString());
  }
  Check(g_nodes[0]->GetAllServers(NULL).IsInvalidArgument(), "GetAllServers(NULL): InvalidArgument");

  for (int i = 0; i < kNodes; i++) {
    std::string msg;
    bool got = g_nodes[i]->GetServerStatus(&msg);
    std::string first = msg.substr(0, msg.find('\n'));
    Check(got && first.find("Node") != std::string::npos && first.find("Role") != std::string::npos &&
              first.find("LastApplied") != std::string::npos &&
              first.find("Node") < first.find("LastApplied") &&
              msg.find(Addr(g_ports[i]), first.size()) != std::string::npos,
          "GetServerStatus on " + Node(i) + " (header line and this node's row)", msg);
    if (i == leader) std::printf("%s\n", msg.c_str());
  }

  for (int i = 0; i < kNodes; i++) g_nodes[i]->set_log_level(floyd::DEBUG_LEVEL);
  CheckStatus(g_nodes[follower]->Write("after-debug", "1"), "set_log_level(DEBUG_LEVEL), then Write");
  for (int i = 0; i < kNodes; i++) g_nodes[i]->set_log_level(floyd::WARN_LEVEL);
  CheckStatus(g_nodes[follower]->Write("after-warn", "1"), "set_log_level(WARN_LEVEL), then Write");
  {
    std::string log = std::string(g_dir) + "/n0/LOG";
    struct stat st;
    Check(stat(log.c_str(), &st) == 0 && st.st_size > 0, "<path>/LOG exists and is not empty", log);
  }

  floyd::Status lock = g_nodes[leader]->TryLock("lock", "me", 1000);
  Check(lock.IsNotSupported() && !lock.ok() && lock.ToString().find("later") != std::string::npos,
        "TryLock: NotSupported", lock.ToString());
  Check(g_nodes[follower]->UnLock("lock", "me").IsNotSupported(), "UnLock: NotSupported");
  Check(g_nodes[leader]->AddServer("127.0.0.1:1").IsNotSupported(), "AddServer: NotSupported");
  Check(g_nodes[leader]->RemoveServer(Addr(g_ports[follower])).IsNotSupported(), "RemoveServer: NotSupported");

  CloseAll();
  Check(true, "delete every node (floyd_close joins its threads)");

  // Node 0 reopened alone (its two peers stay closed): its data survived, and
  // with no leader the consistent calls fail with Incomplete.
  {
    std::ostringstream path;
    path << g_dir << "/n0";
    floyd::Options opts(g_members, "127.0.0.1", g_ports[0], path.str());
    opts.heartbeat_us = 30000;
    opts.check_leader_us = 300000;
    floyd::Status s = floyd::Floyd::Open(opts, &g_nodes[0]);
    Check(s.ok() && g_nodes[0] != NULL, "reopen node 0 alone", s.ToString());
    std::string v;
    s = g_nodes[0]->DirtyRead("k2", &v);
    Check(s.ok() && v == "v2", "reopened node 0 still has k2 (DirtyRead)", s.ToString());
    std::string ip_port = "untouched", ip = "untouched";
    int port = -7;
    Check(!g_nodes[0]->HasLeader() && !g_nodes[0]->IsLeader() && !g_nodes[0]->GetLeader(&ip_port) &&
              !g_nodes[0]->GetLeader(&ip, &port) && ip_port == "untouched" && ip == "untouched" && port == -7,
          "no leader: HasLeader, IsLeader, both GetLeader false (outputs untouched)");
    s = g_nodes[0]->Write("k3", "v3");
    Check(s.IsIncomplete(), "Write with no leader: Incomplete", s.ToString());
    CloseAll();
    Check(true, "delete the lone node");
  }
}

}  // namespace

int main() {
  Check(mkdtemp(g_dir) != NULL, "mkdtemp");
  g_dir_made = true;
  std::printf("# floyd %s, data in %s\n", floyd_version(), g_dir);
  TestStatusAndOptions();
  TestOpenFailures();
  TestCluster();
  Check(RemoveTree(g_dir), "remove the data directory");
  g_dir_made = false;
  struct stat st;
  Check(stat(g_dir, &st) != 0, "the data directory is gone");
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
