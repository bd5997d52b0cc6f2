// floyd::Host and floyd::HostOptions: three hosts in this process, on free
// ports, each running the same three Raft groups (and one group with a
// StateMachine). Every group elects, writes and reads through its own
// floyd::Floyd and keeps apart from the others; a host lists its groups and
// reports its status; a group closed everywhere and reopened keeps its data,
// a replica closed and reopened catches up, a closed group dropped everywhere
// comes back empty; bad input is refused; a Host moves; a closed host's
// groups answer Stopped and their Floyds are deleted safely after the Host.
// Every wait polls a condition against a deadline. Prints every check; exits
// non-zero at the first failure.
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
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const int kHosts = 3;
const int kGroups = 3;
// Group ids need not be small or dense.
const uint64_t kGroupIds[kGroups] = {1, 7, uint64_t(1) << 40};
const uint64_t kMachineGroup = 99;

floyd::Host* g_hosts[kHosts] = {NULL, NULL, NULL};
floyd::Floyd* g_groups[kHosts][kGroups];
floyd::Floyd* g_machines[kHosts] = {NULL, NULL, NULL};
int g_ports[kHosts];
std::string g_members;
char g_dir[] = "/tmp/floyd_cpp_host_test.XXXXXX";
bool g_dir_made = false;
int g_passed = 0;

// Log lines per host, and lines a host's callback got after its Close returned.
std::atomic<int> g_log_lines[kHosts];
std::atomic<bool> g_host_closed[kHosts];
std::atomic<int> g_late_lines(0);
std::atomic<int> g_machines_deleted(0);

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

bool RemoveTree(const char* dir) { return nftw(dir, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) == 0; }

void CloseAll() {
  for (int i = 0; i < kHosts; i++) {
    for (int g = 0; g < kGroups; g++) {
      delete g_groups[i][g];
      g_groups[i][g] = NULL;
    }
    delete g_machines[i];
    g_machines[i] = NULL;
    delete g_hosts[i];
    g_hosts[i] = NULL;
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

bool IsStopped(const floyd::Status& s) { return s.IsIOError() && s.floyd_code() == FLOYD_STOPPED; }

std::string Addr(int port) {
  std::ostringstream s;
  s << "127.0.0.1:" << port;
  return s.str();
}

std::string Str(uint64_t n) {
  std::ostringstream s;
  s << n;
  return s.str();
}

std::string Where(int host, int g) { return "group " + Str(kGroupIds[g]) + " on host " + Str(host); }

// Free ports: bind 127.0.0.1:0 for every host at once, read the ports, close.
void PickPorts() {
  int fds[kHosts];
  bool bound = true;
  for (int i = 0; i < kHosts; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bound = bound && fds[i] >= 0 && bind(fds[i], reinterpret_cast<struct sockaddr*>(&a), sizeof a) == 0 &&
            getsockname(fds[i], reinterpret_cast<struct sockaddr*>(&a), &len) == 0;
    g_ports[i] = ntohs(a.sin_port);
  }
  for (int i = 0; i < kHosts; i++) {
    if (fds[i] >= 0) close(fds[i]);
  }
  Check(bound, "pick 3 free ports (bind 127.0.0.1:0, then close)");
}

typedef std::chrono::steady_clock Clock;

Clock::time_point Deadline(int seconds) { return Clock::now() + std::chrono::seconds(seconds); }

bool Expired(const Clock::time_point& deadline) { return Clock::now() >= deadline; }

void Pause() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }

floyd::HostOptions HostOpts(int i) {
  floyd::HostOptions o("127.0.0.1", g_ports[i], std::string(g_dir) + "/host" + Str(i));
  o.workers = 2;
  o.cluster_id = "cpp-host-test";
  o.log_callback = [i](int level, const std::string& line) {
    (void)level;
    (void)line;
    g_log_lines[i]++;
    if (g_host_closed[i]) g_late_lines++;
  };
  return o;
}

// A group's options naming host i (the path is not used on a host).
floyd::Options GroupOpts(int i) {
  floyd::Options o(g_members, "127.0.0.1", g_ports[i], "");
  o.heartbeat_us = 30000;
  o.check_leader_us = 300000;
  return o;
}

void OpenGroup(int i, int g) {
  floyd::Floyd* f = NULL;
  floyd::Status s = g_hosts[i]->OpenGroup(kGroupIds[g], GroupOpts(i), &f);
  Check(s.ok() && f != NULL, "OpenGroup: " + Where(i, g), s.ToString());
  g_groups[i][g] = f;
}

void CloseGroup(int i, int g) {
  delete g_groups[i][g];
  g_groups[i][g] = NULL;
}

// Polls until the open replicas of group g agree on one leader that knows it
// leads; returns its host, -1 at the deadline.
int WaitForLeader(int g) {
  Clock::time_point deadline = Deadline(20);
  while (!Expired(deadline)) {
    int leaders = 0, leader = -1;
    for (int i = 0; i < kHosts; i++) {
      if (g_groups[i][g] != NULL && g_groups[i][g]->IsLeader()) {
        leaders++;
        leader = i;
      }
    }
    if (leaders == 1) {
      bool agreed = true;
      for (int i = 0; i < kHosts; i++) {
        std::string ip_port;
        if (g_groups[i][g] == NULL) continue;
        agreed = agreed && g_groups[i][g]->GetLeader(&ip_port) && ip_port == Addr(g_ports[leader]);
      }
      if (agreed) return leader;
    }
    Pause();
  }
  return -1;
}

// Writes through any open replica of group g until one succeeds or the deadline passes.
floyd::Status WriteRetrying(int g, const std::string& key, const std::string& value) {
  Clock::time_point deadline = Deadline(20);
  floyd::Status s = floyd::Status::Incomplete("no replica open");
  while (!Expired(deadline)) {
    for (int i = 0; i < kHosts; i++) {
      if (g_groups[i][g] == NULL) continue;
      s = g_groups[i][g]->Write(key, value);
      if (s.ok()) return s;
    }
    Pause();
  }
  return s;
}

// Polls DirtyRead of replica (i, g) until it holds `want`.
bool DirtyConverges(int i, int g, const std::string& key, const std::string& want) {
  Clock::time_point deadline = Deadline(20);
  while (!Expired(deadline)) {
    std::string v;
    if (g_groups[i][g]->DirtyRead(key, &v).ok() && v == want) return true;
    Pause();
  }
  return false;
}

std::vector<uint64_t> Sorted(const std::vector<uint64_t>& ids) {
  std::vector<uint64_t> out(ids);
  for (size_t a = 0; a < out.size(); a++) {
    for (size_t b = a + 1; b < out.size(); b++) {
      if (out[b] < out[a]) std::swap(out[a], out[b]);
    }
  }
  return out;
}

std::string Join(const std::vector<uint64_t>& ids) {
  std::string s;
  for (size_t k = 0; k < ids.size(); k++) s += (k ? "," : "") + Str(ids[k]);
  return s;
}

// The ids of the groups open on host i, checked against `want` (any order).
void CheckGroups(int i, const std::vector<uint64_t>& want, const std::string& what) {
  std::vector<uint64_t> ids(1, 12345);  // replaced
  floyd::Status s = g_hosts[i]->ListGroups(&ids);
  Check(s.ok() && ids == Sorted(want), what + ": ListGroups on host " + Str(i) + " is [" + Join(Sorted(want)) + "]",
        s.ToString() + " [" + Join(ids) + "]");
}

std::vector<uint64_t> AllGroups() { return std::vector<uint64_t>(kGroupIds, kGroupIds + kGroups); }

// A counter machine: "add N" answers the new total.
class Counter : public floyd::StateMachine {
 public:
  Counter() : total_(0) {}
  ~Counter() { g_machines_deleted++; }
  bool apply(uint64_t, const std::string& data, std::string* result) {
    std::lock_guard<std::mutex> lock(mu_);
    if (data.compare(0, 4, "add ") != 0) {
      *result = "bad command";
      return false;
    }
    total_ += std::atol(data.c_str() + 4);
    *result = Str(total_);
    return true;
  }
  bool snapshot_save(const std::string&) { return true; }
  bool snapshot_load(const std::string&) { return true; }

 private:
  std::mutex mu_;
  long total_;
};

void TestOpenHosts() {
  for (int i = 0; i < kHosts; i++) {
    floyd::Host* h = NULL;
    floyd::Status s = floyd::Host::Open(HostOpts(i), &h);
    Check(s.ok() && h != NULL && !h->closed(), "Host::Open at " + Addr(g_ports[i]), s.ToString());
    g_hosts[i] = h;
  }
  for (int i = 0; i < kHosts; i++) CheckGroups(i, std::vector<uint64_t>(), "a new host runs no group");
  for (int i = 0; i < kHosts; i++) {
    for (int g = 0; g < kGroups; g++) OpenGroup(i, g);
  }
  for (int i = 0; i < kHosts; i++) CheckGroups(i, AllGroups(), "every group open");
}

void TestBadInput() {
  floyd::Host* h = reinterpret_cast<floyd::Host*>(1);
  floyd::HostOptions same_port = HostOpts(0);
  same_port.path = std::string(g_dir) + "/same-port";
  floyd::Status s = floyd::Host::Open(same_port, &h);
  Check(!s.ok() && h == NULL, "a second host on a port in use is refused, *host NULL", s.ToString());
  Check(floyd::Host::Open(HostOpts(0), NULL).IsInvalidArgument(), "Host::Open with a NULL output");
  floyd::HostOptions partial_tls = HostOpts(0);
  partial_tls.tls_ca_path = "/tmp/ca.pem";
  Check(floyd::Host::Open(partial_tls, &h).IsInvalidArgument() && h == NULL, "HostOptions with one TLS path of three");
  floyd::HostOptions nul_path = HostOpts(0);
  nul_path.path += std::string(1, '\0');
  Check(floyd::Host::Open(nul_path, &h).IsInvalidArgument(), "HostOptions path with a NUL byte");

  floyd::Floyd* f = reinterpret_cast<floyd::Floyd*>(1);
  s = g_hosts[0]->OpenGroup(kGroupIds[0], GroupOpts(0), &f);
  Check(s.IsInvalidArgument() && f == NULL, "a group already open on the host is refused", s.ToString());
  s = g_hosts[1]->OpenGroup(42, GroupOpts(0), &f);
  Check(s.IsInvalidArgument() && f == NULL, "a group's Options naming another host are refused", s.ToString());
  floyd::Options tls = GroupOpts(0);
  tls.tls_ca_path = "/tmp/ca.pem";
  tls.tls_cert_path = "/tmp/cert.pem";
  tls.tls_key_path = "/tmp/key.pem";
  s = g_hosts[0]->OpenGroup(42, tls, &f);
  Check(s.IsInvalidArgument() && f == NULL, "TLS in a group's Options is refused (it is the host's)", s.ToString());
  Check(g_hosts[0]->OpenGroup(42, GroupOpts(0), NULL).IsInvalidArgument(), "OpenGroup with a NULL output");
  Check(g_hosts[0]->ListGroups(NULL).IsInvalidArgument(), "ListGroups(NULL)");
  Check(g_hosts[0]->StatusJson(NULL).IsInvalidArgument(), "StatusJson(NULL)");

  int deleted = g_machines_deleted;
  s = g_hosts[0]->OpenGroupWithStateMachine(kGroupIds[0], GroupOpts(0),
                                            std::unique_ptr<floyd::StateMachine>(new Counter()), &f);
  Check(s.IsInvalidArgument() && f == NULL && g_machines_deleted == deleted + 1,
        "OpenGroupWithStateMachine on an open group: refused, the machine deleted once", s.ToString());
  s = g_hosts[0]->OpenGroupWithStateMachine(42, GroupOpts(0), std::unique_ptr<floyd::StateMachine>(), &f);
  Check(s.IsInvalidArgument() && f == NULL, "OpenGroupWithStateMachine without a machine", s.ToString());
  CheckGroups(0, AllGroups(), "nothing refused was opened");

  // A Host that was never opened answers Stopped, and takes and deletes a machine.
  floyd::Host closed;
  Check(closed.closed(), "a default Host is closed");
  s = closed.OpenGroup(1, GroupOpts(0), &f);
  Check(IsStopped(s) && f == NULL, "OpenGroup on a closed Host: Stopped", s.ToString());
  std::vector<uint64_t> ids;
  Check(IsStopped(closed.ListGroups(&ids)), "ListGroups on a closed Host: Stopped");
  Check(IsStopped(closed.DropGroup(1)), "DropGroup on a closed Host: Stopped");
  std::string json;
  Check(IsStopped(closed.StatusJson(&json)), "StatusJson on a closed Host: Stopped");
  deleted = g_machines_deleted;
  s = closed.OpenGroupWithStateMachine(1, GroupOpts(0), std::unique_ptr<floyd::StateMachine>(new Counter()), &f);
  Check(IsStopped(s) && g_machines_deleted == deleted + 1, "OpenGroupWithStateMachine on a closed Host deletes the machine");
  closed.Close();  // idempotent
}

void TestGroupsServeAndKeepApart() {
  for (int g = 0; g < kGroups; g++) {
    int leader = WaitForLeader(g);
    Check(leader >= 0, "group " + Str(kGroupIds[g]) + " elects a leader all its replicas know");
    // Through a follower: it forwards to the leader.
    int follower = (leader + 1) % kHosts;
    CheckStatus(g_groups[follower][g]->Write("k", "value of " + Str(kGroupIds[g])),
                "Write k through a follower of group " + Str(kGroupIds[g]));
    CheckStatus(g_groups[leader][g]->Write("only-" + Str(kGroupIds[g]), "x"),
                "Write a key of its own through the leader of group " + Str(kGroupIds[g]));
  }
  for (int g = 0; g < kGroups; g++) {
    for (int i = 0; i < kHosts; i++) {
      std::string v;
      floyd::Status s = g_groups[i][g]->Read("k", &v);
      Check(s.ok() && v == "value of " + Str(kGroupIds[g]), "Read k reads its own group's value: " + Where(i, g),
            s.ToString() + " " + v);
      for (int other = 0; other < kGroups; other++) {
        if (other == g) continue;
        s = g_groups[i][g]->Read("only-" + Str(kGroupIds[other]), &v);
        Check(s.IsNotFound(), "another group's key is not found in " + Where(i, g), s.ToString());
      }
      Check(DirtyConverges(i, g, "k", "value of " + Str(kGroupIds[g])), "DirtyRead converges: " + Where(i, g));
    }
  }
  // A group's Floyd is a Floyd: the rest of the API works on it.
  std::set<std::string> servers;
  CheckStatus(g_groups[0][0]->GetAllServers(&servers), "GetAllServers on a group");
  Check(servers.size() == 3 && servers.count(Addr(g_ports[2])) == 1, "a group's members are the host addresses");
  uint64_t token = 0;
  CheckStatus(g_groups[1][1]->TryLock("lock", "me", 60000, &token), "TryLock on a group");
  CheckStatus(g_groups[2][1]->UnLock("lock", "me"), "UnLock on a group, through another replica");
}

void TestStatusJson() {
  for (int i = 0; i < kHosts; i++) {
    std::string json;
    floyd::Status s = g_hosts[i]->StatusJson(&json);
    bool names_all = s.ok() && json.find("\"host\":\"" + Addr(g_ports[i]) + "\"") != std::string::npos;
    for (int g = 0; g < kGroups; g++) {
      names_all = names_all && json.find("\"group\":" + Str(kGroupIds[g]) + ",") != std::string::npos;
    }
    Check(names_all, "StatusJson on host " + Str(i) + " names the host and every group", s.ToString() + " " + json);
    std::string metrics;
    s = g_hosts[i]->Metrics(&metrics);
    bool labelled = s.ok() && metrics.find("\n# EOF\n") != std::string::npos;
    for (int g = 0; g < kGroups; g++) {
      labelled = labelled && metrics.find("floyd_commit_index{group=\"" + Str(kGroupIds[g]) + "\"}") != std::string::npos;
    }
    Check(labelled, "Metrics on host " + Str(i) + " label every group", s.ToString());
  }
}

void TestStateMachineGroup() {
  for (int i = 0; i < kHosts; i++) {
    floyd::Floyd* f = NULL;
    floyd::Status s = g_hosts[i]->OpenGroupWithStateMachine(kMachineGroup, GroupOpts(i),
                                                            std::unique_ptr<floyd::StateMachine>(new Counter()), &f);
    Check(s.ok() && f != NULL, "OpenGroupWithStateMachine on host " + Str(i), s.ToString());
    g_machines[i] = f;
  }
  std::vector<uint64_t> want = AllGroups();
  want.push_back(kMachineGroup);
  CheckGroups(0, want, "the machine's group open too");
  Clock::time_point deadline = Deadline(20);
  std::string answer;
  floyd::Status s;
  do {
    s = g_machines[1]->propose("add 5", &answer);
    if (s.ok()) break;
    Pause();
  } while (!Expired(deadline));
  Check(s.ok() && answer == "5", "propose on the machine's group", s.ToString() + " " + answer);
  s = g_machines[2]->propose("add 2", &answer);
  Check(s.ok() && answer == "7", "propose through another replica", s.ToString() + " " + answer);
  s = g_machines[0]->Write("k", "v");
  Check(s.IsInvalidArgument(), "Write on a machine's group is InvalidArgument", s.ToString());
  int deleted = g_machines_deleted;
  for (int i = 0; i < kHosts; i++) {
    delete g_machines[i];
    g_machines[i] = NULL;
  }
  Check(g_machines_deleted == deleted + kHosts, "deleting the group's Floyds deletes each machine once");
  CheckGroups(0, AllGroups(), "the machine's group closed");
}

void TestCloseAndReopen() {
  const int g = 0;
  // A replica closed and reopened catches up with what it missed.
  CloseGroup(2, g);
  std::vector<uint64_t> rest(kGroupIds + 1, kGroupIds + kGroups);
  CheckGroups(2, rest, "one replica of group " + Str(kGroupIds[g]) + " closed");
  CheckStatus(WriteRetrying(g, "missed", "while closed"), "the two other replicas take writes");
  OpenGroup(2, g);
  Check(DirtyConverges(2, g, "missed", "while closed"), "the reopened replica catches up");

  // Closed on every host and reopened: the data was kept.
  for (int i = 0; i < kHosts; i++) CloseGroup(i, g);
  for (int i = 0; i < kHosts; i++) CheckGroups(i, rest, "group " + Str(kGroupIds[g]) + " closed everywhere");
  CheckStatus(WriteRetrying(1, "during", "a close"), "the other groups serve on");
  for (int i = 0; i < kHosts; i++) OpenGroup(i, g);
  Check(WaitForLeader(g) >= 0, "the reopened group elects a leader");
  for (int i = 0; i < kHosts; i++) {
    std::string v;
    Clock::time_point deadline = Deadline(20);
    floyd::Status s;
    do {
      s = g_groups[i][g]->Read("k", &v);
      if (s.ok()) break;
      Pause();
    } while (!Expired(deadline));
    Check(s.ok() && v == "value of " + Str(kGroupIds[g]), "a reopened group keeps its data: " + Where(i, g),
          s.ToString() + " " + v);
  }
}

void TestDrop() {
  const int g = 2;
  floyd::Status s = g_hosts[0]->DropGroup(kGroupIds[g]);
  Check(s.IsInvalidArgument(), "DropGroup of a group open here is refused", s.ToString());
  for (int i = 0; i < kHosts; i++) CloseGroup(i, g);
  for (int i = 0; i < kHosts; i++) {
    CheckStatus(g_hosts[i]->DropGroup(kGroupIds[g]), "DropGroup of the closed " + Where(i, g));
  }
  std::vector<uint64_t> rest(kGroupIds, kGroupIds + 2);
  CheckGroups(0, rest, "a dropped group is not listed");
  for (int i = 0; i < kHosts; i++) OpenGroup(i, g);
  Check(WaitForLeader(g) >= 0, "the dropped group, opened again, elects a leader");
  for (int i = 0; i < kHosts; i++) {
    std::string v = "untouched";
    s = g_groups[i][g]->Read("k", &v);
    Check(s.IsNotFound() && v == "untouched", "a dropped group comes back empty: " + Where(i, g), s.ToString());
  }
  CheckStatus(WriteRetrying(g, "k", "new life"), "the recreated group takes writes");
}

void TestMove() {
  // The group's Floyds do not depend on which Host object holds the host.
  floyd::Host moved(std::move(*g_hosts[2]));
  Check(g_hosts[2]->closed() && !moved.closed(), "a moved-from Host is closed, the new one open");
  std::vector<uint64_t> ids;
  Check(IsStopped(g_hosts[2]->ListGroups(&ids)), "a moved-from Host answers Stopped");
  delete g_hosts[2];  // closes nothing: it holds no host any more
  g_hosts[2] = new floyd::Host();
  *g_hosts[2] = std::move(moved);
  CheckGroups(2, AllGroups(), "move assignment: the host runs on in its new object");
  CheckStatus(WriteRetrying(0, "after", "the move"), "the moved host's groups serve on");
  Check(DirtyConverges(2, 0, "after", "the move"), "the moved host's replica applies");
}

void TestHostClose() {
  int lines_before = g_log_lines[0];
  Check(lines_before > 0, "the log callback got the host's lines", Str(lines_before));
  g_hosts[0]->Close();
  g_host_closed[0] = true;
  Check(g_hosts[0]->closed(), "Close: the Host is closed");
  g_hosts[0]->Close();  // idempotent
  std::vector<uint64_t> ids;
  Check(IsStopped(g_hosts[0]->ListGroups(&ids)), "a closed Host answers Stopped");
  for (int g = 0; g < kGroups; g++) {
    floyd::Status s = g_groups[0][g]->Write("k", "x");
    Check(IsStopped(s), "a closed host's " + Where(0, g) + " answers Stopped to Write", s.ToString());
    std::string v;
    s = g_groups[0][g]->Read("k", &v);
    Check(IsStopped(s), "... and to Read", s.ToString());
    // Not checked: IsLeader/HasLeader/GetLeader of a closed host's group still
    // answer what the group saw last (floyd_is_leader stays true on a group
    // that led). The C API documents no FLOYD_STOPPED for those queries;
    // reported as a defect of floyd_host_close's "handles answer FLOYD_STOPPED".
    if (g_groups[0][g]->IsLeader()) {
      std::printf("# note: %s still says IsLeader() after its host closed\n", Where(0, g).c_str());
    }
  }
  // The Host object goes first; its groups' Floyds stay usable, then are deleted.
  delete g_hosts[0];
  g_hosts[0] = NULL;
  std::string v;
  Check(IsStopped(g_groups[0][1]->Read("k", &v)), "a group's Floyd answers Stopped after its Host is deleted");
  for (int g = 0; g < kGroups; g++) {
    CloseGroup(0, g);
  }
  Check(true, "a group's Floyd is deleted safely after its Host");
  for (int g = 0; g < kGroups; g++) {
    CheckStatus(WriteRetrying(g, "after", "host 0 closed"),
                "the two other hosts serve group " + Str(kGroupIds[g]) + " on");
  }
  Check(g_late_lines == 0, "no log line reaches a host's callback after Close returned", Str(g_late_lines));

  // The destructor closes too: hosts 1 and 2 go with their groups' Floyds alive.
  for (int i = 1; i < kHosts; i++) {
    delete g_hosts[i];
    g_hosts[i] = NULL;
    g_host_closed[i] = true;
  }
  for (int i = 1; i < kHosts; i++) {
    for (int g = 0; g < kGroups; g++) {
      floyd::Status s = g_groups[i][g]->Write("k", "x");
      Check(IsStopped(s), "after ~Host, " + Where(i, g) + " answers Stopped", s.ToString());
      CloseGroup(i, g);
    }
  }
  Check(g_late_lines == 0, "no log line after any host closed", Str(g_late_lines));
}

}  // namespace

int main() {
  for (int i = 0; i < kHosts; i++) {
    g_log_lines[i] = 0;
    g_host_closed[i] = false;
    for (int g = 0; g < kGroups; g++) g_groups[i][g] = NULL;
  }
  Check(mkdtemp(g_dir) != NULL, "make a temporary directory");
  g_dir_made = true;
  PickPorts();
  for (int i = 0; i < kHosts; i++) g_members += (i ? "," : "") + Addr(g_ports[i]);
  TestOpenHosts();
  TestBadInput();
  TestGroupsServeAndKeepApart();
  TestStatusJson();
  TestStateMachineGroup();
  TestCloseAndReopen();
  TestDrop();
  TestMove();
  TestHostClose();
  CloseAll();
  Check(RemoveTree(g_dir), "remove the temporary directory");
  g_dir_made = false;
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
