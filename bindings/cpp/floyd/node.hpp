// floyd/node.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// floyd::Floyd: a member of a cluster, or one group of a Host.

#ifndef FLOYD_BINDINGS_CPP_FLOYD_NODE_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_NODE_HPP_

#include "coordination.hpp"
#include "options.hpp"
#include "state_machine.hpp"
#include "status.hpp"

namespace floyd {

class Host;

// A member of a floyd cluster running inside this process. Open it with
// Floyd::Open; `delete` closes it (stops and joins its threads).
// Thread-safe: every method may be called from many threads at once.
//
// A Floyd is also the handle of one Raft group of a Host (Host::OpenGroup):
// every method works the same on it, and `delete` stops that group on the
// host and keeps its data. Once the Host is closed, the Floyd answers
// floyd_code() FLOYD_STOPPED; deleting it then (after the Host is gone too)
// is still safe and still required.
class Floyd {
 public:
  // Opens (or creates) the node's data under options.path and starts it.
  // On success *floyd is the new node; on failure it is NULL.
  static Status Open(const Options& options, Floyd** floyd) {
    if (floyd == nullptr) return Status::InvalidArgument("floyd (the output pointer) is NULL");
    *floyd = nullptr;
    floyd_options_t* o = nullptr;
    Status s = MakeOptions(options, &o);
    if (!s.ok()) return s;
    floyd_t* handle = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_open(o, &handle, &errmsg);
    floyd_options_free(o);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    return Wrap(handle, floyd);
  }

  // Opens a node that replicates `machine` instead of the key-value store
  // (Write, Read, TryLock, ... then return InvalidArgument; propose drives
  // it). Every member must run the same kind of machine. floyd takes the
  // machine whatever happens: it is deleted when the node closes, or before
  // this returns if opening fails.
  static Status open_with_state_machine(const Options& options, std::unique_ptr<StateMachine> machine,
                                        Floyd** floyd) {
    if (floyd == nullptr) return Status::InvalidArgument("floyd (the output pointer) is NULL");
    *floyd = nullptr;
    if (!machine) return Status::InvalidArgument("the state machine is NULL");
    floyd_options_t* o = nullptr;
    Status s = MakeOptions(options, &o);
    if (!s.ok()) return s;
    floyd_state_machine_t sm = detail::MachineCallbacks::Struct(machine.get());
    // From here floyd owns it: its finalize deletes it, on success or failure.
    machine.release();
    floyd_t* handle = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_open_with_state_machine(o, &sm, &handle, &errmsg);
    floyd_options_free(o);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    return Wrap(handle, floyd);
  }

  // Closes the node: stops and joins every thread it started. For a group of
  // a Host: stops the group on the host (its data stays for a later
  // Host::OpenGroup); the host runs on. Every watch still live gets its last
  // call (floyd_code() FLOYD_STOPPED) before this returns.
  ~Floyd() {
    floyd_close(f_);
    // floyd_close made every watch's last call, which freed its callback;
    // whatever is left (nothing, by the C contract) is never called again.
    for (std::map<uint64_t, detail::WatchState*>::iterator it = watches_.live.begin(); it != watches_.live.end();
         ++it) {
      delete it->second;
    }
  }

  // Has the cluster's StateMachine apply `data` once a majority has it;
  // *result (when not NULL) gets what apply answered on the leader (a
  // follower forwards it). Linearizable. floyd_code() FLOYD_STATE_MACHINE
  // (an InvalidArgument) with apply's message when it refused the command;
  // InvalidArgument on a node running the key-value store.
  Status propose(const std::string& data, std::string* result) {
    char* p = nullptr;
    size_t len = 0;
    char* errmsg = nullptr;
    int rc = floyd_propose(f_, data.data(), data.size(), &p, &len, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    detail::TakeBytes(p, len, result);
    return Status::OK();
  }


  // Stores value under key once a majority has it (a follower forwards to the leader).
  Status Write(const std::string& key, const std::string& value) {
    char* errmsg = nullptr;
    int rc = floyd_write(f_, key.data(), key.size(), value.data(), value.size(), &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // Deletes key (deleting a missing key succeeds).
  Status Delete(const std::string& key) {
    char* errmsg = nullptr;
    // Two statements: within one call's arguments, errmsg could be read before floyd_delete sets it.
    int rc = floyd_delete(f_, key.data(), key.size(), &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // Linearizable read (through the log). IsNotFound() when the key is missing.
  // *value is written only on success.
  Status Read(const std::string& key, std::string* value) {
    return ReadWith(floyd_read, key, value);
  }

  // This node's copy: fast, possibly stale. *value is written only on success.
  Status DirtyRead(const std::string& key, std::string* value) {
    return ReadWith(floyd_dirty_read, key, value);
  }

  // (floyd) `key`'s value and revisions, linearizable (as Read).
  // IsNotFound() when the key is missing. *value and *meta (either may be
  // NULL if not wanted) are written only on success.
  Status ReadMeta(const std::string& key, std::string* value, KvMeta* meta) {
    char* p = nullptr;
    size_t len = 0;
    floyd_kv_meta_t m;
    char* errmsg = nullptr;
    int rc = floyd_read_meta(f_, key.data(), key.size(), &p, &len, &m, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    detail::TakeBytes(p, len, value);
    if (meta != nullptr) {
      meta->create_revision = m.create_revision;
      meta->mod_revision = m.mod_revision;
      meta->version = m.version;
      meta->lease = m.lease;
    }
    return Status::OK();
  }

  // (floyd) Compare-and-swap: stores value under key only if the key was last
  // modified at revision `expected_mod_revision` (0: only if it is absent).
  // IsConflict() (nothing written) if not. *new_revision (when not NULL) gets
  // the write's revision, on success only.
  Status WriteIf(const std::string& key, const std::string& value, uint64_t expected_mod_revision,
                 uint64_t* new_revision = nullptr) {
    uint64_t rev = 0;
    char* errmsg = nullptr;
    int rc = floyd_write_if(f_, key.data(), key.size(), value.data(), value.size(), expected_mod_revision, &rev,
                            &errmsg);
    if (rc == FLOYD_OK && new_revision != nullptr) *new_revision = rev;
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Deletes key only if it was last modified at revision
  // `expected_mod_revision` (0: only if absent, which deletes nothing).
  // IsConflict() (nothing deleted) if not.
  Status DeleteIf(const std::string& key, uint64_t expected_mod_revision) {
    char* errmsg = nullptr;
    int rc = floyd_delete_if(f_, key.data(), key.size(), expected_mod_revision, &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) The keys in [start, end) in byte order, with values and
  // revisions, linearizable, read from one snapshot (never half a
  // transaction): at most `limit` (0: as many as a 32 MiB page holds). An
  // empty `end` runs to the last key; a prefix scan ends at PrefixEnd(prefix).
  // out->more: the range goes on; scan again from the last key followed by a
  // zero byte. *out (required) is replaced on success only.
  Status Scan(const std::string& start, const std::string& end, size_t limit, KvList* out) {
    if (out == nullptr) return Status::InvalidArgument("out is NULL");
    floyd_kv_list_t* list = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_scan(f_, start.data(), start.size(), end.data(), end.size(), limit, &list, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    detail::TakeList(list, out);
    return Status::OK();
  }

  // (floyd) The number of keys in [start, end) (as Scan's range), linearizable.
  Status Count(const std::string& start, const std::string& end, uint64_t* count) {
    if (count == nullptr) return Status::InvalidArgument("count is NULL");
    uint64_t n = 0;
    char* errmsg = nullptr;
    int rc = floyd_count(f_, start.data(), start.size(), end.data(), end.size(), &n, &errmsg);
    if (rc == FLOYD_OK) *count = n;
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Runs `txn` (linearizable, one log entry, atomic at one revision on
  // every replica); ok() whichever branch ran. *succeeded: whether THEN ran;
  // *gets: the gets of the branch that ran, in order, a missing key left out;
  // *revision: the group's revision after it. Each may be NULL; each is
  // written on success only. IsInvalidArgument() for a Txn over its bounds (or
  // moved from); IsNotFound() if a put of the branch that ran names a lease
  // that does not exist (nothing written); IsBusy() / IsIncomplete(): not
  // applied, retry.
  Status Commit(const Txn& txn, bool* succeeded, KvList* gets, uint64_t* revision) {
    bool ok = false;
    uint64_t rev = 0;
    floyd_kv_list_t* list = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_txn_commit(f_, txn.t_, &ok, gets != nullptr ? &list : nullptr, &rev, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    detail::TakeList(list, gets);
    if (succeeded != nullptr) *succeeded = ok;
    if (revision != nullptr) *revision = rev;
    return Status::OK();
  }

  // (floyd) Grants a lease of `ttl_ms` milliseconds and stores its id (never
  // 0) in *lease_id (required; written on success only). A TTL shorter than
  // twice the election timeout (2 x Options::check_leader_us) is raised to
  // it; 0 or over a year is IsInvalidArgument(). The lease ends, deleting
  // every key attached to it at one revision, once its TTL passes without a
  // keep-alive, or when revoked. Linearizable (one log entry); IsBusy() /
  // IsIncomplete(): not granted, retry.
  Status LeaseGrant(uint64_t ttl_ms, uint64_t* lease_id) {
    if (lease_id == nullptr) return Status::InvalidArgument("lease_id is NULL");
    uint64_t id = 0;
    char* errmsg = nullptr;
    int rc = floyd_lease_grant(f_, ttl_ms, &id, &errmsg);
    if (rc == FLOYD_OK) *lease_id = id;
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Renews lease `lease_id` for its TTL from now; *ttl_ms_left (when
  // not NULL, on success only) gets the TTL. The lease lasts at least that
  // long from when this call began, across leader changes too. IsNotFound()
  // once it expired or was revoked (its keys are gone or going);
  // IsInvalidArgument() for lease id 0. Keep-alives from many threads on one
  // Floyd share log entries: call it freely (a third of the TTL is the usual
  // period); it is safe to retry whatever the outcome.
  Status LeaseKeepAlive(uint64_t lease_id, uint64_t* ttl_ms_left = nullptr) {
    uint64_t ttl = 0;
    char* errmsg = nullptr;
    int rc = floyd_lease_keepalive(f_, lease_id, &ttl, &errmsg);
    if (rc == FLOYD_OK && ttl_ms_left != nullptr) *ttl_ms_left = ttl;
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Ends lease `lease_id` now, deleting every key attached to it at
  // one revision. IsNotFound() if there is no such lease (expired, revoked
  // already or never granted); IsInvalidArgument() for lease id 0.
  Status LeaseRevoke(uint64_t lease_id) {
    char* errmsg = nullptr;
    int rc = floyd_lease_revoke(f_, lease_id, &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Lease `lease_id`'s TTL (*ttl_ms), what is left of it
  // (*remaining_ms) and the number of keys attached to it (*keys); each may
  // be NULL, each is written on success only. Linearizable (as Read).
  // IsNotFound() if there is no such lease; IsInvalidArgument() for lease id 0.
  Status LeaseTimeToLive(uint64_t lease_id, uint64_t* ttl_ms, uint64_t* remaining_ms = nullptr,
                         uint64_t* keys = nullptr) {
    uint64_t ttl = 0, remaining = 0, n = 0;
    char* errmsg = nullptr;
    int rc = floyd_lease_time_to_live(f_, lease_id, &ttl, &remaining, &n, &errmsg);
    if (rc == FLOYD_OK) {
      if (ttl_ms != nullptr) *ttl_ms = ttl;
      if (remaining_ms != nullptr) *remaining_ms = remaining;
      if (keys != nullptr) *keys = n;
    }
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Stores value under key attached to lease `lease_id`: the key is
  // deleted when the lease ends (a later write without a lease detaches it).
  // IsNotFound() (nothing written) if there is no such lease;
  // IsInvalidArgument() as Write's, and for lease id 0.
  Status WriteWithLease(const std::string& key, const std::string& value, uint64_t lease_id) {
    char* errmsg = nullptr;
    int rc = floyd_write_with_lease(f_, key.data(), key.size(), value.data(), value.size(), lease_id, &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // (floyd) Calls `callback` with every change to a key in [start, end) (an
  // empty `end`: every key from `start` on; a prefix watch ends at
  // PrefixEnd(prefix)) from revision `start_revision` on (0: from the next
  // change), in revision order, each change once, as this node applies them
  // (a follower too, across leader changes); the changes of one transaction
  // share a revision. *watch_id (required; written on success only) gets
  // the id for Unwatch. Changes before now come from the history this node
  // keeps (Options::history_revisions): IsCompacted() (nothing watched) if
  // `start_revision` is older. A watcher that saw revision r and watches
  // again from r + 1, after a restart too, misses and repeats nothing.
  //
  // `callback(events, ended)` runs on the library's watch thread (a Host's
  // is shared by all its groups), one call at a time per watch: batches of
  // events with an ok() `ended`; and, when the watch ends by itself, one
  // last call with no events and the status that ended it: floyd_code()
  // FLOYD_STOPPED (IsIOError(): the node was closed; deleting the Floyd, or
  // closing its Host, makes that call before it returns), FLOYD_COMPACTED
  // (IsCompacted(): a snapshot replaced the node's state) or FLOYD_BUSY
  // (IsBusy(): the callback fell more than 100,000 changes or 64 MiB
  // behind); for the last two, watch again from the last revision seen + 1.
  // The first calls may come before Watch returns. Keep the callback short
  // (it delays every watch on the thread); it may call Unwatch (its own
  // watch's too); other calls on the node work but hold up every watch on
  // the thread while they wait; it must not delete its Floyd or close its
  // Host. An exception it throws is swallowed. The Floyd keeps the callback
  // until its last call or until Unwatch, then destroys it (exactly once).
  //
  // IsInvalidArgument() for an empty callback, a NULL watch_id, a bound over
  // 64 KiB + 1 bytes or a node running a StateMachine of your own;
  // floyd_code() FLOYD_STOPPED once the node (or its Host) is closed.
  Status Watch(const std::string& start, const std::string& end, uint64_t start_revision, WatchCallback callback,
               uint64_t* watch_id) {
    if (watch_id == nullptr) return Status::InvalidArgument("watch_id is NULL");
    if (!callback) return Status::InvalidArgument("the watch callback is empty");
    detail::WatchState* state = new (std::nothrow) detail::WatchState(std::move(callback), &watches_);
    if (state == nullptr) return Status::IOError("out of memory allocating a watch");
    uint64_t id = 0;
    char* errmsg = nullptr;
    int rc = floyd_watch(f_, start.data(), start.size(), end.data(), end.size(), start_revision,
                         &detail::WatchState::Call, state, &id, &errmsg);
    if (rc != FLOYD_OK) {
      delete state;  // never called: floyd refused the watch
      return detail::TakeStatus(rc, errmsg);
    }
    floyd_free(errmsg);
    bool ended = false;
    {
      std::lock_guard<std::mutex> lock(watches_.mu);
      ended = state->ended;
      if (!ended) {
        state->id = id;
        state->registered = true;
        watches_.live[id] = state;
      }
    }
    // (It ended by itself before we knew its id: its last call ran, nothing
    // else will free it.)
    if (ended) delete state;
    *watch_id = id;
    return Status::OK();
  }

  // (floyd) Ends watch `watch_id` without a last call: once this returns
  // ok() its callback is not called again and has been destroyed (called
  // from that very callback: it runs no more after the current call, and is
  // destroyed once that call returns). IsNotFound() if there is no such
  // watch: unwatched already, never made, or ended by itself (its last call
  // has run, or runs at this very moment on the watch thread: if the last
  // call matters, wait for it rather than for Unwatch).
  Status Unwatch(uint64_t watch_id) {
    int rc = floyd_unwatch(f_, watch_id);
    if (rc == FLOYD_NOT_FOUND) return Status::FromCode(rc, "no such watch (it ended, or never was)");
    if (rc != FLOYD_OK) return Status::FromCode(rc, "unwatch failed");
    detail::WatchState* state = nullptr;
    bool found = false;
    {
      std::lock_guard<std::mutex> lock(watches_.mu);
      std::map<uint64_t, detail::WatchState*>::iterator it = watches_.live.find(watch_id);
      if (it != watches_.live.end()) {
        found = true;
        state = it->second;
        watches_.live.erase(it);
        if (state == detail::WatchState::Current()) {
          // Inside its own callback: the trampoline frees it after this call.
          state->unwatched_in_call = true;
          state = nullptr;
        }
      }
    }
    // Not ours (any more): the watch had ended by itself, its last call ran
    // (floyd_unwatch waited for it) and freed it. The library may still
    // have held the ended watch (one that fell behind): to the caller it is
    // gone all the same.
    if (!found) return Status::NotFound("no such watch (it ended by itself)");
    delete state;
    return Status::OK();
  }

  // Takes lock `name` for `holder` for `ttl` milliseconds (1 ms to 24 h), or
  // renews it when `holder` holds it already. IsBusy() ("LOCKED: ...",
  // floyd_code() FLOYD_LOCKED) when another holder has it and its lease has
  // not run out. Expiry is judged by leader-stamped entry times: treat the
  // lock as lost `ttl` after sending the call, and pass the fencing token
  // (see the overload) to what the lock protects.
  Status TryLock(const std::string& name, const std::string& holder, uint64_t ttl) {
    return TryLock(name, holder, ttl, nullptr);
  }

  // TryLock that also returns the fencing token in *token (when not NULL, on
  // success only): it grows with every acquisition, a renewal keeps it.
  Status TryLock(const std::string& name, const std::string& holder, uint64_t ttl, uint64_t* token) {
    char* errmsg = nullptr;
    uint64_t t = 0;
    int rc = floyd_try_lock(f_, name.data(), name.size(), holder.data(), holder.size(), ttl, &t, &errmsg);
    if (rc == FLOYD_OK && token != nullptr) *token = t;
    return detail::TakeStatus(rc, errmsg);
  }

  // Releases lock `name` held by `holder`. IsNotFound() ("NOT_HOLDER: ...",
  // floyd_code() FLOYD_NOT_HOLDER) when another holds it, it expired or it is free.
  Status UnLock(const std::string& name, const std::string& holder) {
    char* errmsg = nullptr;
    int rc = floyd_unlock(f_, name.data(), name.size(), holder.data(), holder.size(), &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // Adds "ip:port" to the cluster (caught up as a learner, then a voter);
  // returns once it votes, at once if it is a voter already. IsBusy() while
  // another change is in progress; IsInvalidArgument() for a bad address.
  Status AddServer(const std::string& new_server) { return Change(floyd_add_server, new_server); }

  // Removes "ip:port" from the cluster; returns once the change is committed
  // (a removed leader steps down). IsInvalidArgument() for a non-member or the
  // last voter, IsBusy() while another change is in progress.
  Status RemoveServer(const std::string& out_server) { return Change(floyd_remove_server, out_server); }

  // Hands leadership to voter "ip:port" (Raft dissertation 3.10); returns
  // once it leads (at once if it does already); a follower forwards it.
  // IsTimeout() if it did not take over in time (it is down, say: the old
  // leader leads on), IsInvalidArgument() for a non-voter, IsBusy() while a
  // membership change or another transfer runs.
  Status TransferLeader(const std::string& server) { return Change(floyd_transfer_leader, server); }

  // Completion of WriteAsync and DeleteAsync: the outcome, as Write's.
  typedef std::function<void(const Status&)> DoneCallback;
  // Completion of ReadAsync: the outcome and, when ok(), the value.
  typedef std::function<void(const Status&, const std::string& value)> ReadCallback;

  // Write without waiting: returns at once; `done` is called exactly once
  // with the outcome, on one of the node's threads (never on the calling
  // thread before WriteAsync returns), at the latest shortly after the
  // request timeout; it must not block, and may call the API again. A
  // non-ok return (bad input, IsBusy() past max_async_in_flight, a closed
  // node) means `done` is never called. Calls still unanswered when the
  // Floyd is deleted are answered (floyd_code() FLOYD_STOPPED) before the
  // destructor returns.
  Status WriteAsync(const std::string& key, const std::string& value, DoneCallback done) {
    if (!done) return Status::InvalidArgument("done is empty");
    detail::AsyncDone* d = new detail::AsyncDone{std::move(done)};
    int rc = floyd_write_async(f_, key.data(), key.size(), value.data(), value.size(), &detail::AsyncDone::Call, d);
    if (rc != FLOYD_OK) delete d;
    return Status::FromCode(rc, rc == FLOYD_OK ? "" : "write_async refused");
  }

  // Delete without waiting; `done` as for WriteAsync.
  Status DeleteAsync(const std::string& key, DoneCallback done) {
    if (!done) return Status::InvalidArgument("done is empty");
    detail::AsyncDone* d = new detail::AsyncDone{std::move(done)};
    int rc = floyd_delete_async(f_, key.data(), key.size(), &detail::AsyncDone::Call, d);
    if (rc != FLOYD_OK) delete d;
    return Status::FromCode(rc, rc == FLOYD_OK ? "" : "delete_async refused");
  }

  // Linearizable read without waiting; `done` gets the value (IsNotFound()
  // for a missing key), as for WriteAsync.
  Status ReadAsync(const std::string& key, ReadCallback done) {
    if (!done) return Status::InvalidArgument("done is empty");
    detail::AsyncRead* d = new detail::AsyncRead{std::move(done)};
    int rc = floyd_read_async(f_, key.data(), key.size(), &detail::AsyncRead::Call, d);
    if (rc != FLOYD_OK) delete d;
    return Status::FromCode(rc, rc == FLOYD_OK ? "" : "read_async refused");
  }

  // Async calls not yet answered.
  size_t AsyncInFlight() { return floyd_async_in_flight(f_); }

  // True and the leader's "ip:port" in *ip_port when a leader is known.
  bool GetLeader(std::string* ip_port) {
    char* p = nullptr;
    if (floyd_get_leader(f_, &p) != FLOYD_OK) return false;
    detail::TakeText(p, ip_port);
    return true;
  }

  // True and the leader's address split in *ip and *port when a leader is
  // known (an IPv6 address comes without its brackets).
  bool GetLeader(std::string* ip, int* port) {
    std::string ip_port;
    if (!GetLeader(&ip_port)) return false;
    std::string::size_type colon = ip_port.rfind(':');
    if (colon == std::string::npos) return false;
    std::string host = ip_port.substr(0, colon);
    if (host.size() >= 2 && host[0] == '[' && host[host.size() - 1] == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (ip != nullptr) *ip = host;
    if (port != nullptr) *port = std::atoi(ip_port.c_str() + colon + 1);
    return true;
  }

  // Whether a leader is known.
  bool HasLeader() { return floyd_has_leader(f_); }

  // Whether this node is the leader.
  bool IsLeader() { return floyd_is_leader(f_); }

  // Every member of this node's latest configuration (voters and learners) as
  // "ip:port" (replaces the contents of *nodes).
  Status GetAllServers(std::set<std::string>* nodes) {
    if (nodes == nullptr) return Status::InvalidArgument("nodes is NULL");
    char* csv = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_get_all_servers(f_, &csv, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    std::string all;
    detail::TakeText(csv, &all);
    nodes->clear();
    std::string::size_type start = 0;
    while (start < all.size()) {
      std::string::size_type end = all.find(',', start);
      if (end == std::string::npos) end = all.size();
      if (end > start) nodes->insert(all.substr(start, end - start));
      start = end + 1;
    }
    return Status::OK();
  }

  // Floyd's status header line and this node's row
  // (Node, Role, Term, Leader, VoteFor, LastLogTerm, LastLogIdx, CommitIndex, LastApplied).
  bool GetServerStatus(std::string* msg) {
    char* text = nullptr;
    if (floyd_get_server_status(f_, &text) != FLOYD_OK) return false;
    detail::TakeText(text, msg);
    return true;
  }

  // The metrics of this node's host and group in the OpenMetrics text
  // format Prometheus scrapes (floyd_get_metrics).
  Status Metrics(std::string* text) {
    if (text == nullptr) return Status::InvalidArgument("text is NULL");
    char* out = nullptr;
    int rc = floyd_get_metrics(f_, &out);
    return detail::TakeTextResult(rc, out, "floyd_get_metrics failed", text);
  }

  // Lowest level written to <path>/LOG: DEBUG=1 INFO=2 WARN=3 ERROR=4 FATAL=5 NONE=6.
  void set_log_level(const int log_level) { floyd_set_log_level(f_, log_level); }

 private:
  friend class Host;

  explicit Floyd(floyd_t* f) : f_(f) {}

  // The C options for `options`; on OK the caller frees *out.
  static Status MakeOptions(const Options& options, floyd_options_t** out) {
    std::string members;
    for (size_t i = 0; i < options.members.size(); i++) {
      if (i > 0) members += ',';
      members += options.members[i];
    }
    if (detail::HasNul(members) || detail::HasNul(options.local_ip) || detail::HasNul(options.path)) {
      return Status::InvalidArgument("members, local_ip and path must not contain NUL bytes");
    }
    floyd_options_t* o = floyd_options_new(members.c_str(), options.local_ip.c_str(),
                                           options.local_port, options.path.c_str());
    if (o == nullptr) return Status::IOError("out of memory allocating floyd options");
    int rc = floyd_options_set_check_leader_us(o, options.check_leader_us);
    if (rc == FLOYD_OK) rc = floyd_options_set_heartbeat_us(o, options.heartbeat_us);
    if (rc == FLOYD_OK) rc = floyd_options_set_append_entries_size_once(o, options.append_entries_size_once);
    if (rc == FLOYD_OK) rc = floyd_options_set_append_entries_count_once(o, options.append_entries_count_once);
    // A joining node never leads alone, whatever one member forced on.
    if (rc == FLOYD_OK) rc = floyd_options_set_single_mode(o, options.single_mode && !options.join);
    if (rc == FLOYD_OK) rc = floyd_options_set_join(o, options.join);
    if (rc == FLOYD_OK) rc = floyd_options_set_snapshot_log_entries(o, options.snapshot_log_entries);
    if (rc == FLOYD_OK) rc = floyd_options_set_snapshot_log_bytes(o, options.snapshot_log_bytes);
    if (rc == FLOYD_OK) rc = floyd_options_set_snapshot_keep_entries(o, options.snapshot_keep_entries);
    if (rc == FLOYD_OK) rc = floyd_options_set_snapshot_chunk_bytes(o, options.snapshot_chunk_bytes);
    if (rc == FLOYD_OK) rc = floyd_options_set_snapshot_bytes_per_sec(o, options.snapshot_bytes_per_sec);
    if (rc == FLOYD_OK) rc = floyd_options_set_lease_reads(o, options.lease_reads);
    if (rc == FLOYD_OK && options.quiesce >= 0) rc = floyd_options_set_quiesce(o, options.quiesce != 0);
    if (rc == FLOYD_OK) rc = floyd_options_set_max_async_in_flight(o, options.max_async_in_flight);
    if (rc == FLOYD_OK) rc = floyd_options_set_history_revisions(o, options.history_revisions);
    if (rc == FLOYD_OK) rc = floyd_options_set_session_timeout_ms(o, options.session_timeout_ms);
    if (rc == FLOYD_OK && !(options.tls_ca_path.empty() && options.tls_cert_path.empty() &&
                            options.tls_key_path.empty())) {
      if (detail::HasNul(options.tls_ca_path) || detail::HasNul(options.tls_cert_path) ||
          detail::HasNul(options.tls_key_path)) {
        floyd_options_free(o);
        return Status::InvalidArgument("TLS paths must not contain NUL bytes");
      }
      rc = floyd_options_set_tls(o, options.tls_ca_path.c_str(), options.tls_cert_path.c_str(),
                                 options.tls_key_path.c_str());
      if (rc != FLOYD_OK) {
        floyd_options_free(o);
        return Status::InvalidArgument("TLS needs all three paths: tls_ca_path, tls_cert_path, tls_key_path");
      }
    }
    if (rc != FLOYD_OK) {
      floyd_options_free(o);
      return Status::FromCode(rc, "setting options failed");
    }
    *out = o;
    return Status::OK();
  }

  // A Floyd for the open node `handle` in *floyd (closing it if out of
  // memory); `log` is the log callback it keeps alive (a group's: its host's).
  static Status Wrap(floyd_t* handle, Floyd** floyd,
                     std::shared_ptr<detail::LogSink> log = std::shared_ptr<detail::LogSink>()) {
    *floyd = new (std::nothrow) Floyd(handle);
    if (*floyd == nullptr) {
      floyd_close(handle);
      return Status::IOError("out of memory allocating a floyd::Floyd");
    }
    (*floyd)->log_ = log;
    return Status::OK();
  }

  // No copying allowed.
  Floyd(const Floyd&) = delete;
  Floyd& operator=(const Floyd&) = delete;

  typedef int (*ReadFn)(floyd_t*, const char*, size_t, char**, size_t*, char**);
  typedef int (*ChangeFn)(floyd_t*, const char*, char**);

  Status Change(ChangeFn change, const std::string& server) {
    if (detail::HasNul(server)) return Status::InvalidArgument("server must not contain NUL bytes");
    char* errmsg = nullptr;
    int rc = change(f_, server.c_str(), &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  Status ReadWith(ReadFn read, const std::string& key, std::string* value) {
    if (value == nullptr) return Status::InvalidArgument("value is NULL");
    char* p = nullptr;
    size_t len = 0;
    char* errmsg = nullptr;
    int rc = read(f_, key.data(), key.size(), &p, &len, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    detail::TakeBytes(p, len, value);
    return Status::OK();
  }

  floyd_t* f_;
  // The live watches' callbacks (Watch, Unwatch).
  detail::WatchRegistry watches_;
  // A group's host's log callback: released after floyd_close (members are
  // destroyed after the destructor's body), so it outlives every call of it.
  std::shared_ptr<detail::LogSink> log_;
};

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_NODE_HPP_
