// Tests the coordination calls of floyd.hpp on a 3-node cluster inside this
// process: Status::IsConflict / IsCompacted, KvMeta, Floyd::ReadMeta,
// WriteIf, DeleteIf, Scan, Count, floyd::PrefixEnd, floyd::Txn and
// Floyd::Commit, with bad input. Prints every check; exits non-zero at the
// first failure; ends with "N passed, 0 failed".
#include "floyd.hpp"
#include "test_cluster.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

static_assert(!std::is_copy_constructible<floyd::Txn>::value && !std::is_copy_assignable<floyd::Txn>::value,
              "floyd::Txn is not copyable");
static_assert(std::is_nothrow_move_constructible<floyd::Txn>::value &&
                  std::is_nothrow_move_assignable<floyd::Txn>::value,
              "floyd::Txn is movable");

namespace {

using namespace floyd_test;

bool MetaIs(const floyd::KvMeta& m, uint64_t create, uint64_t mod, uint64_t version) {
  return m.create_revision == create && m.mod_revision == mod && m.version == version && m.lease == 0;
}

std::string Describe(const floyd::KvList& l) {
  std::ostringstream s;
  s << "revision " << l.revision << (l.more ? ", more" : "") << ":";
  for (size_t i = 0; i < l.kvs.size(); i++) {
    const floyd::KeyValue& kv = l.kvs[i];
    s << " [" << kv.key << "=" << kv.value << " c" << kv.meta.create_revision << " m" << kv.meta.mod_revision
      << " v" << kv.meta.version << "]";
  }
  return s.str();
}

bool EntryIs(const floyd::KvList& l, size_t i, const std::string& key, const std::string& value, uint64_t create,
             uint64_t mod, uint64_t version) {
  return i < l.kvs.size() && l.kvs[i].key == key && l.kvs[i].value == value &&
         MetaIs(l.kvs[i].meta, create, mod, version);
}

bool ReadIs(floyd::Floyd* f, const std::string& key, const char* want) {
  std::string v;
  floyd::Status s = Retry([&]() { return f->Read(key, &v); });
  return want != NULL ? s.ok() && v == want : s.IsNotFound();
}

void TestStatusAndTypes() {
  using floyd::Status;
  Status c = Status::Conflict("stale", "cfg");
  Check(c.IsConflict() && !c.ok() && !c.IsBusy() && !c.IsCompacted() && c.floyd_code() == FLOYD_CONFLICT &&
            c.ToString() == "Conflict: stale: cfg",
        "Status::Conflict", c.ToString());
  Status d = Status::Compacted("old");
  Check(d.IsCompacted() && !d.IsConflict() && d.floyd_code() == FLOYD_COMPACTED && d.ToString() == "Compacted: old",
        "Status::Compacted", d.ToString());
  Status fc = Status::FromCode(FLOYD_CONFLICT, "key \"cfg\" is not at the revision expected");
  Check(fc.IsConflict() && fc.floyd_code() == 14 && fc.ToString().find("not at the revision") != std::string::npos,
        "FLOYD_CONFLICT -> Conflict, message kept", fc.ToString());
  Status fd = Status::FromCode(FLOYD_COMPACTED, "");
  Check(fd.IsCompacted() && fd.floyd_code() == 15 && fd.ToString() == "Compacted: COMPACTED",
        "FLOYD_COMPACTED -> Compacted, the code's name when there is no message", fd.ToString());
  Check(Status::FromCode(FLOYD_CONFLICT, "").ToString() == "Conflict: CONFLICT",
        "FLOYD_CONFLICT without a message: the code's name", Status::FromCode(FLOYD_CONFLICT, "").ToString());
  Check(Status::FromCode(16, "").IsCorruption(), "code 16 (unknown) -> Corruption");
  Check(!Status::OK().IsConflict() && !Status::Busy("b").IsConflict() && !Status::NotFound("n").IsCompacted(),
        "no other kind is Conflict or Compacted");

  Check(floyd::PrefixEnd("a/") == "a0", "PrefixEnd(\"a/\") is \"a0\"");
  Check(floyd::PrefixEnd("a\xff") == "b", "PrefixEnd(\"a\\xff\") is \"b\"");
  Check(floyd::PrefixEnd(std::string("a\0", 2)) == std::string("a\1", 2), "PrefixEnd of a prefix ending in NUL");
  Check(floyd::PrefixEnd("\xff\xff").empty(), "PrefixEnd of 0xff bytes only is empty (to the last key)");
  Check(floyd::PrefixEnd("").empty(), "PrefixEnd(\"\") is empty");

  floyd::KvMeta m;
  Check(MetaIs(m, 0, 0, 0), "KvMeta() is all zero");
  floyd::KvList l;
  Check(l.kvs.empty() && !l.more && l.revision == 0, "KvList() is empty");

  // A Txn's builders check their arguments; a moved-from Txn refuses them.
  floyd::Txn t;
  Check(t.IfValue("", floyd::Txn::kEqual, "v").IsInvalidArgument(), "Txn::IfValue with an empty key: InvalidArgument");
  Check(t.IfValue("k", static_cast<floyd::Txn::Cmp>(4), "v").IsInvalidArgument(),
        "Txn::IfValue with an unknown Cmp: InvalidArgument");
  Check(t.IfVersion("", floyd::Txn::kEqual, 0).IsInvalidArgument(), "Txn::IfVersion with an empty key");
  Check(t.IfVersion("k", static_cast<floyd::Txn::Cmp>(-1), 0).IsInvalidArgument(), "Txn::IfVersion, unknown Cmp");
  Check(t.IfModRevision("", floyd::Txn::kLess, 0).IsInvalidArgument(), "Txn::IfModRevision with an empty key");
  Check(t.IfModRevision("k", static_cast<floyd::Txn::Cmp>(9), 0).IsInvalidArgument(),
        "Txn::IfModRevision, unknown Cmp");
  Check(t.IfCreateRevision("", floyd::Txn::kGreater, 0).IsInvalidArgument(), "Txn::IfCreateRevision, empty key");
  Check(t.IfCreateRevision("k", static_cast<floyd::Txn::Cmp>(5), 0).IsInvalidArgument(),
        "Txn::IfCreateRevision, unknown Cmp");
  Check(t.Put(floyd::Txn::kThen, "", "v").IsInvalidArgument(), "Txn::Put with an empty key: InvalidArgument");
  Check(t.Put(static_cast<floyd::Txn::Branch>(2), "k", "v").IsInvalidArgument(),
        "Txn::Put with an unknown Branch: InvalidArgument");
  Check(t.Delete(floyd::Txn::kElse, "").IsInvalidArgument(), "Txn::Delete with an empty key");
  Check(t.Delete(static_cast<floyd::Txn::Branch>(-1), "k").IsInvalidArgument(), "Txn::Delete, unknown Branch");
  Check(t.Get(floyd::Txn::kThen, "").IsInvalidArgument(), "Txn::Get with an empty key");
  Check(t.Get(static_cast<floyd::Txn::Branch>(3), "k").IsInvalidArgument(), "Txn::Get, unknown Branch");
  CheckStatus(t.IfValue(std::string("k\0", 2), floyd::Txn::kNotEqual, std::string("\0", 1)),
              "Txn::IfValue with NUL bytes in key and value");
  CheckStatus(t.Put(floyd::Txn::kThen, "k", ""), "Txn::Put of an empty value");
  floyd::Txn moved(std::move(t));
  Check(t.Put(floyd::Txn::kThen, "k2", "v").IsInvalidArgument(), "a moved-from Txn refuses builders");
  CheckStatus(moved.Get(floyd::Txn::kThen, "k"), "the Txn moved to builds on");
  floyd::Txn assigned;
  CheckStatus(assigned.Put(floyd::Txn::kElse, "x", "y"), "a second Txn");
  assigned = std::move(moved);
  Check(moved.Get(floyd::Txn::kThen, "k").IsInvalidArgument(), "move-assigned from: refuses builders");
  CheckStatus(assigned.Get(floyd::Txn::kElse, "k"), "move-assigned to: builds on (its old transaction freed)");
  floyd::Txn* same = &assigned;  // (through a pointer: no -Wself-move)
  assigned = std::move(*same);
  CheckStatus(assigned.Get(floyd::Txn::kElse, "k"), "self move-assignment keeps the Txn");
}

// Compare-and-swap through two followers (f, o) and the leader (l).
void TestCompareAndSwap(floyd::Floyd* l, floyd::Floyd* f, floyd::Floyd* o) {
  uint64_t created = 0, next = 0, again = 0, untouched = 4242;
  CheckStatus(Retry([&]() { return f->WriteIf("cfg", "v1", 0, &created); }),
              "WriteIf with 0 creates an absent key (through a follower)");
  Check(created > 0, "WriteIf returns the write's revision");
  floyd::Status s = o->WriteIf("cfg", "again", 0, &untouched);
  Check(s.IsConflict() && s.floyd_code() == FLOYD_CONFLICT, "WriteIf with 0 again: Conflict", s.ToString());
  Check(untouched == 4242, "a Conflict leaves new_revision untouched");

  std::string v;
  floyd::KvMeta m;
  CheckStatus(Retry([&]() { return o->ReadMeta("cfg", &v, &m); }), "ReadMeta on another node");
  Check(v == "v1" && MetaIs(m, created, created, 1), "ReadMeta: value, create == mod == the revision, version 1",
        v);
  CheckStatus(o->WriteIf("cfg", "v2", created, &next), "WriteIf with the current mod revision");
  Check(next == created + 1, "the group's revision grew by one");
  s = f->WriteIf("cfg", "lost", created);
  Check(s.IsConflict(), "WriteIf with a stale mod revision: Conflict", s.ToString());
  Check(ReadIs(l, "cfg", "v2"), "the stale write wrote nothing");
  CheckStatus(f->ReadMeta("cfg", &v, &m), "ReadMeta after the update");
  Check(MetaIs(m, created, next, 2), "after an update: create kept, mod the update's, version 2");
  CheckStatus(l->ReadMeta("cfg", NULL, &m), "ReadMeta with a NULL value");
  v.clear();
  CheckStatus(l->ReadMeta("cfg", &v, NULL), "ReadMeta with a NULL meta");
  Check(v == "v2", "ReadMeta with a NULL meta still gives the value", v);

  s = f->DeleteIf("cfg", created);
  Check(s.IsConflict(), "DeleteIf with a stale revision: Conflict", s.ToString());
  Check(ReadIs(l, "cfg", "v2"), "the stale delete deleted nothing");
  Check(o->DeleteIf("cfg", 0).IsConflict(), "DeleteIf with 0 of a present key: Conflict");
  CheckStatus(f->DeleteIf("cfg", next), "DeleteIf with the current revision");
  v = "untouched";
  m.version = 4242;
  s = o->ReadMeta("cfg", &v, &m);
  Check(s.IsNotFound() && v == "untouched" && m.version == 4242, "ReadMeta of the deleted key: NotFound, no output",
        s.ToString());
  CheckStatus(f->DeleteIf("cfg", 0), "DeleteIf with 0 of an absent key: OK (deletes nothing)");
  CheckStatus(o->WriteIf("cfg", "v3", 0, &again), "created again with WriteIf(0)");
  Check(again == next + 2, "the delete counted one revision, the refusals none");
  CheckStatus(f->ReadMeta("cfg", &v, &m), "ReadMeta of the key created again");
  Check(MetaIs(m, again, again, 1), "a key created again starts over: version 1");
  CheckStatus(l->WriteIf("cfg", "v4", again), "WriteIf without new_revision");
  CheckStatus(l->Write("cfg", "plain"), "a plain Write");
  CheckStatus(l->ReadMeta("cfg", &v, &m), "ReadMeta after a plain Write");
  Check(v == "plain" && MetaIs(m, again, again + 2, 3), "a plain Write is counted as a revision too");

  std::string key("k\0ey", 4), value("\0v\0", 3);
  uint64_t rb = 0;
  CheckStatus(f->WriteIf(key, value, 0, &rb), "WriteIf of a key and value with NUL bytes");
  CheckStatus(l->ReadMeta(key, &v, &m), "ReadMeta of the binary key");
  Check(v == value && MetaIs(m, rb, rb, 1), "the binary value and meta round-trip");
  Check(l->ReadMeta("k", &v, &m).IsNotFound(), "the binary key was not truncated at its NUL");
}

// Increments from every node at once by ReadMeta + WriteIf, retried on
// Conflict: none is lost.
void TestCounter() {
  const int per_node = 10;
  CheckStatus(Retry([&]() { return g_nodes[0]->WriteIf("counter", "0", 0); }), "create the counter");
  std::atomic<int> failures(0), conflicts(0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; i++) {
    threads.push_back(std::thread([i, &failures, &conflicts]() {
      floyd::Floyd* node = g_nodes[i];
      for (int n = 0; n < per_node; n++) {
        Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
        for (;;) {
          if (Expired(deadline)) {
            failures++;
            break;
          }
          std::string v;
          floyd::KvMeta m;
          floyd::Status s = node->ReadMeta("counter", &v, &m);
          if (!s.ok()) continue;
          std::string incremented = std::to_string(std::atoll(v.c_str()) + 1);
          s = node->WriteIf("counter", incremented, m.mod_revision);
          if (s.ok()) break;
          if (s.IsConflict()) {
            conflicts++;
          } else if (s.floyd_code() != FLOYD_NO_LEADER && s.floyd_code() != FLOYD_BUSY) {
            failures++;
            break;
          }
        }
      }
    }));
  }
  for (size_t i = 0; i < threads.size(); i++) threads[i].join();
  Check(failures.load() == 0, "3 threads increment 10 times each by compare-and-swap");
  std::printf("# %d conflicts retried\n", conflicts.load());
  std::string v;
  floyd::KvMeta m;
  CheckStatus(g_nodes[1]->ReadMeta("counter", &v, &m), "ReadMeta of the counter");
  Check(v == "30" && m.version == 31, "no increment lost: 30, version 31", v);
}

void TestBadInput(floyd::Floyd* f) {
  std::string v;
  floyd::KvMeta m;
  Check(f->ReadMeta("", &v, &m).IsInvalidArgument(), "ReadMeta of an empty key: InvalidArgument");
  Check(f->WriteIf("", "v", 0).IsInvalidArgument(), "WriteIf of an empty key: InvalidArgument");
  Check(f->WriteIf("big", std::string((16u << 20) + 1, 'x'), 0).IsInvalidArgument(),
        "WriteIf of a value over 16 MiB: InvalidArgument");
  Check(f->DeleteIf("", 0).IsInvalidArgument(), "DeleteIf of an empty key: InvalidArgument");
  Check(f->Scan("a", "b", 0, NULL).IsInvalidArgument(), "Scan into NULL: InvalidArgument");
  floyd::KvList l;
  l.revision = 4242;
  Check(f->Scan(std::string(70000, 'a'), "", 0, &l).IsInvalidArgument() && l.revision == 4242,
        "Scan from a bound over 64 KiB: InvalidArgument, out untouched");
  Check(f->Count("a", "b", NULL).IsInvalidArgument(), "Count into NULL: InvalidArgument");
  uint64_t n = 4242;
  Check(f->Count("a", std::string(70000, 'b'), &n).IsInvalidArgument() && n == 4242,
        "Count to a bound over 64 KiB: InvalidArgument, count untouched");
}

// Bounds checked at Commit; a lease that does not exist (none is granted
// here: lease_test.cpp has leases); nothing written.
void TestTxnLimits(floyd::Floyd* l, floyd::Floyd* f) {
  floyd::Txn ops;
  for (int i = 0; i < 128; i++) ops.Get(floyd::Txn::kThen, "lim/" + std::to_string(i));
  floyd::KvList gets;
  bool ok = false;
  CheckStatus(Retry([&]() { return f->Commit(ops, &ok, &gets, NULL); }), "128 operations in a branch: OK");
  Check(ok && gets.kvs.empty(), "128 gets of missing keys: succeeded, none listed");
  CheckStatus(ops.Put(floyd::Txn::kThen, "lim/new", "v"), "a 129th operation is built");
  floyd::Status s = f->Commit(ops, &ok, &gets, NULL);
  Check(s.IsInvalidArgument() && s.ToString().find("128") != std::string::npos,
        "129 operations: InvalidArgument at Commit", s.ToString());
  floyd::Txn compares;
  for (int i = 0; i < 129; i++) compares.IfVersion("lim/" + std::to_string(i), floyd::Txn::kEqual, 0);
  compares.Put(floyd::Txn::kThen, "lim/cmp", "v");
  Check(f->Commit(compares, NULL, NULL, NULL).IsInvalidArgument(), "129 comparisons: InvalidArgument");
  floyd::Txn twice;
  twice.Put(floyd::Txn::kThen, "dup", "1");
  twice.Delete(floyd::Txn::kThen, "dup");
  s = f->Commit(twice, NULL, NULL, NULL);
  Check(s.IsInvalidArgument() && s.ToString().find("twice") != std::string::npos,
        "a key written twice in one branch: InvalidArgument", s.ToString());
  Check(ReadIs(l, "lim/new", NULL) && ReadIs(l, "lim/cmp", NULL) && ReadIs(l, "dup", NULL),
        "the refused transactions wrote nothing");

  floyd::Txn leased;
  leased.Put(floyd::Txn::kThen, "lease/plain", "1");
  CheckStatus(leased.Put(floyd::Txn::kThen, "lease/leased", "1", 42), "a put naming lease 42 is built");
  ok = true;
  uint64_t rev = 4242;
  gets.revision = 4242;
  s = Retry([&]() { return f->Commit(leased, &ok, &gets, &rev); });
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "a put naming a lease that does not exist: NotFound", s.ToString());
  Check(ok && rev == 4242 && gets.revision == 4242, "NotFound writes no output");
  Check(ReadIs(l, "lease/plain", NULL) && ReadIs(l, "lease/leased", NULL),
        "the leased transaction wrote nothing, not even its lease-free put");
  floyd::Txn other_branch;
  other_branch.Put(floyd::Txn::kThen, "lease/plain", "1");
  other_branch.Put(floyd::Txn::kElse, "lease/leased", "1", 7);
  CheckStatus(Retry([&]() { return f->Commit(other_branch, &ok, NULL, NULL); }),
              "a lease named only in the branch not taken: OK");
  Check(ok && ReadIs(l, "lease/plain", "1"), "the branch taken wrote");
  floyd::Txn gone;
  floyd::Txn taker(std::move(gone));
  Check(f->Commit(gone, NULL, NULL, NULL).IsInvalidArgument(), "Commit of a moved-from Txn: InvalidArgument");
}

// A transaction with every kind of comparison and both branches.
void TestTxn(floyd::Floyd* l, floyd::Floyd* f, floyd::Floyd* o) {
  uint64_t ra = 0, rb = 0, rt = 0, rev = 0;
  CheckStatus(Retry([&]() { return o->WriteIf("acct/a", "10", 0, &ra); }), "txn setup: acct/a");
  CheckStatus(o->WriteIf("acct/b", "5", 0, &rb), "txn setup: acct/b");
  floyd::Txn t;
  typedef floyd::Txn T;
  floyd::Status built[] = {
      t.IfValue("acct/a", T::kEqual, "10"),
      t.IfVersion("acct/a", T::kEqual, 1),
      t.IfModRevision("acct/a", T::kEqual, ra),
      t.IfCreateRevision("acct/a", T::kLess, rb),
      t.IfValue("acct/b", T::kGreater, "4"),
      t.IfModRevision("acct/b", T::kGreater, ra),
      t.IfVersion("acct/missing", T::kEqual, 0),
      t.IfCreateRevision("acct/missing", T::kEqual, 0),
      t.IfValue("acct/missing", T::kNotEqual, "x"),
      t.Put(T::kThen, "acct/a", "7"),
      t.Put(T::kThen, "acct/c", "3"),
      t.Delete(T::kThen, "acct/b"),
      t.Get(T::kThen, "acct/a"),
      t.Get(T::kThen, "acct/b"),
      t.Get(T::kThen, "acct/c"),
      t.Put(T::kElse, "acct/else", "ran"),
      t.Get(T::kElse, "acct/a"),
  };
  bool all_built = true;
  for (size_t i = 0; i < sizeof built / sizeof built[0]; i++) all_built = all_built && built[i].ok();
  Check(all_built, "build a Txn: every comparison kind, puts, a delete, gets in both branches");
  bool ok = false;
  floyd::KvList gets;
  gets.kvs.resize(9);
  gets.more = true;
  CheckStatus(f->Commit(t, &ok, &gets, &rt), "Commit through a follower");
  Check(ok, "every comparison held: succeeded");
  Check(rt == rb + 1, "the whole transaction is one revision");
  Check(gets.kvs.size() == 2 && EntryIs(gets, 0, "acct/a", "7", ra, rt, 2) && EntryIs(gets, 1, "acct/c", "3", rt, rt, 1),
        "gets: acct/a and acct/c with their meta, the deleted acct/b left out (the old list replaced)",
        Describe(gets));
  Check(gets.revision == rt && !gets.more, "gets: the revision after the transaction, no more", Describe(gets));
  Check(ReadIs(l, "acct/b", NULL) && ReadIs(l, "acct/else", NULL), "the delete ran, the ELSE branch did not");

  CheckStatus(o->Commit(t, &ok, &gets, &rev), "the same Txn committed again");
  Check(!ok && rev == rt + 1, "now ELSE runs; its put counts one revision");
  Check(gets.kvs.size() == 1 && EntryIs(gets, 0, "acct/a", "7", ra, rt, 2), "the ELSE branch's get",
        Describe(gets));
  Check(ReadIs(l, "acct/else", "ran"), "ELSE wrote");

  floyd::Txn ro;
  ro.IfValue("acct/a", T::kLess, "5");  // "7" < "5": no
  ro.Put(T::kThen, "acct/a", "x");
  ro.Get(T::kElse, "acct/c");
  ro.Get(T::kElse, "acct/nothing");
  ro.Get(T::kElse, "acct/a");
  ok = true;
  CheckStatus(f->Commit(ro, &ok, &gets, &rev), "a Txn whose comparison fails");
  Check(!ok && rev == rt + 1, "not succeeded; a read-only branch leaves the revision");
  Check(gets.kvs.size() == 2 && EntryIs(gets, 0, "acct/c", "3", rt, rt, 1) &&
            EntryIs(gets, 1, "acct/a", "7", ra, rt, 2),
        "the gets in order, the missing key left out", Describe(gets));
  CheckStatus(f->Commit(ro, NULL, NULL, NULL), "Commit with every output NULL");
  floyd::Txn empty;
  ok = false;
  CheckStatus(f->Commit(empty, &ok, &gets, &rev), "an empty Txn");
  Check(ok && gets.kvs.empty() && gets.revision == rev && rev == rt + 1, "an empty Txn succeeds, reads the revision");
  floyd::Txn missing;
  missing.IfValue("acct/missing", T::kLess, "zzz");
  CheckStatus(f->Commit(missing, &ok, NULL, NULL), "a comparison of a missing key");
  Check(!ok, "a missing key is not less than any value");
}

// 23 keys under "dir/" (and neighbours outside) paged through 5 at a time.
void TestScan(floyd::Floyd* f, floyd::Floyd* o) {
  floyd::Txn t;
  char key[16];
  for (int i = 0; i < 23; i++) {
    std::snprintf(key, sizeof key, "dir/%02d", i);
    t.Put(floyd::Txn::kThen, key, key + 4);
  }
  t.Put(floyd::Txn::kThen, "dir.", "before");
  t.Put(floyd::Txn::kThen, "dir0", "after");
  uint64_t rt = 0;
  CheckStatus(Retry([&]() { return o->Commit(t, NULL, NULL, &rt); }), "put 25 keys in one Txn");

  const std::string end = floyd::PrefixEnd("dir/");
  Check(end == "dir0", "PrefixEnd(\"dir/\") is \"dir0\"", end);
  std::string start = "dir/";
  std::vector<std::string> seen;
  int pages = 0;
  bool sizes_ok = true, metas_ok = true, revisions_ok = true, more_ok = true, values_ok = true;
  for (;;) {
    floyd::KvList page;
    floyd::Status s = Retry([&]() { return f->Scan(start, end, 5, &page); });
    CheckStatus(s, "Scan with a limit of 5 through a follower");
    pages++;
    sizes_ok = sizes_ok && page.kvs.size() <= 5;
    revisions_ok = revisions_ok && page.revision == rt;
    more_ok = more_ok && page.more == (pages < 5);
    for (size_t i = 0; i < page.kvs.size(); i++) {
      seen.push_back(page.kvs[i].key);
      values_ok = values_ok && page.kvs[i].value == page.kvs[i].key.substr(4);
      metas_ok = metas_ok && MetaIs(page.kvs[i].meta, rt, rt, 1);
    }
    if (!page.more || page.kvs.empty() || pages > 10) break;
    start = page.kvs.back().key;
    start.push_back('\0');  // restart after the last key
  }
  bool in_order = seen.size() == 23;
  for (size_t i = 0; in_order && i < seen.size(); i++) {
    std::snprintf(key, sizeof key, "dir/%02d", static_cast<int>(i));
    in_order = seen[i] == key;
  }
  Check(pages == 5 && in_order, "paging by more and last key + \"\\0\": the 23 keys once each, in order, 5 pages");
  Check(sizes_ok && values_ok, "no page over the limit; every value right");
  Check(metas_ok && revisions_ok, "every key created at the Txn's revision, version 1; pages at that revision");
  Check(more_ok, "more on every page but the last");

  floyd::KvList all;
  CheckStatus(o->Scan("dir/", end, 0, &all), "Scan of the prefix with limit 0");
  Check(all.kvs.size() == 23 && !all.more && EntryIs(all, 0, "dir/00", "00", rt, rt, 1) &&
            EntryIs(all, 22, "dir/22", "22", rt, rt, 1),
        "limit 0: the whole prefix in one page", Describe(all));
  CheckStatus(f->Scan("dir/05", "dir/10", 0, &all), "Scan of [dir/05, dir/10)");
  Check(all.kvs.size() == 5 && all.kvs.front().key == "dir/05" && all.kvs.back().key == "dir/09",
        "start included, end excluded", Describe(all));
  CheckStatus(f->Scan("dir/21", "", 3, &all), "Scan with an empty end");
  Check(all.kvs.size() == 3 && all.kvs[2].key == "dir0" && all.more,
        "an empty end runs to the last key (past the prefix)", Describe(all));
  CheckStatus(f->Scan("dir/10", "dir/05", 0, &all), "Scan with start after end");
  Check(all.kvs.empty() && !all.more, "start after end: empty");
  uint64_t n = 0, everything = 0;
  CheckStatus(f->Count("dir/", end, &n), "Count of the prefix");
  Check(n == 23, "Count of the prefix: 23");
  CheckStatus(o->Count("", "", &everything), "Count of everything");
  CheckStatus(o->Scan("", "", 0, &all), "Scan of everything");
  Check(everything >= 25 && all.kvs.size() == everything, "Scan of everything agrees with Count");
  std::string binary("k\0ey", 4);
  bool found = false;
  for (size_t i = 0; i < all.kvs.size(); i++) found = found || all.kvs[i].key == binary;
  Check(found, "Scan returns a key with a NUL byte whole");

  uint64_t w = 0;
  CheckStatus(f->WriteIf("dir/05", "changed", rt, &w), "WriteIf of a scanned key");
  CheckStatus(o->Scan("dir/05", "dir/06", 0, &all), "Scan it again");
  Check(all.revision == w && w == rt + 1 && EntryIs(all, 0, "dir/05", "changed", rt, w, 2),
        "the page's revision is the write's; the key's meta shows it", Describe(all));
}

void TestCluster() {
  int leader = OpenCluster();
  floyd::Floyd* l = g_nodes[leader];
  floyd::Floyd* f = g_nodes[(leader + 1) % kNodes];
  floyd::Floyd* o = g_nodes[(leader + 2) % kNodes];
  TestCompareAndSwap(l, f, o);
  TestBadInput(f);
  TestTxnLimits(l, f);
  TestTxn(l, f, o);
  TestScan(f, o);
  TestCounter();
  CloseAll();
  Check(true, "delete every node");
}

}  // namespace

int main() {
  MakeDataDir("coord");
  TestStatusAndTypes();
  TestCluster();
  RemoveDataDir();
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
