// floyd/coordination.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// The coordination API's values: revisions (KvMeta), scans (KeyValue,
// KvList, PrefixEnd), watches (WatchEvent) and transactions (Txn).

#ifndef FLOYD_BINDINGS_CPP_FLOYD_COORDINATION_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_COORDINATION_HPP_

#include "status.hpp"

namespace floyd {

// (floyd) A key's revisions, etcd's model: the group's revision grows by one
// with every change (a write, a deleted key, a transaction that writes);
// create_revision is the revision the key was created at (since its last
// deletion), mod_revision the one it was last modified at, version its
// writes since creation (a delete starts over), lease its lease (0: none).
struct KvMeta {
  uint64_t create_revision;
  uint64_t mod_revision;
  uint64_t version;
  uint64_t lease;

  KvMeta() : create_revision(0), mod_revision(0), version(0), lease(0) {}
};

// (floyd) A key with its value and revisions.
struct KeyValue {
  std::string key;
  std::string value;
  KvMeta meta;
};

// (floyd) Keys with values and revisions: a page of Floyd::Scan, or the gets
// of a transaction (Floyd::Commit).
struct KvList {
  // In key order for a scan; in the order of the Get calls for a transaction.
  std::vector<KeyValue> kvs;
  // Scan: the range goes on past the last key here (scan again from that key
  // followed by a zero byte: kvs.back().key + std::string(1, '\0')).
  bool more;
  // The group's revision at the state read (after the transaction).
  uint64_t revision;

  KvList() : more(false), revision(0) {}
};

// (floyd) The first key after every key that starts with `prefix`: a prefix
// scan is Scan(prefix, PrefixEnd(prefix), ...). Empty (to the last key) when
// there is none: an empty prefix, or one of 0xff bytes only. Throws
// std::bad_alloc if out of memory (as any std::string may).
inline std::string PrefixEnd(const std::string& prefix) {
  char* end = nullptr;
  size_t len = 0;
  if (floyd_prefix_end(prefix.data(), prefix.size(), &end, &len) != FLOYD_OK) throw std::bad_alloc();
  std::string out;
  detail::TakeBytes(end, len, &out);
  return out;
}

namespace detail {

// Copies a library list into *out (when not NULL) and frees it.
inline void TakeList(floyd_kv_list_t* list, KvList* out) {
  std::unique_ptr<floyd_kv_list_t, void (*)(floyd_kv_list_t*)> guard(list, &floyd_kv_list_free);
  if (out == nullptr || list == nullptr) return;
  KvList copy;
  size_t n = floyd_kv_list_len(list);
  copy.kvs.resize(n);
  for (size_t i = 0; i < n; i++) {
    const char* k = nullptr;
    const char* v = nullptr;
    size_t kl = 0, vl = 0;
    floyd_kv_meta_t m;
    std::memset(&m, 0, sizeof m);
    if (floyd_kv_list_get(list, i, &k, &kl, &v, &vl, &m) != FLOYD_OK) continue;
    KeyValue& kv = copy.kvs[i];
    kv.key.assign(k, kl);
    kv.value.assign(v, vl);
    kv.meta.create_revision = m.create_revision;
    kv.meta.mod_revision = m.mod_revision;
    kv.meta.version = m.version;
    kv.meta.lease = m.lease;
  }
  copy.more = floyd_kv_list_more(list);
  copy.revision = floyd_kv_list_revision(list);
  std::swap(*out, copy);
}

}  // namespace detail

// (floyd) One change to a watched key, as Floyd::Watch's callback gets it.
struct WatchEvent {
  // What happened to the key (FLOYD_EVENT_*).
  enum Type { kPut = FLOYD_EVENT_PUT, kDelete = FLOYD_EVENT_DELETE };
  Type type;
  std::string key;
  // The value written; empty for a delete.
  std::string value;
  // The change's revision (the changes of one transaction share it).
  uint64_t mod_revision;

  WatchEvent() : type(kPut), mod_revision(0) {}
};

// (floyd) A watch callback (Floyd::Watch): changes in revision order with
// an ok() `ended`; or, once, when the watch ends by itself, no events and
// the non-ok status that ended it (its last call).
typedef std::function<void(const std::vector<WatchEvent>& events, const Status& ended)> WatchCallback;

namespace detail {

struct WatchRegistry;

// One watch's callback, heap-held and handed to floyd_watch as user_data.
// Freed exactly once, by whoever learns last that floyd will not call it
// again: the trampoline after the last call (a non-OK code) or after a call
// in which the callback unwatched its own watch; Floyd::Unwatch when
// floyd_unwatch answers OK from any other thread (it returns only once no
// call runs); Floyd::Watch if the last call came before it registered the
// id. The fields but `fn` are guarded by the registry's mutex.
struct WatchState {
  WatchCallback fn;
  WatchRegistry* registry;
  uint64_t id;
  // The id is known and the state is in registry->live.
  bool registered;
  // The last call ran.
  bool ended;
  // Unwatched from inside its own callback: the trampoline frees it after
  // that call returns.
  bool unwatched_in_call;

  WatchState(WatchCallback f, WatchRegistry* r)
      : fn(std::move(f)), registry(r), id(0), registered(false), ended(false), unwatched_in_call(false) {}

  // The watch whose callback this thread runs (NULL: none).
  static WatchState*& Current() {
    static thread_local WatchState* current = nullptr;
    return current;
  }

  static Status EndStatus(int code) {
    switch (code) {
      case FLOYD_STOPPED: return Status::FromCode(code, "the watch ended: its node was closed");
      case FLOYD_COMPACTED:
        return Status::FromCode(code,
                                "the watch ended: a snapshot replaced the node's state; watch again from the "
                                "last revision seen + 1");
      case FLOYD_BUSY:
        return Status::FromCode(code,
                                "the watch ended: it fell too far behind; watch again from the last revision "
                                "seen + 1");
      default: return Status::FromCode(code, "the watch ended");
    }
  }

  static void Call(void* user_data, const floyd_watch_event_t* events, size_t n, int code);
};

// A Floyd's live watches by id, for Unwatch and the destructor.
struct WatchRegistry {
  std::mutex mu;
  std::map<uint64_t, WatchState*> live;
};

inline void WatchState::Call(void* user_data, const floyd_watch_event_t* events, size_t n, int code) {
  WatchState* self = static_cast<WatchState*>(user_data);
  bool last = code != FLOYD_OK;
  WatchState*& current = Current();
  WatchState* outer = current;
  current = self;
  // An exception the callback throws is swallowed: it must not unwind into
  // the library's thread.
  try {
    std::vector<WatchEvent> batch;
    if (!last && events != nullptr) {
      batch.resize(n);
      for (size_t i = 0; i < n; i++) {
        WatchEvent& e = batch[i];
        e.type = events[i].type == FLOYD_EVENT_DELETE ? WatchEvent::kDelete : WatchEvent::kPut;
        if (events[i].key != nullptr) e.key.assign(events[i].key, events[i].key_len);
        if (events[i].value != nullptr) e.value.assign(events[i].value, events[i].value_len);
        e.mod_revision = events[i].mod_revision;
      }
    }
    self->fn(batch, last ? EndStatus(code) : Status::OK());
  } catch (...) {
  }
  current = outer;
  bool free_now = false;
  try {
    std::lock_guard<std::mutex> lock(self->registry->mu);
    if (last) {
      self->ended = true;
      if (self->registered && !self->unwatched_in_call) self->registry->live.erase(self->id);
      // Not registered yet: Floyd::Watch frees it when it sees `ended`.
      free_now = self->registered || self->unwatched_in_call;
    } else {
      free_now = self->unwatched_in_call;
    }
  } catch (...) {
    return;  // (the mutex failed: leak rather than free what may be in use)
  }
  if (free_now) delete self;
}

}  // namespace detail

// (floyd) A transaction, etcd's: comparisons, then the THEN branch if every
// one holds (an empty transaction's do), the ELSE branch otherwise; each
// branch a list of puts, deletes and gets, run atomically at one revision on
// every replica (Floyd::Commit). At most 128 comparisons and 128 operations
// per branch, a key written (put or deleted) at most once per branch: else
// Commit is IsInvalidArgument(). The builders check their arguments (an empty
// key, an unknown Cmp or Branch: IsInvalidArgument(), nothing added).
//
//   floyd::Txn t;
//   t.IfModRevision("cfg", floyd::Txn::kEqual, rev);
//   t.Put(floyd::Txn::kThen, "cfg", "new");
//   t.Get(floyd::Txn::kElse, "cfg");
//   bool won = false;
//   floyd::KvList current;
//   floyd::Status s = f->Commit(t, &won, &current, NULL);
//
// Movable, not copyable (a moved-from Txn is empty and Commit refuses it).
// One thread at a time may build it; a built Txn may be committed again, and
// from several threads at once.
class Txn {
 public:
  // How a comparison compares (FLOYD_CMP_*).
  enum Cmp {
    kEqual = FLOYD_CMP_EQUAL,
    kNotEqual = FLOYD_CMP_NOT_EQUAL,
    kLess = FLOYD_CMP_LESS,
    kGreater = FLOYD_CMP_GREATER
  };
  // A branch (FLOYD_TXN_*).
  enum Branch { kElse = FLOYD_TXN_ELSE, kThen = FLOYD_TXN_THEN };

  Txn() : t_(floyd_txn_new()) {}
  ~Txn() { floyd_txn_free(t_); }

  Txn(Txn&& other) noexcept : t_(other.t_) { other.t_ = nullptr; }
  Txn& operator=(Txn&& other) noexcept {
    if (this != &other) {
      floyd_txn_free(t_);
      t_ = other.t_;
      other.t_ = nullptr;
    }
    return *this;
  }

  // Compares `key`'s value with `value` (bytes). A missing key is unequal to
  // every value, neither less nor greater.
  Status IfValue(const std::string& key, Cmp cmp, const std::string& value) {
    return Status::FromCode(floyd_txn_if_value(t_, key.data(), key.size(), cmp, value.data(), value.size()),
                            "txn: bad comparison");
  }
  // Compares `key`'s version (its writes since creation; 0: absent).
  Status IfVersion(const std::string& key, Cmp cmp, uint64_t version) {
    return Status::FromCode(floyd_txn_if_version(t_, key.data(), key.size(), cmp, version), "txn: bad comparison");
  }
  // Compares the revision `key` was last modified at (0: absent).
  Status IfModRevision(const std::string& key, Cmp cmp, uint64_t revision) {
    return Status::FromCode(floyd_txn_if_mod_revision(t_, key.data(), key.size(), cmp, revision),
                            "txn: bad comparison");
  }
  // Compares the revision `key` was created at (0: absent).
  Status IfCreateRevision(const std::string& key, Cmp cmp, uint64_t revision) {
    return Status::FromCode(floyd_txn_if_create_revision(t_, key.data(), key.size(), cmp, revision),
                            "txn: bad comparison");
  }
  // Puts `key` in `branch`, attached to lease `lease` (0: none; see
  // Floyd::LeaseGrant). A put naming a lease that does not exist (expired,
  // revoked or never granted) makes Commit answer IsNotFound(), nothing
  // written, if its branch runs.
  Status Put(Branch branch, const std::string& key, const std::string& value, uint64_t lease = 0) {
    return Status::FromCode(floyd_txn_put(t_, branch, key.data(), key.size(), value.data(), value.size(), lease),
                            "txn: bad put");
  }
  // Deletes `key` in `branch` (a missing key: nothing, no revision).
  Status Delete(Branch branch, const std::string& key) {
    return Status::FromCode(floyd_txn_delete(t_, branch, key.data(), key.size()), "txn: bad delete");
  }
  // Reads `key` with its revisions in `branch`, after the branch's earlier
  // writes; Commit's gets list it (a missing key is left out).
  Status Get(Branch branch, const std::string& key) {
    return Status::FromCode(floyd_txn_get(t_, branch, key.data(), key.size()), "txn: bad get");
  }

 private:
  friend class Floyd;

  // No copying allowed.
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  floyd_txn_t* t_;
};

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_COORDINATION_HPP_
