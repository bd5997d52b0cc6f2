// floyd::StateMachine on a 3-node cluster inside this process: propose through
// the leader and a follower gets apply's answer, every node applies the same
// commands, a refusal and an exception in apply reach the proposer as
// FLOYD_STATE_MACHINE (the nodes go on), exceptions in the other methods never
// cross into floyd, and floyd deletes each machine exactly once.
// Prints every check; exits non-zero at the first failure.
#include "floyd.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

const int kNodes = 3;
int g_passed = 0;
std::atomic<int> g_deleted(0);

void Check(bool cond, const std::string& what, const std::string& detail = std::string()) {
  if (cond) {
    std::printf("ok %d - %s\n", ++g_passed, what.c_str());
    std::fflush(stdout);
    return;
  }
  std::printf("FAILED: %s%s%s\n%d passed, 1 failed\n", what.c_str(), detail.empty() ? "" : ": ", detail.c_str(),
              g_passed);
  std::exit(1);
}

// A counter: "add N" answers the new total, "fail" is refused, "throw" throws.
// Every applied (index, command) is recorded for the test to compare.
class Counter : public floyd::StateMachine {
 public:
  Counter() : total_(0), leading_(false) {}
  ~Counter() { g_deleted++; }

  bool apply(uint64_t index, const std::string& data, std::string* result) {
    std::lock_guard<std::mutex> lock(mu_);
    applied_.push_back(std::make_pair(index, data));
    if (data == "fail") {
      *result = "refused by the counter";
      return false;
    }
    if (data == "throw") throw std::runtime_error("counter threw");
    if (data.compare(0, 4, "add ") != 0) {
      *result = "bad command";
      return false;
    }
    total_ += std::atol(data.c_str() + 4);
    std::ostringstream s;
    s << total_;
    *result = s.str();
    return true;
  }

  bool snapshot_save(const std::string& dir) {
    std::ofstream out((dir + "/total").c_str());
    out << total_;
    return static_cast<bool>(out);
  }

  bool snapshot_load(const std::string& dir) {
    std::ifstream in((dir + "/total").c_str());
    long t = 0;
    if (!(in >> t)) return false;
    total_ = t;
    return true;
  }

  void on_leader_start(uint64_t) {
    std::lock_guard<std::mutex> lock(mu_);
    leading_ = true;
  }
  void on_leader_stop() {
    std::lock_guard<std::mutex> lock(mu_);
    leading_ = false;
  }

  std::vector<std::pair<uint64_t, std::string> > Applied() {
    std::lock_guard<std::mutex> lock(mu_);
    return applied_;
  }
  bool Leading() {
    std::lock_guard<std::mutex> lock(mu_);
    return leading_;
  }

 private:
  std::mutex mu_;
  long total_;
  bool leading_;
  std::vector<std::pair<uint64_t, std::string> > applied_;
};

// Throws from everything but apply.
class Thrower : public floyd::StateMachine {
 public:
  bool apply(uint64_t, const std::string&, std::string* result) {
    *result = "ok";
    return true;
  }
  bool snapshot_save(const std::string&) { throw std::runtime_error("save"); }
  bool snapshot_load(const std::string&) { throw 42; }
  void on_leader_start(uint64_t) { throw std::runtime_error("start"); }
  void on_leader_stop() { throw std::runtime_error("stop"); }
};

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

template <typename F>
bool Eventually(F cond) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void TestTrampolines() {
  using floyd::detail::MachineCallbacks;
  Thrower t;
  Check(MachineCallbacks::SnapshotSave(&t, "/tmp") != 0, "an exception in snapshot_save is a failure");
  Check(MachineCallbacks::SnapshotLoad(&t, "/tmp") != 0, "a non-std exception in snapshot_load is a failure");
  MachineCallbacks::LeaderStart(&t, 3);
  MachineCallbacks::LeaderStop(&t);
  Check(true, "exceptions in on_leader_start/on_leader_stop are dropped");
  Counter c;
  char* result = NULL;
  size_t len = 0;
  int rc = MachineCallbacks::Apply(&c, 1, "throw", 5, &result, &len);
  std::string msg(result != NULL ? result : "", len);
  std::free(result);
  Check(rc != 0 && msg == "exception in StateMachine::apply: counter threw", "an exception in apply is a refusal",
        msg);
  Check(floyd::Status::FromCode(FLOYD_STATE_MACHINE, "m").IsInvalidArgument() &&
            floyd::Status::FromCode(FLOYD_STATE_MACHINE, "m").floyd_code() == FLOYD_STATE_MACHINE,
        "FLOYD_STATE_MACHINE -> InvalidArgument");
}

void TestCluster(const std::string& dir) {
  g_deleted = 0;
  int ports[kNodes];
  std::string members;
  for (int i = 0; i < kNodes; i++) {
    ports[i] = FreePort();
    std::ostringstream s;
    s << (i ? "," : "") << "127.0.0.1:" << ports[i];
    members += s.str();
  }
  floyd::Floyd* nodes[kNodes];
  Counter* machines[kNodes];
  for (int i = 0; i < kNodes; i++) {
    std::ostringstream path;
    path << dir << "/node" << i;
    floyd::Options opts(members, "127.0.0.1", ports[i], path.str());
    opts.heartbeat_us = 30000;
    opts.check_leader_us = 300000;
    machines[i] = new Counter();
    floyd::Status s =
        floyd::Floyd::open_with_state_machine(opts, std::unique_ptr<floyd::StateMachine>(machines[i]), &nodes[i]);
    Check(s.ok(), "open a node with a StateMachine", s.ToString());
  }
  int leader = -1;
  Check(Eventually([&] {
          for (int i = 0; i < kNodes; i++)
            if (nodes[i]->IsLeader() && machines[i]->Leading()) leader = i;
          return leader >= 0;
        }),
        "a leader is elected and its machine told so");
  floyd::Floyd* l = nodes[leader];
  floyd::Floyd* f = nodes[(leader + 1) % kNodes];
  std::string answer;
  floyd::Status s = l->propose("add 5", &answer);
  Check(s.ok() && answer == "5", "propose through the leader", s.ToString());
  s = f->propose("add 2", &answer);
  Check(s.ok() && answer == "7", "propose through a follower: the leader's answer", s.ToString());
  s = f->propose("fail", &answer);
  Check(s.floyd_code() == FLOYD_STATE_MACHINE && s.ToString().find("refused by the counter") != std::string::npos,
        "a refusal reaches the proposer", s.ToString());
  s = l->propose("throw", &answer);
  Check(s.floyd_code() == FLOYD_STATE_MACHINE && s.ToString().find("counter threw") != std::string::npos,
        "an exception in apply reaches the proposer as a refusal", s.ToString());
  s = f->propose("add 1", &answer);
  Check(s.ok() && answer == "8", "the nodes go on", s.ToString());
  Check(l->Write("k", "v").IsInvalidArgument(), "Write on a state-machine node: InvalidArgument");
  Check(Eventually([&] {
          for (int i = 0; i < kNodes; i++)
            if (machines[i]->Applied().size() != 5) return false;
          return true;
        }),
        "every node applied every command");
  bool same = true;
  for (int i = 1; i < kNodes; i++) same = same && machines[i]->Applied() == machines[0]->Applied();
  Check(same, "every node applied the same commands at the same indexes");
  for (int i = 0; i < kNodes; i++) delete nodes[i];
  Check(g_deleted == kNodes, "closing deletes each machine once");

  floyd::Options bad("", "127.0.0.1", 1, dir + "/bad");
  floyd::Floyd* none = NULL;
  s = floyd::Floyd::open_with_state_machine(bad, std::unique_ptr<floyd::StateMachine>(new Counter()), &none);
  Check(s.IsInvalidArgument() && none == NULL && g_deleted == kNodes + 1, "a failed open deletes the machine",
        s.ToString());
}

}  // namespace

int main() {
  char dir[] = "/tmp/floyd_cpp_sm_test.XXXXXX";
  Check(mkdtemp(dir) != NULL, "mkdtemp");
  TestTrampolines();
  TestCluster(dir);
  std::string rm = std::string("rm -rf '") + dir + "'";
  Check(std::system(rm.c_str()) == 0, "remove the data directory");
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
