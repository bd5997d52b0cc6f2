// floyd.hpp -- the C++ API of floyd, header-only (C++11), over the C API in floyd.h.
//
// It reproduces the public C++ API of Qihoo360's Floyd (namespace floyd,
// struct Options, class Status, class Floyd), so a program written against
// the original builds against this library by changing only its include line
// ("floyd/include/floyd.h" -> "floyd.hpp") and its link flags (-lfloyd).
//
//   floyd::Options opts("127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903",
//                       "127.0.0.1", 8901, "/var/lib/myapp/floyd");
//   floyd::Floyd* f = nullptr;
//   floyd::Status s = floyd::Floyd::Open(opts, &f);
//   if (s.ok()) s = f->Write("key", "value");
//   std::string v;
//   if (s.ok()) s = f->Read("key", &v);
//   delete f;  // stops and joins every thread of the node
//
// Differences from the original Floyd:
//  - TryLock returns Busy ("LOCKED: ...") when another holder has the lock and
//    UnLock returns NotFound ("NOT_HOLDER: ...") for a non-holder or an
//    expired lock (floyd_code() says which); an overload of TryLock also
//    returns the lock's fencing token.
//  - Options has one field more, join (start empty and wait to be added).
//  - Options defaults are floyd's LAN defaults (check_leader_us 1 s,
//    heartbeat_us 100 ms, 4 MiB / 4096 entries per AppendEntries), not
//    Floyd's 6 s / 3 s / 10,240,000 bytes / 102,400 entries.
//  - GetServerStatus returns the header line and this node's row only.
//  - Status::FromCode and Status::floyd_code() expose the FLOYD_* code.
//  - A node can replicate a state machine of your own instead of the
//    key-value store: derive from floyd::StateMachine, open the node with
//    Floyd::open_with_state_machine and drive it with Floyd::propose.
//  - Many Raft groups per process: a floyd::Host (HostOptions: one address,
//    directory and set of threads) runs groups opened with Host::OpenGroup,
//    each a floyd::Floyd like any other.
//  - Coordination, etcd's model: revisions (ReadMeta, KvMeta),
//    compare-and-swap (WriteIf, DeleteIf: Status::IsConflict()), range scans
//    (Scan, Count, PrefixEnd, KvList) and transactions (floyd::Txn,
//    Floyd::Commit).
//  - Leases, etcd's: keys that vanish when their lease ends (LeaseGrant,
//    LeaseKeepAlive, LeaseRevoke, LeaseTimeToLive, WriteWithLease, a Txn's
//    Put with a lease; KvMeta::lease names a key's).
//  - Watches, etcd's: a callback told of every change to a range of keys,
//    in revision order, from now or from a past revision (Watch, Unwatch,
//    WatchEvent; Options::history_revisions).
//
// Every method of a Floyd may be called from many threads at once. Keys and
// values are binary-safe: std::string bytes, embedded NUL bytes included.

#ifndef FLOYD_BINDINGS_CPP_FLOYD_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_HPP_

#include "floyd/status.hpp"
#include "floyd/state_machine.hpp"
#include "floyd/options.hpp"
#include "floyd/coordination.hpp"
#include "floyd/node.hpp"
#include "floyd/host.hpp"

#endif  // FLOYD_BINDINGS_CPP_FLOYD_HPP_
