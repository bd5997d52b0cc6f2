// Tests the lease calls of floyd.hpp on a 3-node cluster inside this process:
// Floyd::LeaseGrant, WriteWithLease, LeaseKeepAlive, LeaseTimeToLive and
// LeaseRevoke, KvMeta::lease (ReadMeta, Scan, a Txn's gets), floyd::Txn::Put
// with a lease, expiry deleting the keys on every node, keep-alives from many
// threads, and bad input for each. Prints every check; exits non-zero at the
// first failure; ends with "N passed, 0 failed".
#include "floyd.hpp"
#include "test_cluster.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

// The signatures (the defaults are exercised below).
static_assert(std::is_same<decltype(&floyd::Floyd::LeaseGrant), floyd::Status (floyd::Floyd::*)(uint64_t, uint64_t*)>::value,
              "Floyd::LeaseGrant(ttl_ms, lease_id)");
static_assert(std::is_same<decltype(&floyd::Floyd::LeaseKeepAlive),
                           floyd::Status (floyd::Floyd::*)(uint64_t, uint64_t*)>::value,
              "Floyd::LeaseKeepAlive(lease_id, ttl_ms_left)");
static_assert(std::is_same<decltype(&floyd::Floyd::LeaseRevoke), floyd::Status (floyd::Floyd::*)(uint64_t)>::value,
              "Floyd::LeaseRevoke(lease_id)");
static_assert(std::is_same<decltype(&floyd::Floyd::LeaseTimeToLive),
                           floyd::Status (floyd::Floyd::*)(uint64_t, uint64_t*, uint64_t*, uint64_t*)>::value,
              "Floyd::LeaseTimeToLive(lease_id, ttl_ms, remaining_ms, keys)");
static_assert(std::is_same<decltype(&floyd::Floyd::WriteWithLease),
                           floyd::Status (floyd::Floyd::*)(const std::string&, const std::string&, uint64_t)>::value,
              "Floyd::WriteWithLease(key, value, lease_id)");

namespace {

using namespace floyd_test;

// The TTL every short lease is raised to: twice the election timeout.
const uint64_t kMinTtlMs = 2 * kCheckLeaderUs / 1000;
// A lease id never granted here (ids are the grants' log indexes).
const uint64_t kUnknownLease = 1ull << 60;
const uint64_t kYearMs = 365ull * 24 * 60 * 60 * 1000;

std::string Num(uint64_t n) {
  std::ostringstream s;
  s << n;
  return s.str();
}

// Whether `key` is in node `f`'s own copy (DirtyRead: no round trip).
bool Present(floyd::Floyd* f, const std::string& key) {
  std::string v;
  return f->DirtyRead(key, &v).ok();
}

bool PresentEverywhere(const std::string& key) {
  bool all = true;
  for (int i = 0; i < kNodes; i++) all = all && Present(g_nodes[i], key);
  return all;
}

bool GoneEverywhere(const std::string& key) {
  bool gone = true;
  for (int i = 0; i < kNodes; i++) gone = gone && !Present(g_nodes[i], key);
  return gone;
}

// The lease of `key` by ReadMeta on `f`; `fallback` if the read fails.
uint64_t LeaseOf(floyd::Floyd* f, const std::string& key, uint64_t fallback = 4242) {
  floyd::KvMeta m;
  return f->ReadMeta(key, NULL, &m).ok() ? m.lease : fallback;
}

bool ReadIs(floyd::Floyd* f, const std::string& key, const char* want) {
  std::string v;
  floyd::Status s = Retry([&]() { return f->Read(key, &v); });
  return want != NULL ? s.ok() && v == want : s.IsNotFound();
}

// A short lease granted through a follower, two keys on it and one not;
// kept alive once, then left alone until it expires on every node.
void TestExpiry(floyd::Floyd* l, floyd::Floyd* f, floyd::Floyd* o) {
  uint64_t id = 0;
  CheckStatus(Retry([&]() { return f->LeaseGrant(1, &id); }), "LeaseGrant of 1 ms through a follower");
  Check(id != 0, "the lease id is not 0");
  CheckStatus(f->WriteWithLease("svc/a", "up", id), "WriteWithLease of svc/a");
  CheckStatus(o->WriteWithLease("svc/b", std::string("u\0p", 3), id),
              "WriteWithLease of svc/b (a binary value) through the other follower");
  CheckStatus(f->Write("svc/c", "kept"), "a plain Write of svc/c");

  std::string v;
  floyd::KvMeta m;
  CheckStatus(o->ReadMeta("svc/a", &v, &m), "ReadMeta of a leased key");
  Check(v == "up" && m.lease == id && m.version == 1, "ReadMeta names the lease", "lease " + Num(m.lease));
  CheckStatus(l->ReadMeta("svc/b", &v, NULL), "ReadMeta of the binary value");
  Check(v == std::string("u\0p", 3), "the leased binary value round-trips");
  Check(LeaseOf(l, "svc/c") == 0, "a key written without a lease has lease 0");

  uint64_t ttl = 0, remaining = 0, keys = 0;
  CheckStatus(f->LeaseTimeToLive(id, &ttl, &remaining, &keys), "LeaseTimeToLive");
  Check(ttl == kMinTtlMs && remaining <= ttl && keys == 2,
        "TimeToLive: the TTL raised to twice check_leader (600 ms), remaining within it, 2 keys",
        "ttl " + Num(ttl) + ", remaining " + Num(remaining) + ", keys " + Num(keys));
  CheckStatus(l->LeaseTimeToLive(id, NULL), "LeaseTimeToLive with every output NULL");
  ttl = 0;
  CheckStatus(o->LeaseTimeToLive(id, &ttl), "LeaseTimeToLive with only ttl_ms (defaults NULL)");
  Check(ttl == kMinTtlMs, "only ttl_ms written", Num(ttl));
  uint64_t left = 0;
  CheckStatus(f->LeaseKeepAlive(id, &left), "LeaseKeepAlive");
  Check(left == kMinTtlMs, "LeaseKeepAlive returns the TTL", Num(left));
  CheckStatus(o->LeaseKeepAlive(id), "LeaseKeepAlive without ttl_ms_left, through another node");

  // Left alone now: the lease runs out and its keys go, at one revision, on every node.
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  bool gone = false;
  while (!gone && !Expired(deadline)) {
    gone = GoneEverywhere("svc/a") && GoneEverywhere("svc/b");
    if (!gone) Pause();
  }
  Check(gone, "left alone, the lease expires and its keys are gone on every node (DirtyRead)");
  Check(PresentEverywhere("svc/c"), "the key without the lease stays on every node");
  Check(ReadIs(l, "svc/a", NULL) && ReadIs(o, "svc/b", NULL), "a linearizable Read agrees");

  uint64_t untouched = 4242;
  floyd::Status s = f->LeaseKeepAlive(id, &untouched);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND && untouched == 4242,
        "LeaseKeepAlive of the expired lease: NotFound, ttl_ms_left untouched", s.ToString());
  uint64_t t2 = 4242, r2 = 4242, k2 = 4242;
  s = o->LeaseTimeToLive(id, &t2, &r2, &k2);
  Check(s.IsNotFound() && t2 == 4242 && r2 == 4242 && k2 == 4242,
        "LeaseTimeToLive of the expired lease: NotFound, outputs untouched", s.ToString());
  s = l->WriteWithLease("svc/a", "again", id);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "WriteWithLease naming the expired lease: NotFound",
        s.ToString());
  Check(ReadIs(l, "svc/a", NULL), "and writes nothing");
  Check(f->LeaseRevoke(id).IsNotFound(), "LeaseRevoke of the expired lease: NotFound");
}

// A long lease: keys by WriteWithLease and by a Txn's Put, one detached by a
// plain write, then revoked.
void TestRevokeAndTxn(floyd::Floyd* l, floyd::Floyd* f, floyd::Floyd* o) {
  uint64_t id = 0;
  CheckStatus(Retry([&]() { return l->LeaseGrant(60000, &id); }), "LeaseGrant of a minute on the leader");
  uint64_t ttl = 0, keys = 4242;
  CheckStatus(o->LeaseTimeToLive(id, &ttl, NULL, &keys), "LeaseTimeToLive of the new lease");
  Check(ttl == 60000 && keys == 0, "a TTL over the minimum is kept; no keys yet",
        "ttl " + Num(ttl) + ", keys " + Num(keys));
  CheckStatus(o->WriteWithLease("job/1", "a", id), "WriteWithLease of job/1");
  CheckStatus(f->WriteWithLease("job/2", "b", id), "WriteWithLease of job/2");

  floyd::Txn t;
  CheckStatus(t.Put(floyd::Txn::kThen, "job/3", "c", id), "Txn::Put with the lease");
  CheckStatus(t.Put(floyd::Txn::kThen, "job/plain", "d"), "Txn::Put without a lease");
  t.Get(floyd::Txn::kThen, "job/3");
  bool ok = false;
  floyd::KvList gets;
  CheckStatus(f->Commit(t, &ok, &gets, NULL), "Commit the Txn through a follower");
  Check(ok && gets.kvs.size() == 1 && gets.kvs[0].meta.lease == id, "the Txn's get shows the lease on job/3");
  Check(LeaseOf(o, "job/3") == id && LeaseOf(o, "job/plain") == 0,
        "ReadMeta: the Txn's put with the lease attached job/3 only");
  CheckStatus(l->LeaseTimeToLive(id, NULL, NULL, &keys), "LeaseTimeToLive after the Txn");
  Check(keys == 3, "3 keys on the lease (2 by WriteWithLease, 1 by the Txn)", Num(keys));

  CheckStatus(l->Write("job/2", "detached"), "a plain Write of a leased key");
  Check(LeaseOf(f, "job/2") == 0, "a write without a lease detaches the key");
  CheckStatus(f->LeaseTimeToLive(id, NULL, NULL, &keys), "LeaseTimeToLive after the detaching write");
  Check(keys == 2, "2 keys left on the lease", Num(keys));
  floyd::KvList page;
  CheckStatus(o->Scan("job/", floyd::PrefixEnd("job/"), 0, &page), "Scan of job/");
  Check(page.kvs.size() == 4 && page.kvs[0].meta.lease == id && page.kvs[1].meta.lease == 0 &&
            page.kvs[2].meta.lease == id && page.kvs[3].meta.lease == 0,
        "Scan shows each key's lease (job/1, job/3 on it; job/2, job/plain not)");

  floyd::Txn unknown;
  unknown.Put(floyd::Txn::kThen, "job/4", "x", kUnknownLease);
  unknown.Put(floyd::Txn::kThen, "job/5", "y");
  floyd::Status s = f->Commit(unknown, &ok, NULL, NULL);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "a Txn putting with an unknown lease: NotFound",
        s.ToString());
  Check(ReadIs(l, "job/4", NULL) && ReadIs(l, "job/5", NULL), "and writes nothing, not even its lease-free put");

  CheckStatus(o->LeaseRevoke(id), "LeaseRevoke through a follower");
  Check(ReadIs(l, "job/1", NULL) && ReadIs(l, "job/3", NULL), "the revoked lease's keys are gone");
  Check(ReadIs(l, "job/2", "detached") && ReadIs(l, "job/plain", "d"), "the keys not on it stay");
  uint64_t n = 0;
  CheckStatus(f->Count("job/", floyd::PrefixEnd("job/"), &n), "Count of job/");
  Check(n == 2, "2 keys left under job/", Num(n));
  s = o->LeaseRevoke(id);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "revoking it again: NotFound", s.ToString());
  Check(f->LeaseTimeToLive(id, &ttl).IsNotFound(), "LeaseTimeToLive of the revoked lease: NotFound");
  Check(l->LeaseKeepAlive(id).IsNotFound(), "LeaseKeepAlive of the revoked lease: NotFound");
  Check(f->WriteWithLease("job/1", "again", id).IsNotFound(), "WriteWithLease naming the revoked lease: NotFound");
}

// Keep-alives of one lease from several threads on every node at once.
void TestConcurrentKeepAlives(floyd::Floyd* l) {
  uint64_t id = 0;
  CheckStatus(Retry([&]() { return l->LeaseGrant(60000, &id); }), "LeaseGrant for concurrent keep-alives");
  std::atomic<int> failures(0), renewed(0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2 * kNodes; i++) {
    threads.push_back(std::thread([i, id, &failures, &renewed]() {
      for (int n = 0; n < 5; n++) {
        uint64_t left = 0;
        floyd::Status s = Retry([&]() { return g_nodes[i % kNodes]->LeaseKeepAlive(id, &left); });
        if (s.ok() && left == 60000) {
          renewed++;
        } else {
          failures++;
        }
      }
    }));
  }
  for (size_t i = 0; i < threads.size(); i++) threads[i].join();
  Check(failures.load() == 0 && renewed.load() == 30, "6 threads on 3 nodes keep the lease alive 5 times each");
  CheckStatus(l->LeaseRevoke(id), "revoke it");
}

void TestBadInput(floyd::Floyd* l, floyd::Floyd* f) {
  uint64_t id = 4242;
  floyd::Status s = f->LeaseGrant(0, &id);
  Check(s.IsInvalidArgument() && id == 4242, "LeaseGrant of TTL 0: InvalidArgument, lease_id untouched",
        s.ToString());
  s = f->LeaseGrant(kYearMs + 1, &id);
  Check(s.IsInvalidArgument() && id == 4242, "LeaseGrant of a TTL over a year: InvalidArgument", s.ToString());
  Check(f->LeaseGrant(UINT64_MAX, &id).IsInvalidArgument(), "LeaseGrant of TTL UINT64_MAX: InvalidArgument");
  s = f->LeaseGrant(1000, NULL);
  Check(s.IsInvalidArgument(), "LeaseGrant into a NULL lease_id: InvalidArgument", s.ToString());
  uint64_t year = 0, ttl = 0;
  CheckStatus(Retry([&]() { return f->LeaseGrant(kYearMs, &year); }), "LeaseGrant of exactly a year");
  CheckStatus(l->LeaseTimeToLive(year, &ttl), "its LeaseTimeToLive");
  Check(ttl == kYearMs, "a TTL of a year is kept", Num(ttl));

  uint64_t x = 4242, y = 4242, z = 4242;
  s = f->LeaseKeepAlive(0, &x);
  Check(s.IsInvalidArgument() && x == 4242, "LeaseKeepAlive of lease 0: InvalidArgument, untouched", s.ToString());
  Check(f->LeaseRevoke(0).IsInvalidArgument(), "LeaseRevoke of lease 0: InvalidArgument");
  s = f->LeaseTimeToLive(0, &x, &y, &z);
  Check(s.IsInvalidArgument() && x == 4242 && y == 4242 && z == 4242,
        "LeaseTimeToLive of lease 0: InvalidArgument, untouched", s.ToString());
  Check(f->WriteWithLease("bad/k", "v", 0).IsInvalidArgument(), "WriteWithLease with lease 0: InvalidArgument");
  Check(f->WriteWithLease("", "v", year).IsInvalidArgument(), "WriteWithLease of an empty key: InvalidArgument");
  Check(f->WriteWithLease("bad/big", std::string((16u << 20) + 1, 'x'), year).IsInvalidArgument(),
        "WriteWithLease of a value over 16 MiB: InvalidArgument");

  s = f->LeaseKeepAlive(kUnknownLease, &x);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND && x == 4242,
        "LeaseKeepAlive of an unknown lease: NotFound, untouched", s.ToString());
  s = f->LeaseRevoke(kUnknownLease);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "LeaseRevoke of an unknown lease: NotFound",
        s.ToString());
  s = l->LeaseTimeToLive(kUnknownLease, &x, &y, &z);
  Check(s.IsNotFound() && x == 4242 && y == 4242 && z == 4242, "LeaseTimeToLive of an unknown lease: NotFound",
        s.ToString());
  s = f->WriteWithLease("bad/k", "v", kUnknownLease);
  Check(s.IsNotFound() && s.floyd_code() == FLOYD_NOT_FOUND, "WriteWithLease with an unknown lease: NotFound",
        s.ToString());
  Check(ReadIs(l, "bad/k", NULL) && ReadIs(l, "bad/big", NULL), "the refused writes wrote nothing");
  CheckStatus(l->LeaseRevoke(year), "revoke the year-long lease");
}

void TestCluster() {
  int leader = OpenCluster();
  floyd::Floyd* l = g_nodes[leader];
  floyd::Floyd* f = g_nodes[(leader + 1) % kNodes];
  floyd::Floyd* o = g_nodes[(leader + 2) % kNodes];
  TestExpiry(l, f, o);
  TestRevokeAndTxn(l, f, o);
  TestConcurrentKeepAlives(l);
  TestBadInput(l, f);
  CloseAll();
  Check(true, "delete every node");
}

}  // namespace

int main() {
  MakeDataDir("lease");
  TestCluster();
  RemoveDataDir();
  std::printf("%d passed, 0 failed\n", g_passed);
  return 0;
}
