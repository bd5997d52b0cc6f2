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

#include <atomic>
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

// One more free port (bind 127.0.0.1:0, read it, close); 0 on failure.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool bound = fd >= 0 && bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof a) == 0 &&
               getsockname(fd, reinterpret_cast<struct sockaddr*>(&a), &len) == 0;
  if (fd >= 0) close(fd);
  return bound ? ntohs(a.sin_port) : 0;
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
            !d.single_mode && !d.join,
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
  floyd::Options tls("127.0.0.1:1", "127.0.0.1", 1, path);
  tls.tls_ca_path = path + "/ca.pem";
  s = floyd::Floyd::Open(tls, &f);
  Check(s.IsInvalidArgument() && f == NULL, "Open with only tls_ca_path: InvalidArgument", s.ToString());
  tls.tls_cert_path = path + "/cert.pem";
  tls.tls_key_path = path + "/key.pem";
  s = floyd::Floyd::Open(tls, &f);
  Check(s.IsInvalidArgument() && f == NULL && s.ToString().find("ca.pem") != std::string::npos,
        "Open with unreadable TLS files: InvalidArgument naming the file", s.ToString());
}

// Locks through the leader and a follower: tokens, renewal, LOCKED, NOT_HOLDER, expiry, bad input.
void TestLocks(floyd::Floyd* l, floyd::Floyd* f) {
  uint64_t t1 = 0, t2 = 0, t = 0;
  CheckStatus(f->TryLock("lock", "alice", 10000, &t1), "TryLock via a follower");
  Check(t1 > 0, "the fencing token is positive");
  CheckStatus(l->TryLock("lock", "alice", 10000, &t), "TryLock renewal by the holder");
  Check(t == t1, "a renewal keeps the token");
  CheckStatus(l->TryLock("lock", "alice", 10000), "TryLock without a token (Floyd's signature)");
  t = 777;
  floyd::Status s = l->TryLock("lock", "bob", 10000, &t);
  Check(s.IsBusy() && s.floyd_code() == FLOYD_LOCKED && s.ToString().find("LOCKED") != std::string::npos,
        "TryLock by another holder: Busy (LOCKED)", s.ToString());
  Check(t == 777, "a refused TryLock writes no token");
  s = f->UnLock("lock", "bob");
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_HOLDER, "UnLock by another holder: NotFound (NOT_HOLDER)",
        s.ToString());
  CheckStatus(l->UnLock("lock", "alice"), "UnLock by the holder");
  Check(l->UnLock("lock", "alice").floyd_code() == FLOYD_NOT_HOLDER, "UnLock of a free lock: NOT_HOLDER");
  CheckStatus(f->TryLock("lock", "bob", 10000, &t2), "TryLock by another holder once free");
  Check(t2 > t1, "re-acquisition gives a larger token");
  std::string bin_name("lo\0ck", 5);
  CheckStatus(l->TryLock(bin_name, std::string("h\0x", 3), 10000), "a lock name and holder with NUL bytes");
  Check(l->TryLock(bin_name, "h", 10000).IsBusy(), "names and holders are compared as bytes");

  uint64_t s1 = 0, s2 = 0;
  CheckStatus(l->TryLock("short", "alice", 200, &s1), "TryLock with a 200 ms lease");
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(15);
  floyd::Status taken;
  while (!(taken = f->TryLock("short", "bob", 10000, &s2)).ok() && taken.IsBusy() && !Expired(deadline)) Pause();
  Check(taken.ok() && s2 > s1, "the lease runs out and another holder takes the lock", taken.ToString());
  Check(l->UnLock("short", "alice").floyd_code() == FLOYD_NOT_HOLDER, "the expired holder: NOT_HOLDER");

  Check(l->TryLock("", "h", 1000).IsInvalidArgument(), "TryLock with an empty name: InvalidArgument");
  Check(l->TryLock("n", "", 1000).IsInvalidArgument(), "TryLock with an empty holder: InvalidArgument");
  Check(l->TryLock("n", "h", 0).IsInvalidArgument(), "TryLock with ttl 0: InvalidArgument");
  Check(l->TryLock("n", "h", 86400001ull).IsInvalidArgument(), "TryLock with ttl over 24 h: InvalidArgument");
  Check(l->UnLock("", "h").IsInvalidArgument(), "UnLock with an empty name: InvalidArgument");
  Check(l->UnLock("n", "").IsInvalidArgument(), "UnLock with an empty holder: InvalidArgument");
}

std::string Join(const std::set<std::string>& s) {
  std::string out;
  for (std::set<std::string>::const_iterator i = s.begin(); i != s.end(); ++i) out += (out.empty() ? "" : ",") + *i;
  return out;
}

// Membership on the 3-node cluster: bad input, a fourth node that joins and
// leaves; then a lone node that cannot remove its last voter.
void TestMembership(int leader, int follower) {
  floyd::Floyd* l = g_nodes[leader];
  floyd::Floyd* f = g_nodes[follower];
  CheckStatus(f->AddServer(Addr(g_ports[follower])), "AddServer of an existing voter: OK");
  floyd::Status s = l->RemoveServer("127.0.0.1:1");
  Check(s.IsInvalidArgument(), "RemoveServer of a non-member: InvalidArgument", s.ToString());
  Check(l->AddServer("not-an-address").IsInvalidArgument(), "AddServer of a bad address: InvalidArgument");
  Check(l->AddServer(std::string("127.0.0.1:1\0", 12)).IsInvalidArgument(), "AddServer with a NUL: InvalidArgument");
  Check(l->RemoveServer("").IsInvalidArgument(), "RemoveServer of an empty address: InvalidArgument");

  std::set<std::string> before;
  CheckStatus(l->GetAllServers(&before), "GetAllServers before the join");
  int port = FreePort();
  Check(port > 0, "pick a free port for a fourth node");
  // The new node knows only the existing members (a single one here: join
  // must not turn into single_mode).
  floyd::Options opts(Addr(g_ports[leader]), "127.0.0.1", port, std::string(g_dir) + "/joiner");
  opts.heartbeat_us = 30000;
  opts.check_leader_us = 300000;
  opts.join = true;
  Check(opts.ToString().find("join : true") != std::string::npos, "Options::ToString shows join", opts.ToString());
  floyd::Floyd* j = NULL;
  s = floyd::Floyd::Open(opts, &j);
  Check(s.ok() && j != NULL, "Open a node with join = true", s.ToString());
  Check(!j->IsLeader(), "a joining node does not lead");
  CheckStatus(f->AddServer(Addr(port)), "AddServer of the joining node through a follower");
  std::set<std::string> four = before, seen;
  four.insert(Addr(port));
  CheckStatus(l->GetAllServers(&seen), "GetAllServers after AddServer");
  Check(seen == four, "the leader lists the new member", Join(seen));
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  while (!(j->GetAllServers(&seen).ok() && seen == four) && !Expired(deadline)) Pause();
  Check(seen == four, "the new member learns the configuration", Join(seen));
  CheckStatus(j->Write("joined", "yes"), "Write through the new member");
  CheckStatus(l->RemoveServer(Addr(port)), "RemoveServer of the new member through the leader");
  CheckStatus(l->GetAllServers(&seen), "GetAllServers after RemoveServer");
  Check(seen == before, "the original members are left", Join(seen));
  delete j;

  port = FreePort();
  Check(port > 0, "pick a free port for a lone node");
  floyd::Floyd* solo = NULL;
  s = floyd::Floyd::Open(floyd::Options(Addr(port), "127.0.0.1", port, std::string(g_dir) + "/solo"), &solo);
  Check(s.ok() && solo != NULL, "Open a lone node", s.ToString());
  CheckStatus(solo->Write("k", "v"), "the lone node serves");
  CheckStatus(solo->GetAllServers(&seen), "GetAllServers on the lone node");
  Check(seen.size() == 1 && *seen.begin() == Addr(port), "the lone node lists itself", Join(seen));
  CheckStatus(solo->AddServer(Addr(port)), "the lone node adds itself: OK");
  s = solo->RemoveServer(Addr(port));
  Check(s.IsInvalidArgument(), "RemoveServer of the last voter: InvalidArgument", s.ToString());
  delete solo;
}

// Leadership moves to the follower, asked of the leader; refusals change nothing.
void TestTransferLeader(int leader, int follower) {
  floyd::Floyd* l = g_nodes[leader];
  CheckStatus(l->TransferLeader(Addr(g_ports[leader])), "TransferLeader to the leader itself: OK");
  floyd::Status s = l->TransferLeader("127.0.0.1:1");
  Check(s.IsInvalidArgument(), "TransferLeader to a non-member: InvalidArgument", s.ToString());
  Check(l->TransferLeader(std::string("127.0.0.1:1\0", 12)).IsInvalidArgument(),
        "TransferLeader with a NUL: InvalidArgument");
  CheckStatus(l->TransferLeader(Addr(g_ports[follower])), "TransferLeader to the follower");
  Check(g_nodes[follower]->IsLeader(), "the follower leads now");
  Check(WaitForLeader(30) == follower, "every node follows the new leader");
  CheckStatus(l->Write("after-transfer", "yes"), "Write through the old leader");
  std::string v;
  CheckStatus(g_nodes[follower]->Read("after-transfer", &v), "Read from the new leader");
  Check(v == "yes", "the write is there", v);
}

// WriteAsync / DeleteAsync / ReadAsync: each completion runs once, off the
// calling thread; refusals return at once and never call back.
void TestAsync() {
  int leader = WaitForLeader(30);
  Check(leader >= 0, "a leader for the async calls");
  floyd::Floyd* via[2] = {g_nodes[leader], g_nodes[(leader + 1) % kNodes]};
  const int n = 300;
  std::atomic<int> ok(0), calls(0), off_thread(0);
  std::thread::id me = std::this_thread::get_id();
  for (int i = 0; i < n; i++) {
    std::string key = "async-" + std::to_string(i);
    floyd::Status s = via[i % 2]->WriteAsync(key, key, [&, me](const floyd::Status& st) {
      if (st.ok()) ok++;
      if (std::this_thread::get_id() != me) off_thread++;
      calls++;
    });
    Check(s.ok() || i > 0, "WriteAsync accepted", s.ToString());
  }
  for (int i = 0; i < 3000 && calls.load() < n; i++) Pause();
  Check(calls.load() == n && ok.load() == n, "every WriteAsync answered ok once");
  Check(off_thread.load() == n, "every completion ran on a library thread");
  std::atomic<int> reads(0), good(0);
  for (int i = 0; i < n; i += 11) {
    std::string key = "async-" + std::to_string(i);
    CheckStatus(g_nodes[i % kNodes]->ReadAsync(key, [&, key](const floyd::Status& st, const std::string& v) {
      if (st.ok() && v == key) good++;
      reads++;
    }), "ReadAsync accepted");
  }
  const int want = (n + 10) / 11;
  for (int i = 0; i < 3000 && reads.load() < want; i++) Pause();
  Check(good.load() == want, "ReadAsync from every node sees every write");
  std::atomic<int> deleted(0);
  CheckStatus(via[1]->DeleteAsync("async-0", [&](const floyd::Status& st) { deleted = st.ok() ? 1 : 2; }),
              "DeleteAsync accepted");
  for (int i = 0; i < 3000 && deleted.load() == 0; i++) Pause();
  std::string v;
  Check(deleted.load() == 1 && via[0]->Read("async-0", &v).IsNotFound(), "DeleteAsync removed the key");
  std::atomic<int> refused(0);
  Check(via[0]->WriteAsync("", "v", [&](const floyd::Status&) { refused++; }).IsInvalidArgument(),
        "WriteAsync with an empty key: InvalidArgument");
  Check(via[0]->WriteAsync("k", "v", floyd::Floyd::DoneCallback()).IsInvalidArgument(),
        "WriteAsync with an empty callback: InvalidArgument");
  Check(via[0]->ReadAsync("", [&](const floyd::Status&, const std::string&) { refused++; }).IsInvalidArgument(),
        "ReadAsync with an empty key: InvalidArgument");
  Pause();
  Check(refused.load() == 0 && via[0]->AsyncInFlight() == 0, "a refused call never calls back");
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

  TestLocks(g_nodes[leader], g_nodes[follower]);
  TestMembership(leader, follower);
  TestTransferLeader(leader, follower);
  TestAsync();

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
    std::atomic<int> stopped(0);
    CheckStatus(g_nodes[0]->WriteAsync("k4", "v4", [&](const floyd::Status& st) {
      stopped = st.floyd_code() == FLOYD_STOPPED ? 1 : 2;
    }), "WriteAsync with no leader is accepted (it waits for one)");
    CloseAll();
    Check(stopped.load() == 1, "deleting the node answers it STOPPED before the destructor returns");
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
