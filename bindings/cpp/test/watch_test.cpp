// Tests the watch calls of floyd.hpp: Floyd::Watch on every node of a 3-node
// cluster inside this process (every change once, in revision order, puts
// and deletes, a transaction's changes at one revision, the same sequence on
// every node), a watch from a past revision reading the history, IsCompacted()
// before it, Unwatch (from another thread and from the watch's own
// callback), a callback that throws, the last call with a Stopped status
// when a node is deleted, and bad input; then, on nodes of their own,
// Options::history_revisions, a watch again after a restart, a watcher
// ended as too slow (IsBusy()), the groups of a Host and a StateMachine
// node. The callbacks own their recorders (std::shared_ptr): the checks
// that the wrapper destroyed a callback exactly when it should are the
// recorders' use counts, and ASan (the $(ASAN) build) checks the rest.
// Prints every check; exits non-zero at the first failure; ends with
// "N passed, 0 failed".
#include "floyd.hpp"
#include "test_cluster.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

// The signatures.
static_assert(std::is_same<decltype(&floyd::Floyd::Watch),
                           floyd::Status (floyd::Floyd::*)(const std::string&, const std::string&, uint64_t,
                                                          floyd::WatchCallback, uint64_t*)>::value,
              "Floyd::Watch(start, end, start_revision, callback, watch_id)");
static_assert(std::is_same<decltype(&floyd::Floyd::Unwatch), floyd::Status (floyd::Floyd::*)(uint64_t)>::value,
              "Floyd::Unwatch(watch_id)");
static_assert(std::is_same<floyd::WatchCallback,
                           std::function<void(const std::vector<floyd::WatchEvent>&, const floyd::Status&)>>::value,
              "WatchCallback(events, ended)");
static_assert(floyd::WatchEvent::kPut == FLOYD_EVENT_PUT && floyd::WatchEvent::kDelete == FLOYD_EVENT_DELETE,
              "WatchEvent::Type is FLOYD_EVENT_*");

namespace {

using namespace floyd_test;

std::string Num(uint64_t n) {
  std::ostringstream s;
  s << n;
  return s.str();
}

const int kWaitSeconds = 30;

// What one watch was told. A callback made by Callback() owns it (a
// shared_ptr), so it lives as long as the wrapper keeps the callback.
struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<floyd::WatchEvent> events;
  int calls;            // every call
  int empty_calls;      // calls with no events and an ok() status (never expected)
  int ends;             // calls with a non-ok status
  int calls_after_end;  // calls after such a call
  floyd::Status ended;

  Recorder() : calls(0), empty_calls(0), ends(0), calls_after_end(0) {}

  void Record(const std::vector<floyd::WatchEvent>& batch, const floyd::Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    calls++;
    if (ends > 0) calls_after_end++;
    if (!s.ok()) {
      ends++;
      ended = s;
    } else if (batch.empty()) {
      empty_calls++;
    }
    events.insert(events.end(), batch.begin(), batch.end());
    cv.notify_all();
  }

  // Waits until `n` events came (true) or the deadline passed.
  bool WaitEvents(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(kWaitSeconds), [&]() { return events.size() >= n; });
  }

  // Waits for the last call.
  bool WaitEnd() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(kWaitSeconds), [&]() { return ends > 0; });
  }

  std::vector<floyd::WatchEvent> Events() {
    std::lock_guard<std::mutex> lock(mu);
    return events;
  }

  size_t Count() {
    std::lock_guard<std::mutex> lock(mu);
    return events.size();
  }
};

typedef std::shared_ptr<Recorder> RecorderPtr;

floyd::WatchCallback Callback(const RecorderPtr& r) {
  return [r](const std::vector<floyd::WatchEvent>& batch, const floyd::Status& s) { r->Record(batch, s); };
}

// Whether the wrapper has destroyed every copy of the callbacks holding `r`
// (polled: a trampoline frees after the call it made returns).
bool Released(const RecorderPtr& r) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(kWaitSeconds);
  while (r.use_count() != 1 && !Expired(deadline)) Pause();
  return r.use_count() == 1;
}

struct Change {
  floyd::WatchEvent::Type type;
  std::string key;
  std::string value;
};

Change Put(const std::string& key, const std::string& value) {
  Change c = {floyd::WatchEvent::kPut, key, value};
  return c;
}

Change Del(const std::string& key) {
  Change c = {floyd::WatchEvent::kDelete, key, std::string()};
  return c;
}

std::string Describe(const std::vector<floyd::WatchEvent>& events) {
  std::ostringstream s;
  for (size_t i = 0; i < events.size(); i++) {
    const floyd::WatchEvent& e = events[i];
    s << " [" << (e.type == floyd::WatchEvent::kPut ? "put " : "delete ") << e.key << "@" << e.mod_revision << "]";
  }
  return s.str();
}

// Whether `events` are `want`, in that order, revisions never going down.
bool Matches(const std::vector<floyd::WatchEvent>& events, const std::vector<Change>& want) {
  if (events.size() != want.size()) return false;
  for (size_t i = 0; i < events.size(); i++) {
    if (events[i].type != want[i].type || events[i].key != want[i].key || events[i].value != want[i].value) {
      return false;
    }
    if (i > 0 && events[i].mod_revision < events[i - 1].mod_revision) return false;
  }
  return true;
}

bool SameRevisions(const std::vector<floyd::WatchEvent>& a, const std::vector<floyd::WatchEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (a[i].mod_revision != b[i].mod_revision || a[i].key != b[i].key || a[i].type != b[i].type) return false;
  }
  return true;
}

// Polls until node `f` has its own copy of `key` (DirtyRead).
bool AppliedOn(floyd::Floyd* f, const std::string& key) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(kWaitSeconds);
  std::string v;
  while (!f->DirtyRead(key, &v).ok()) {
    if (Expired(deadline)) return false;
    Pause();
  }
  return true;
}

// The group's revision now (a linearizable scan's).
uint64_t RevisionOf(floyd::Floyd* f) {
  floyd::KvList page;
  floyd::Status s = Retry([&]() { return f->Scan("", "", 1, &page); });
  CheckStatus(s, "Scan for the revision");
  return page.revision;
}

void TestTypes() {
  floyd::WatchEvent e;
  Check(e.type == floyd::WatchEvent::kPut && e.key.empty() && e.value.empty() && e.mod_revision == 0,
        "WatchEvent() is an empty put at revision 0");
  floyd::Options d;
  Check(d.history_revisions == 10000, "Options::history_revisions defaults to 10,000");
  Check(d.ToString().find("history_revisions : 10000") != std::string::npos, "Options::ToString names it",
        d.ToString());
  floyd::Status c = floyd::Status::FromCode(FLOYD_COMPACTED, "old");
  Check(c.IsCompacted() && c.floyd_code() == FLOYD_COMPACTED, "FLOYD_COMPACTED -> IsCompacted()");
}

// The prefix w/ watched on every node (all[i]), and [w/5, the last key) on
// one node (tail).
RecorderPtr g_all[kNodes];
RecorderPtr g_tail;
uint64_t g_ids[kNodes];

void TestWatchEverywhere(int leader) {
  floyd::Floyd* l = g_nodes[leader];
  floyd::Floyd* f = g_nodes[(leader + 1) % kNodes];
  floyd::Floyd* o = g_nodes[(leader + 2) % kNodes];
  // A change every node has applied: a watch from now on any node starts after it.
  CheckStatus(Retry([&]() { return l->Write("warm", ""); }), "a first write");
  for (int i = 0; i < kNodes; i++) Check(AppliedOn(g_nodes[i], "warm"), "applied on node " + Num(i));

  for (int i = 0; i < kNodes; i++) {
    g_all[i] = std::make_shared<Recorder>();
    g_ids[i] = 0;
    CheckStatus(g_nodes[i]->Watch("w/", floyd::PrefixEnd("w/"), 0, Callback(g_all[i]), &g_ids[i]),
                "Watch the prefix w/ on node " + Num(i));
    Check(g_ids[i] != 0, "a watch id (not 0)");
  }
  g_tail = std::make_shared<Recorder>();
  uint64_t tail_id = 0;
  CheckStatus(o->Watch("w/5", "", 0, Callback(g_tail), &tail_id), "Watch [w/5, the last key) on another node");

  std::vector<Change> want;
  for (int k = 0; k < 10; k++) {
    std::string key = "w/" + Num(k);
    std::string value = k == 4 ? std::string("v\0 4", 4) : "v" + Num(k);
    CheckStatus(Retry([&]() { return g_nodes[(leader + k) % kNodes]->Write(key, value); }),
                "Write " + key + " through node " + Num((leader + k) % kNodes));
    want.push_back(Put(key, value));
  }
  CheckStatus(l->Write("other", "x"), "a write before the prefix");
  CheckStatus(l->Write("zz", "z"), "a write after the prefix");
  CheckStatus(f->Delete("w/3"), "a Delete");
  want.push_back(Del("w/3"));
  CheckStatus(f->Delete("w/never"), "a Delete of a missing key (no change)");
  floyd::Txn t;
  t.Put(floyd::Txn::kThen, "w/t1", "1");
  t.Put(floyd::Txn::kThen, "w/t2", "2");
  t.Delete(floyd::Txn::kThen, "w/0");
  bool ok = false;
  uint64_t txn_rev = 0;
  CheckStatus(Retry([&]() { return o->Commit(t, &ok, NULL, &txn_rev); }), "a Txn: two puts and a delete");
  Check(ok, "the Txn's THEN ran");
  want.push_back(Put("w/t1", "1"));
  want.push_back(Put("w/t2", "2"));
  want.push_back(Del("w/0"));

  std::vector<floyd::WatchEvent> first;
  for (int i = 0; i < kNodes; i++) {
    Check(g_all[i]->WaitEvents(want.size()), "node " + Num(i) + " delivers the 14 changes under w/");
    std::vector<floyd::WatchEvent> got = g_all[i]->Events();
    Check(Matches(got, want), "each change once, in revision order, the delete as such, the binary value whole",
          Describe(got));
    size_t n = got.size();
    Check(got[n - 3].mod_revision == txn_rev && got[n - 2].mod_revision == txn_rev &&
              got[n - 1].mod_revision == txn_rev && got[n - 4].mod_revision < txn_rev,
          "the Txn's three changes share its revision, last", Describe(got));
    bool rising = true;
    for (size_t j = 1; j + 3 < n; j++) rising = rising && got[j].mod_revision > got[j - 1].mod_revision;
    Check(rising, "every other change has a revision of its own");
    if (i == 0) {
      first = got;
    } else {
      Check(SameRevisions(got, first), "the same changes at the same revisions as on node 0");
    }
    std::lock_guard<std::mutex> lock(g_all[i]->mu);
    Check(g_all[i]->ends == 0 && g_all[i]->empty_calls == 0, "no last call, no empty call");
  }
  floyd::KvMeta m;
  CheckStatus(f->ReadMeta("w/5", NULL, &m), "ReadMeta of w/5");
  Check(m.mod_revision == first[5].mod_revision, "the event's revision is the key's mod_revision");

  std::vector<Change> tail_want;
  for (int k = 5; k < 10; k++) tail_want.push_back(want[k]);
  tail_want.push_back(Put("zz", "z"));
  tail_want.push_back(Put("w/t1", "1"));
  tail_want.push_back(Put("w/t2", "2"));
  Check(g_tail->WaitEvents(tail_want.size()), "the [w/5, end) watch delivers its 8 changes");
  Check(Matches(g_tail->Events(), tail_want), "only the keys from w/5 on (zz too), none before",
        Describe(g_tail->Events()));
  CheckStatus(o->Unwatch(tail_id), "Unwatch it");
  Check(Released(g_tail), "Unwatch destroyed its callback");
}

// Watches from past revisions on a follower: the history, then live.
void TestHistory(int leader) {
  floyd::Floyd* l = g_nodes[leader];
  floyd::Floyd* f = g_nodes[(leader + 1) % kNodes];
  std::vector<floyd::WatchEvent> seen = g_all[0]->Events();
  size_t from = 10;  // the delete of w/3
  uint64_t rev = seen[from].mod_revision;
  RecorderPtr hist = std::make_shared<Recorder>();
  uint64_t id = 0;
  CheckStatus(f->Watch("w/", floyd::PrefixEnd("w/"), rev, Callback(hist), &id),
              "Watch w/ from the revision of the delete of w/3 (" + Num(rev) + ")");
  std::vector<floyd::WatchEvent> want(seen.begin() + from, seen.end());
  Check(hist->WaitEvents(want.size()), "the history's 4 changes come");
  Check(SameRevisions(hist->Events(), want) && hist->Events()[1].value == "1",
        "the same changes at the same revisions as live", Describe(hist->Events()));
  CheckStatus(l->Write("w/later", "L"), "a later write");
  Check(hist->WaitEvents(want.size() + 1), "then the live changes");
  std::vector<floyd::WatchEvent> got = hist->Events();
  Check(got.size() == want.size() + 1 && got.back().key == "w/later" && got.back().mod_revision > rev,
        "each once, the later write after the history", Describe(got));
  CheckStatus(f->Unwatch(id), "Unwatch it");
  for (int i = 0; i < kNodes; i++) Check(g_all[i]->WaitEvents(seen.size() + 1), "every node sees w/later");

  uint64_t txn_rev = seen.back().mod_revision;
  RecorderPtr txn = std::make_shared<Recorder>();
  CheckStatus(l->Watch("w/", floyd::PrefixEnd("w/"), txn_rev, Callback(txn), &id),
              "Watch from the Txn's revision on the leader");
  Check(txn->WaitEvents(4), "the Txn's 3 changes and the later write");
  got = txn->Events();
  Check(got.size() == 4 && got[0].key == "w/t1" && got[1].key == "w/t2" && got[2].key == "w/0" &&
            got[2].type == floyd::WatchEvent::kDelete && got[0].mod_revision == txn_rev &&
            got[2].mod_revision == txn_rev && got[3].key == "w/later",
        "a transaction comes whole from the history, in its order", Describe(got));
  CheckStatus(l->Unwatch(id), "Unwatch it");
  Check(Released(txn), "and its callback is destroyed");

  // From a revision to come: nothing before it.
  uint64_t now = RevisionOf(l);
  RecorderPtr future = std::make_shared<Recorder>();
  CheckStatus(f->Watch("fut/", floyd::PrefixEnd("fut/"), now + 2, Callback(future), &id),
              "Watch from the revision after next");
  CheckStatus(l->Write("fut/a", "1"), "a write at the next revision");
  CheckStatus(l->Write("fut/b", "2"), "a write at the one after");
  Check(future->WaitEvents(1), "the watch from a revision to come sees the second");
  got = future->Events();
  Check(got.size() == 1 && got[0].key == "fut/b" && got[0].mod_revision == now + 2, "only the second",
        Describe(got));
  CheckStatus(f->Unwatch(id), "Unwatch it");

  // Before the history: refused, the callback destroyed at once, never called.
  RecorderPtr old = std::make_shared<Recorder>();
  uint64_t untouched = 4242;
  floyd::Status s = f->Watch("", "", 1, Callback(old), &untouched);
  Check(s.IsCompacted() && s.floyd_code() == FLOYD_COMPACTED && untouched == 4242,
        "Watch from revision 1 (before the history, which starts at 2): IsCompacted(), watch_id untouched",
        s.ToString());
  Check(s.ToString().find("revision 1") != std::string::npos, "the message names the revision", s.ToString());
  Check(old.use_count() == 1 && old->calls == 0, "the refused watch's callback: destroyed, never called");
}

void TestUnwatch(int leader) {
  floyd::Floyd* l = g_nodes[leader];
  RecorderPtr u = std::make_shared<Recorder>();
  RecorderPtr sentinel = std::make_shared<Recorder>();
  uint64_t id = 0, sid = 0;
  CheckStatus(l->Watch("u/", floyd::PrefixEnd("u/"), 0, Callback(u), &id), "Watch u/");
  CheckStatus(l->Watch("u/", floyd::PrefixEnd("u/"), 0, Callback(sentinel), &sid), "a second watch of u/");
  Check(id != sid, "two watches, two ids");
  CheckStatus(l->Write("u/1", "a"), "a change");
  Check(u->WaitEvents(1), "the watch sees it");
  CheckStatus(l->Unwatch(id), "Unwatch");
  Check(u.use_count() == 1, "Unwatch returned having destroyed the callback");
  floyd::Status s = l->Unwatch(id);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "Unwatch again: IsNotFound()", s.ToString());
  Check(l->Unwatch(987654321).IsNotFound(), "Unwatch of an unknown id: IsNotFound()");
  Check(l->Unwatch(0).IsNotFound(), "Unwatch of id 0: IsNotFound()");
  CheckStatus(l->Write("u/2", "b"), "a later change");
  Check(sentinel->WaitEvents(2), "the other watch sees both changes");
  Check(u->Count() == 1 && u->calls == 1 && u->ends == 0, "no call after Unwatch, and no last call");
  CheckStatus(l->Unwatch(sid), "Unwatch the other");

  // Unwatch from the watch's own callback: ok(); no call after that one; the
  // callback destroyed once that call returned.
  RecorderPtr self = std::make_shared<Recorder>();
  std::shared_ptr<std::atomic<uint64_t> > self_id = std::make_shared<std::atomic<uint64_t> >(0);
  std::shared_ptr<std::atomic<int> > inner = std::make_shared<std::atomic<int> >(-1);
  CheckStatus(l->Watch("s/", floyd::PrefixEnd("s/"), 0,
                       [self, self_id, inner, l](const std::vector<floyd::WatchEvent>& batch, const floyd::Status& st) {
                         self->Record(batch, st);
                         if (inner->load() == -1) inner->store(l->Unwatch(self_id->load()).ok() ? 1 : 0);
                       },
                       &sid),
              "Watch s/ with a callback that unwatches itself");
  self_id->store(sid);
  sentinel = std::make_shared<Recorder>();
  CheckStatus(l->Watch("s/", floyd::PrefixEnd("s/"), 0, Callback(sentinel), &id), "and another watch of s/");
  CheckStatus(l->Write("s/1", "1"), "a change");
  Check(self->WaitEvents(1), "the self-unwatching callback sees it");
  CheckStatus(l->Write("s/2", "2"), "another");
  CheckStatus(l->Write("s/3", "3"), "and another");
  Check(sentinel->WaitEvents(3), "the other watch sees the three");
  Check(Released(self), "the self-unwatched callback is destroyed after its call");
  Check(inner->load() == 1 && self->Count() == 1 && self->calls == 1 && self->ends == 0,
        "Unwatch inside the callback: ok(), no call after, no last call");
  Check(l->Unwatch(sid).IsNotFound(), "Unwatch of it again: IsNotFound()");
  CheckStatus(l->Unwatch(id), "Unwatch the other");

  // A callback that throws: swallowed, the watch goes on.
  RecorderPtr thrower = std::make_shared<Recorder>();
  CheckStatus(l->Watch("x/", floyd::PrefixEnd("x/"), 0,
                       [thrower](const std::vector<floyd::WatchEvent>& batch, const floyd::Status& st) {
                         thrower->Record(batch, st);
                         throw std::runtime_error("thrown by the test");
                       },
                       &id),
              "Watch x/ with a callback that throws");
  CheckStatus(l->Write("x/1", "1"), "a change");
  Check(thrower->WaitEvents(1), "it sees it");
  CheckStatus(l->Write("x/2", "2"), "another");
  Check(thrower->WaitEvents(2), "and the next: the exception was swallowed");
  CheckStatus(l->Unwatch(id), "Unwatch it");
  Check(Released(thrower), "its callback is destroyed");
}

void TestBadInput(int leader) {
  floyd::Floyd* f = g_nodes[(leader + 1) % kNodes];
  RecorderPtr r = std::make_shared<Recorder>();
  uint64_t id = 4242;
  floyd::Status s = f->Watch("a", "b", 0, floyd::WatchCallback(), &id);
  Check(s.IsInvalidArgument() && id == 4242, "Watch with an empty callback: IsInvalidArgument()", s.ToString());
  s = f->Watch("a", "b", 0, Callback(r), NULL);
  Check(s.IsInvalidArgument(), "Watch into a NULL watch_id: IsInvalidArgument()", s.ToString());
  std::string big((64u << 10) + 2, 'k');
  s = f->Watch(big, "", 0, Callback(r), &id);
  Check(s.IsInvalidArgument() && s.floyd_code() == FLOYD_INVALID_ARGUMENT && id == 4242,
        "Watch from a start over 64 KiB + 1: IsInvalidArgument()", s.ToString());
  s = f->Watch("a", big, 0, Callback(r), &id);
  Check(s.IsInvalidArgument() && id == 4242, "Watch to an end over 64 KiB + 1: IsInvalidArgument()", s.ToString());
  Check(r.use_count() == 1 && r->calls == 0, "the refused callbacks: destroyed, never called");
  std::string bound((64u << 10) + 1, '\xff');
  CheckStatus(f->Watch(std::string(1, '\0'), bound, 0, Callback(r), &id),
              "Watch of [\\0, a bound of 64 KiB + 1 bytes): accepted");
  CheckStatus(f->Unwatch(id), "Unwatch it");
  Check(Released(r), "its callback is destroyed");
}

// Deleting a node: its watch's last call, Stopped, before the destructor returns.
void TestClose(int leader) {
  int i = (leader + 1) % kNodes;
  delete g_nodes[i];
  g_nodes[i] = NULL;
  {
    std::lock_guard<std::mutex> lock(g_all[i]->mu);
    Check(g_all[i]->ends == 1 && g_all[i]->calls_after_end == 0,
          "deleting a node made its watch's last call before it returned");
    Check(g_all[i]->ended.IsIOError() && g_all[i]->ended.floyd_code() == FLOYD_STOPPED,
          "the last call's status: floyd_code() FLOYD_STOPPED (IsIOError())", g_all[i]->ended.ToString());
  }
  Check(g_all[i].use_count() == 1, "and its callback is destroyed");
  CloseAll();
  for (int j = 0; j < kNodes; j++) {
    std::lock_guard<std::mutex> lock(g_all[j]->mu);
    Check(g_all[j]->ends == 1 && g_all[j]->calls_after_end == 0 && g_all[j]->ended.floyd_code() == FLOYD_STOPPED,
          "node " + Num(j) + "'s watch ended once, Stopped");
  }
  for (int j = 0; j < kNodes; j++) Check(g_all[j].use_count() == 1, "its callback destroyed");
  Check(true, "delete every node");
}

void TestCluster() {
  int leader = OpenCluster();
  TestWatchEverywhere(leader);
  TestHistory(leader);
  TestUnwatch(leader);
  TestBadInput(leader);
  TestClose(leader);
}

floyd::Options SoloOptions(int port, const std::string& name) {
  floyd::Options opts(Addr(port), "127.0.0.1", port, std::string(g_dir) + "/" + name);
  opts.heartbeat_us = kHeartbeatUs;
  opts.check_leader_us = kCheckLeaderUs;
  return opts;
}

floyd::Floyd* OpenSolo(const floyd::Options& opts) {
  floyd::Floyd* f = NULL;
  CheckStatus(floyd::Floyd::Open(opts, &f), "Open a node of its own at " + Addr(opts.local_port));
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(kWaitSeconds);
  while (!f->IsLeader() && !Expired(deadline)) Pause();
  Check(f->IsLeader(), "it leads itself");
  return f;
}

// history_revisions: a short history refuses a watch from before it
// (IsCompacted()) and serves one from within it; the default keeps it across
// a restart too.
void TestHistoryOption() {
  floyd::Options opts = SoloOptions(FreePort(), "shorthistory");
  opts.history_revisions = 8;
  floyd::Floyd* f = OpenSolo(opts);
  uint64_t first = 0;
  for (int k = 0; k < 30; k++) {
    CheckStatus(Retry([&]() { return f->WriteIf("h/" + Num(k), "v", 0, k == 0 ? &first : NULL); }), "a write");
  }
  uint64_t now = RevisionOf(f);
  Check(now == first + 29, "30 revisions written", Num(first) + " to " + Num(now));
  RecorderPtr r = std::make_shared<Recorder>();
  uint64_t id = 0;
  floyd::Status s = f->Watch("h/", floyd::PrefixEnd("h/"), first, Callback(r), &id);
  Check(s.IsCompacted(), "history_revisions 8: a watch from 29 revisions back is IsCompacted()", s.ToString());
  CheckStatus(f->Watch("h/", floyd::PrefixEnd("h/"), now - 4, Callback(r), &id),
              "a watch from 4 revisions back is served");
  Check(r->WaitEvents(5), "the 5 changes since come from the history");
  std::vector<floyd::WatchEvent> got = r->Events();
  Check(got.size() == 5 && got[0].key == "h/25" && got[0].mod_revision == now - 4 && got[4].key == "h/29",
        "h/25 to h/29, once each", Describe(got));
  delete f;
  Check(r->ends == 1 && r->ended.floyd_code() == FLOYD_STOPPED && r.use_count() == 1,
        "deleting the node ended the watch (Stopped) and destroyed its callback");

  // The default keeps the history, across a restart: again from r + 1, nothing missed or repeated.
  opts = SoloOptions(FreePort(), "restart");
  f = OpenSolo(opts);
  r = std::make_shared<Recorder>();
  CheckStatus(f->Watch("r/", floyd::PrefixEnd("r/"), 0, Callback(r), &id), "Watch r/ on another node");
  CheckStatus(Retry([&]() { return f->Write("r/1", "1"); }), "a write");
  Check(r->WaitEvents(1), "seen");
  uint64_t last = r->Events()[0].mod_revision;
  delete f;
  f = OpenSolo(opts);
  RecorderPtr again = std::make_shared<Recorder>();
  CheckStatus(f->Write("r/2", "2"), "a write after the restart, before watching again");
  CheckStatus(f->Watch("r/", floyd::PrefixEnd("r/"), last + 1, Callback(again), &id),
              "after a restart, Watch again from the last revision seen + 1");
  CheckStatus(f->Write("r/3", "3"), "a later write");
  Check(again->WaitEvents(2), "the changes since come");
  got = again->Events();
  Check(got.size() == 2 && got[0].key == "r/2" && got[1].key == "r/3" && got[0].mod_revision > last,
        "nothing missed, nothing repeated", Describe(got));
  delete f;
  Check(again.use_count() == 1, "its callback destroyed at close");
}

// A watcher whose callback blocks while more than 100,000 changes pile up is
// ended with Busy: one last call, then Unwatch is IsNotFound() (and the
// callback is destroyed exactly once whatever the library answers).
void TestTooSlow() {
  floyd::Floyd* f = OpenSolo(SoloOptions(FreePort(), "slow"));
  RecorderPtr r = std::make_shared<Recorder>();
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false, open = false;
  };
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  uint64_t id = 0;
  CheckStatus(f->Watch("slow/", floyd::PrefixEnd("slow/"), 0,
                       [r, gate](const std::vector<floyd::WatchEvent>& batch, const floyd::Status& s) {
                         std::unique_lock<std::mutex> lock(gate->mu);
                         gate->entered = true;
                         gate->cv.notify_all();
                         gate->cv.wait(lock, [&]() { return gate->open; });
                         lock.unlock();
                         r->Record(batch, s);
                       },
                       &id),
              "Watch slow/ with a callback that blocks");
  CheckStatus(Retry([&]() { return f->Write("slow/first", "1"); }), "a first change");
  {
    std::unique_lock<std::mutex> lock(gate->mu);
    Check(gate->cv.wait_for(lock, std::chrono::seconds(kWaitSeconds), [&]() { return gate->entered; }),
          "the callback is called, and blocks");
  }
  // 782 transactions of 128 puts: 100,096 changes, past the 100,000 a watcher may queue.
  std::atomic<int> failures(0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; w++) {
    threads.push_back(std::thread([w, f, &failures]() {
      for (int t = w; t < 782; t += 4) {
        floyd::Txn txn;
        for (int i = 0; i < 128; i++) txn.Put(floyd::Txn::kThen, "slow/" + Num(t) + "/" + Num(i), "v");
        if (!Retry([&]() { return f->Commit(txn, NULL, NULL, NULL); }).ok()) failures++;
      }
    }));
  }
  for (size_t i = 0; i < threads.size(); i++) threads[i].join();
  Check(failures.load() == 0, "782 transactions of 128 puts each (4 threads)");
  {
    std::lock_guard<std::mutex> lock(gate->mu);
    gate->open = true;
    gate->cv.notify_all();
  }
  Check(r->WaitEnd(), "the callback unblocked: the watch's last call comes");
  {
    std::lock_guard<std::mutex> lock(r->mu);
    Check(r->ended.IsBusy() && r->ended.floyd_code() == FLOYD_BUSY && r->ends == 1 && r->calls_after_end == 0,
          "ended as too slow: IsBusy(), once", r->ended.ToString());
    Check(r->events.size() == 1 && r->events[0].key == "slow/first",
          "none of the changes it fell behind on is delivered", Num(r->events.size()) + " events");
  }
  Check(Released(r), "its callback destroyed after the last call");
  floyd::Status s = f->Unwatch(id);
  Check(s.IsNotFound(), "Unwatch of the watch that ended by itself: IsNotFound()", s.ToString());
  CheckStatus(f->Write("slow/after", "1"), "a write afterwards");
  delete f;
  Check(r->ends == 1 && r->calls_after_end == 0, "no call after the last, at close neither");
}

// A Host's groups: a watch per group, ended (Stopped) when the Host closes.
void TestHostGroups() {
  int port = FreePort();
  floyd::Host* host = NULL;
  CheckStatus(floyd::Host::Open(floyd::HostOptions("127.0.0.1", port, std::string(g_dir) + "/host"), &host),
              "Open a Host");
  floyd::Options opts(Addr(port), "127.0.0.1", port, "");
  opts.heartbeat_us = kHeartbeatUs;
  opts.check_leader_us = kCheckLeaderUs;
  floyd::Floyd* a = NULL;
  floyd::Floyd* b = NULL;
  CheckStatus(host->OpenGroup(1, opts, &a), "OpenGroup 1");
  CheckStatus(host->OpenGroup(2, opts, &b), "OpenGroup 2");
  RecorderPtr ra = std::make_shared<Recorder>(), rb = std::make_shared<Recorder>();
  uint64_t ia = 0, ib = 0;
  CheckStatus(a->Watch("", "", 0, Callback(ra), &ia), "Watch every key of group 1");
  CheckStatus(b->Watch("", "", 0, Callback(rb), &ib), "Watch every key of group 2");
  CheckStatus(Retry([&]() { return a->Write("k", "a"); }), "a write to group 1");
  CheckStatus(Retry([&]() { return b->Write("k", "b"); }), "a write to group 2");
  Check(ra->WaitEvents(1) && rb->WaitEvents(1), "each group's watch sees its group's write");
  Check(ra->Count() == 1 && ra->Events()[0].value == "a" && rb->Events()[0].value == "b",
        "and only its own group's");
  host->Close();
  Check(ra->ends == 1 && rb->ends == 1 && ra->ended.floyd_code() == FLOYD_STOPPED &&
            rb->ended.floyd_code() == FLOYD_STOPPED,
        "closing the Host ended both watches with a last call, Stopped");
  uint64_t id = 4242;
  floyd::Status s = a->Watch("", "", 0, Callback(ra), &id);
  Check(s.floyd_code() == FLOYD_STOPPED && id == 4242, "Watch on a group of a closed Host: Stopped", s.ToString());
  Check(!a->Unwatch(ia).ok(), "Unwatch on it: not ok()");
  delete a;
  delete b;
  delete host;
  Check(ra.use_count() == 1 && rb.use_count() == 1, "every callback destroyed");
}

class Echo : public floyd::StateMachine {
 public:
  bool apply(uint64_t, const std::string& data, std::string* result) {
    *result = data;
    return true;
  }
  bool snapshot_save(const std::string&) { return true; }
  bool snapshot_load(const std::string&) { return true; }
};

void TestStateMachineNode() {
  floyd::Floyd* f = NULL;
  CheckStatus(floyd::Floyd::open_with_state_machine(SoloOptions(FreePort(), "machine"),
                                                    std::unique_ptr<floyd::StateMachine>(new Echo()), &f),
              "Open a node running a StateMachine of its own");
  RecorderPtr r = std::make_shared<Recorder>();
  uint64_t id = 4242;
  floyd::Status s = f->Watch("", "", 0, Callback(r), &id);
  Check(s.IsInvalidArgument() && id == 4242, "Watch on it: IsInvalidArgument()", s.ToString());
  Check(f->Unwatch(1).IsInvalidArgument(), "Unwatch on it: IsInvalidArgument()");
  Check(r.use_count() == 1, "the refused callback is destroyed");
  delete f;
}

}  // namespace

int main() {
  MakeDataDir("watch");
  TestTypes();
  TestCluster();
  TestHistoryOption();
  TestTooSlow();
  TestHostGroups();
  TestStateMachineNode();
  RemoveDataDir();
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
