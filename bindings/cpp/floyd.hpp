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

#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "floyd.h"

namespace floyd {

// Log levels for Floyd::set_log_level (the original's names).
enum {
  DEBUG_LEVEL = FLOYD_LOG_DEBUG,
  INFO_LEVEL = FLOYD_LOG_INFO,
  WARN_LEVEL = FLOYD_LOG_WARN,
  ERROR_LEVEL = FLOYD_LOG_ERROR,
  FATAL_LEVEL = FLOYD_LOG_FATAL,
  NONE_LEVEL = FLOYD_LOG_NONE
};

// A LevelDB/RocksDB-style status: ok() or an error kind with a message.
class Status {
 public:
  // A success status.
  Status() : code_(kOk), floyd_code_(FLOYD_OK) {}

  static Status OK() { return Status(); }
  static Status NotFound(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kNotFound, FLOYD_NOT_FOUND, msg, msg2);
  }
  static Status Corruption(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kCorruption, FLOYD_CORRUPTION, msg, msg2);
  }
  static Status NotSupported(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kNotSupported, -1, msg, msg2);
  }
  static Status InvalidArgument(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kInvalidArgument, FLOYD_INVALID_ARGUMENT, msg, msg2);
  }
  static Status IOError(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kIOError, FLOYD_IO_ERROR, msg, msg2);
  }
  static Status EndFile(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kEndFile, -1, msg, msg2);
  }
  // No leader is known right now (the original's "no leader node!"): retry later.
  static Status Incomplete(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kIncomplete, FLOYD_NO_LEADER, msg, msg2);
  }
  static Status Complete(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kComplete, -1, msg, msg2);
  }
  static Status Timeout(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kTimeout, FLOYD_TIMEOUT, msg, msg2);
  }
  static Status AuthFailed(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kAuthFailed, -1, msg, msg2);
  }
  static Status Busy(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kBusy, FLOYD_BUSY, msg, msg2);
  }
  // (floyd) A compare-and-swap or a transaction's condition did not hold:
  // nothing was written.
  static Status Conflict(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kConflict, FLOYD_CONFLICT, msg, msg2);
  }
  // (floyd) The revision asked for is older than the history kept (a Watch
  // from it; a watch's last call when a snapshot replaced the node's state).
  static Status Compacted(const std::string& msg, const std::string& msg2 = std::string()) {
    return Status(kCompacted, FLOYD_COMPACTED, msg, msg2);
  }

  // The status of a C API call: the one mapping from FLOYD_* codes to kinds.
  // `msg` is the library's message (empty: the code's name is used).
  //   OK -> OK, NOT_FOUND -> NotFound, NO_LEADER -> Incomplete,
  //   TIMEOUT -> Timeout (the command may or may not have been applied),
  //   LOCKED -> Busy (the lock is held by another holder),
  //   NOT_HOLDER -> NotFound (no lock held by this holder, or it expired),
  //   INVALID_ARGUMENT -> InvalidArgument, IO_ERROR -> IOError,
  //   CORRUPTION -> Corruption,
  //   STOPPED -> IOError (the node is closing or closed: it serves nothing more),
  //   BUSY -> Busy,
  //   INTERNAL and unknown codes -> Corruption (a library bug: stop trusting
  //   this node and report it),
  //   FAILED -> IOError (the node stopped after a fatal error: reopen it),
  //   STATE_MACHINE -> InvalidArgument (propose: your StateMachine::apply
  //   refused the command; the message is its own),
  //   CONFLICT -> Conflict (WriteIf / DeleteIf: the key is not at the
  //   revision expected; nothing written),
  //   COMPACTED -> Compacted (a revision older than the history kept).
  // Kinds shared by two codes keep the code's name in the message
  // ("Busy: LOCKED: ...") and floyd_code() tells them apart.
  static Status FromCode(int code, const std::string& msg = std::string()) {
    const char* name = floyd_status_str(code);
    std::string text = msg.empty() ? std::string(name ? name : "UNKNOWN") : msg;
    switch (code) {
      case FLOYD_OK: return OK();
      case FLOYD_NOT_FOUND: return Status(kNotFound, code, text, "");
      case FLOYD_NO_LEADER: return Status(kIncomplete, code, text, "");
      case FLOYD_TIMEOUT: return Status(kTimeout, code, text, "");
      case FLOYD_LOCKED: return Status(kBusy, code, "LOCKED", msg);
      case FLOYD_NOT_HOLDER: return Status(kNotFound, code, "NOT_HOLDER", msg);
      case FLOYD_INVALID_ARGUMENT: return Status(kInvalidArgument, code, text, "");
      case FLOYD_IO_ERROR: return Status(kIOError, code, text, "");
      case FLOYD_CORRUPTION: return Status(kCorruption, code, text, "");
      case FLOYD_STOPPED: return Status(kIOError, code, "STOPPED", msg);
      case FLOYD_BUSY: return Status(kBusy, code, text, "");
      case FLOYD_INTERNAL: return Status(kCorruption, code, "INTERNAL", msg);
      case FLOYD_FAILED: return Status(kIOError, code, "FAILED", msg);
      case FLOYD_STATE_MACHINE: return Status(kInvalidArgument, code, "STATE_MACHINE", msg);
      case FLOYD_CONFLICT: return Status(kConflict, code, text, "");
      case FLOYD_COMPACTED: return Status(kCompacted, code, text, "");
      default: {
        std::ostringstream unknown;
        unknown << "unknown floyd status code " << code;
        return Status(kCorruption, code, unknown.str(), msg);
      }
    }
  }

  bool ok() const { return code_ == kOk; }
  bool IsNotFound() const { return code_ == kNotFound; }
  bool IsCorruption() const { return code_ == kCorruption; }
  bool IsNotSupported() const { return code_ == kNotSupported; }
  bool IsInvalidArgument() const { return code_ == kInvalidArgument; }
  bool IsIOError() const { return code_ == kIOError; }
  bool IsEndFile() const { return code_ == kEndFile; }
  bool IsIncomplete() const { return code_ == kIncomplete; }
  bool IsComplete() const { return code_ == kComplete; }
  bool IsTimeout() const { return code_ == kTimeout; }
  bool IsAuthFailed() const { return code_ == kAuthFailed; }
  bool IsBusy() const { return code_ == kBusy; }
  // (floyd) floyd_code() FLOYD_CONFLICT: a compare-and-swap lost; nothing written.
  bool IsConflict() const { return code_ == kConflict; }
  // (floyd) floyd_code() FLOYD_COMPACTED.
  bool IsCompacted() const { return code_ == kCompacted; }

  // The FLOYD_* code behind this status (for example FLOYD_STOPPED for an
  // IOError of a closed node); -1 for kinds no C call returns (NotSupported, ...).
  int floyd_code() const { return floyd_code_; }

  // "OK", or the kind and the message, e.g. "NotFound: not found".
  std::string ToString() const {
    const char* kind = "";
    switch (code_) {
      case kOk: return "OK";
      case kNotFound: kind = "NotFound: "; break;
      case kCorruption: kind = "Corruption: "; break;
      case kNotSupported: kind = "Not implemented: "; break;
      case kInvalidArgument: kind = "Invalid argument: "; break;
      case kIOError: kind = "IO error: "; break;
      case kEndFile: kind = "End file: "; break;
      case kIncomplete: kind = "Incomplete: "; break;
      case kComplete: kind = "Complete: "; break;
      case kTimeout: kind = "Timeout: "; break;
      case kAuthFailed: kind = "Authorization failed: "; break;
      case kBusy: kind = "Busy: "; break;
      case kConflict: kind = "Conflict: "; break;
      case kCompacted: kind = "Compacted: "; break;
    }
    return kind + msg_;
  }

 private:
  enum Code {
    kOk = 0,
    kNotFound = 1,
    kCorruption = 2,
    kNotSupported = 3,
    kInvalidArgument = 4,
    kIOError = 5,
    kEndFile = 6,
    kIncomplete = 7,
    kComplete = 8,
    kTimeout = 9,
    kAuthFailed = 10,
    kBusy = 11,
    kConflict = 12,
    kCompacted = 13
  };

  Status(Code code, int floyd_code, const std::string& msg, const std::string& msg2)
      : code_(code), floyd_code_(floyd_code), msg_(msg) {
    if (!msg2.empty()) {
      msg_ += ": ";
      msg_ += msg2;
    }
  }

  Code code_;
  int floyd_code_;
  std::string msg_;
};

namespace detail {

// The status of a C call; frees the library's message.
inline Status TakeStatus(int code, char* errmsg) {
  std::string msg;
  if (errmsg != nullptr) {
    msg = errmsg;
    floyd_free(errmsg);
  }
  return Status::FromCode(code, msg);
}

// The completions of the async calls: heap-held std::functions that the C
// callback runs once and deletes. An exception a completion throws is
// swallowed: it must not unwind into the library's thread.
struct AsyncDone {
  std::function<void(const Status&)> fn;
  static void Call(void* user_data, int code, const char* errmsg) {
    std::unique_ptr<AsyncDone> self(static_cast<AsyncDone*>(user_data));
    try {
      self->fn(Status::FromCode(code, errmsg != nullptr ? errmsg : ""));
    } catch (...) {
    }
  }
};

struct AsyncRead {
  std::function<void(const Status&, const std::string&)> fn;
  static void Call(void* user_data, int code, const char* value, size_t value_len, const char* errmsg) {
    std::unique_ptr<AsyncRead> self(static_cast<AsyncRead*>(user_data));
    try {
      std::string v;
      if (code == FLOYD_OK && value != nullptr) v.assign(value, value_len);
      self->fn(Status::FromCode(code, errmsg != nullptr ? errmsg : ""), v);
    } catch (...) {
    }
  }
};

// Copies a library buffer into `out` (when not NULL) and frees it.
inline void TakeBytes(char* p, size_t len, std::string* out) {
  if (out != nullptr && p != nullptr) out->assign(p, len);
  floyd_free(p);
}

inline bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

}  // namespace detail

// A state machine of your own, replicated by floyd: every node applies the
// same commands (what Floyd::propose was given) in the same order. Open a
// node with Floyd::open_with_state_machine; floyd then owns the object and
// deletes it when the node is closed (or when opening fails).
//
// The methods run on the node's apply thread, one at a time (but at open,
// snapshot_load of the latest snapshot runs on the thread calling
// Floyd::open_with_state_machine, before the apply thread starts; at close,
// on_leader_stop and the destructor run on the closing thread); they must not
// call the Floyd that runs them (that deadlocks) and should not block for
// long. apply must be deterministic: the same state and command give the
// same state and answer on every node. floyd keeps no state of the machine
// on disk: at every open it calls snapshot_load with the latest snapshot, if
// there is one, then apply for every later command, so start empty.
//
// An exception thrown by a method never reaches floyd: from apply it is a
// refusal (its what() the message: throw only for deterministic reasons),
// from snapshot_save/snapshot_load a failure, from the others it is dropped.
class StateMachine {
 public:
  virtual ~StateMachine() {}

  // Applies the command `data` at log `index`. Returns true with the
  // proposer's answer in *result, or false to refuse it with a message in
  // *result (the proposer gets floyd_code() FLOYD_STATE_MACHINE). A refusal
  // should leave the state as it was.
  virtual bool apply(uint64_t index, const std::string& data, std::string* result) = 0;

  // Writes the whole state as files into the directory `dir` (it exists and
  // is empty); floyd syncs and ships them. Returns false on failure.
  virtual bool snapshot_save(const std::string& dir) = 0;

  // Replaces the whole state with what snapshot_save wrote into `dir` (read
  // it only). Returns false on failure, leaving the state as it was.
  virtual bool snapshot_load(const std::string& dir) = 0;

  // This node became the leader in `term`.
  virtual void on_leader_start(uint64_t term) { (void)term; }

  // This node is no longer the leader (also called at close if it was).
  virtual void on_leader_stop() {}
};

namespace detail {

// The C callbacks over a StateMachine: no exception crosses into floyd.
struct MachineCallbacks {
  static StateMachine* Of(void* user_data) { return static_cast<StateMachine*>(user_data); }

  // A malloc'ed copy for floyd, which frees it with free(); NULL if out of memory.
  static char* MallocCopy(const std::string& s) {
    char* p = static_cast<char*>(std::malloc(s.size() + 1));
    if (p != nullptr) {
      std::memcpy(p, s.data(), s.size());
      p[s.size()] = '\0';
    }
    return p;
  }

  static void Describe(std::string* out, const char* what) {
    try {
      *out = std::string("exception in StateMachine::apply: ") + what;
    } catch (...) {
      out->clear();
    }
  }

  static int Apply(void* user_data, uint64_t index, const char* data, size_t len, char** result,
                   size_t* result_len) {
    std::string answer;
    bool ok = false;
    try {
      ok = Of(user_data)->apply(index, std::string(data, len), &answer);
    } catch (const std::exception& e) {
      Describe(&answer, e.what());
    } catch (...) {
      Describe(&answer, "not a std::exception");
    }
    *result = MallocCopy(answer);
    *result_len = *result != nullptr ? answer.size() : 0;
    return ok ? 0 : 1;
  }

  static int SnapshotSave(void* user_data, const char* dir) {
    try {
      return Of(user_data)->snapshot_save(dir) ? 0 : 1;
    } catch (...) {
      return 2;
    }
  }

  static int SnapshotLoad(void* user_data, const char* dir) {
    try {
      return Of(user_data)->snapshot_load(dir) ? 0 : 1;
    } catch (...) {
      return 2;
    }
  }

  static void LeaderStart(void* user_data, uint64_t term) {
    try {
      Of(user_data)->on_leader_start(term);
    } catch (...) {
    }
  }

  static void LeaderStop(void* user_data) {
    try {
      Of(user_data)->on_leader_stop();
    } catch (...) {
    }
  }

  static void Finalize(void* user_data) {
    try {
      delete Of(user_data);
    } catch (...) {
    }
  }

  // The C struct running `machine` (floyd_open_with_state_machine and
  // floyd_host_open_group_with_state_machine); its destroy deletes it.
  static floyd_state_machine_t Struct(StateMachine* machine) {
    floyd_state_machine_t sm;
    std::memset(&sm, 0, sizeof sm);
    sm.user_data = machine;
    sm.apply = &Apply;
    sm.snapshot_save = &SnapshotSave;
    sm.snapshot_load = &SnapshotLoad;
    sm.on_leader_start = &LeaderStart;
    sm.on_leader_stop = &LeaderStop;
    sm.destroy = &Finalize;
    return sm;
  }
};

}  // namespace detail

// A log callback (HostOptions::log_callback): the line's level
// (FLOYD_LOG_DEBUG..FLOYD_LOG_ERROR) and the line itself. It runs on library
// threads, possibly several at once; it must be quick and must not call the
// Host or its groups. An exception it throws is swallowed.
typedef std::function<void(int level, const std::string& line)> LogCallback;

namespace detail {

// The C log callback over a LogCallback. A Host and every Floyd of its groups
// share one (a std::shared_ptr), so it lives until the last of them is gone:
// never freed while the library could still call it.
struct LogSink {
  LogCallback fn;
  static void Call(void* user_data, int level, const char* msg, size_t msg_len) {
    try {
      LogSink* self = static_cast<LogSink*>(user_data);
      self->fn(level, msg != nullptr ? std::string(msg, msg_len) : std::string());
    } catch (...) {
    }
  }
};

}  // namespace detail

// How to open a node: the original Floyd's fields, with floyd's defaults.
struct Options {
  // Every member as "ip:port", this node included
  // (parsed from the comma-separated "ip1:port1,ip2:port2,...").
  std::vector<std::string> members;
  // This node's address: it listens there and connects to peers from local_ip.
  std::string local_ip;
  int local_port;
  // Data directory: <path>/log (Raft log and meta), <path>/db (state machine), <path>/LOG.
  std::string path;
  // Election timeout base in microseconds; the real timeout is random in [1x, 2x).
  uint64_t check_leader_us;
  // Leader heartbeat interval in microseconds.
  uint64_t heartbeat_us;
  // Payload bytes per AppendEntries.
  uint64_t append_entries_size_once;
  // Entries per AppendEntries.
  uint64_t append_entries_count_once;
  // A one-member cluster that leads itself (forced on with a single member).
  bool single_mode;
  // (floyd) Start with no configuration and wait to be added by the cluster's
  // leader (AddServer on any member); members then need not name this node.
  bool join;
  // (floyd) Snapshot once the log holds this many entries past the last
  // snapshot (0: never by count), or its in-memory entries this many payload
  // bytes (0: never by size); keep this many entries behind a snapshot.
  uint64_t snapshot_log_entries;
  uint64_t snapshot_log_bytes;
  uint64_t snapshot_keep_entries;
  // (floyd) InstallSnapshot chunk size and per-follower rate (0: unlimited).
  uint64_t snapshot_chunk_bytes;
  uint64_t snapshot_bytes_per_sec;
  // (floyd) Lease reads: a leader whose lease holds reads without a round
  // (off by default; needs equal check_leader_us everywhere, drift < 10%).
  bool lease_reads;
  // (floyd) Quiet groups: -1 (the default) on in a group of a Host, off for a
  // node opened on its own; 0 off; 1 on. A quiet group stops ticking and
  // heartbeating while idle; its followers watch the leader's host instead.
  int quiesce;
  // (floyd) Admission control: at most this many async calls unanswered at
  // once; past it WriteAsync and the like return IsBusy().
  uint64_t max_async_in_flight;
  // (floyd) Revisions of changes the key-value store keeps for watches
  // (Floyd::Watch from a past revision); 0: none, a watch can only start
  // from now. A watch from an older revision is IsCompacted().
  uint64_t history_revisions;
  // (floyd) How long the handle's client session lives without a write, in
  // ms of the log's time (default an hour; 1 s to 30 days). The session makes
  // the library's own retries of a write (a lost answer, a failover) apply once.
  uint64_t session_timeout_ms;
  // (floyd) Mutual TLS between members (PEM paths; all empty: off). With it a
  // member talks only to peers whose certificate chains to tls_ca_path and
  // speaks for the member they are: it names the member's IP as an IP
  // subjectAltName and its address as a URI subjectAltName floyd://ip:port
  // (one naming only the IP is accepted only where no other member shares it).
  // Without it, peer traffic is unauthenticated: keep it on a trusted network.
  std::string tls_ca_path;
  std::string tls_cert_path;
  std::string tls_key_path;

  // Splits "ip:port,ip:port,..." into members (replacing them), trimming blanks.
  void SetMembers(const std::string& cluster_string) {
    members.clear();
    std::string::size_type start = 0;
    while (start <= cluster_string.size()) {
      std::string::size_type end = cluster_string.find(',', start);
      if (end == std::string::npos) end = cluster_string.size();
      std::string item = cluster_string.substr(start, end - start);
      const char* blanks = " \t\r\n";
      std::string::size_type b = item.find_first_not_of(blanks);
      if (b != std::string::npos) {
        std::string::size_type e = item.find_last_not_of(blanks);
        members.push_back(item.substr(b, e - b + 1));
      }
      start = end + 1;
    }
  }

  // Prints ToString() to stdout.
  void Dump() const { std::fputs(ToString().c_str(), stdout); }

  std::string ToString() const {
    std::ostringstream s;
    for (size_t i = 0; i < members.size(); i++) {
      s << "                 member " << i << " : " << members[i] << "\n";
    }
    s << "                 local_ip : " << local_ip << "\n"
      << "               local_port : " << local_port << "\n"
      << "                     path : " << path << "\n"
      << "          check_leader_us : " << check_leader_us << "\n"
      << "             heartbeat_us : " << heartbeat_us << "\n"
      << " append_entries_size_once : " << append_entries_size_once << "\n"
      << "append_entries_count_once : " << append_entries_count_once << "\n"
      << "              single_mode : " << (single_mode ? "true" : "false") << "\n"
      << "                     join : " << (join ? "true" : "false") << "\n"
      << "     snapshot_log_entries : " << snapshot_log_entries << "\n"
      << "       snapshot_log_bytes : " << snapshot_log_bytes << "\n"
      << "    snapshot_keep_entries : " << snapshot_keep_entries << "\n"
      << "     snapshot_chunk_bytes : " << snapshot_chunk_bytes << "\n"
      << "   snapshot_bytes_per_sec : " << snapshot_bytes_per_sec << "\n"
      << "              lease_reads : " << (lease_reads ? "true" : "false") << "\n"
      << "                  quiesce : " << quiesce << "\n"
      << "      max_async_in_flight : " << max_async_in_flight << "\n"
      << "        history_revisions : " << history_revisions << "\n"
      << "       session_timeout_ms : " << session_timeout_ms << "\n"
      << "              tls_ca_path : " << tls_ca_path << "\n"
      << "            tls_cert_path : " << tls_cert_path << "\n"
      << "             tls_key_path : " << tls_key_path << "\n";
    return s.str();
  }

  Options()
      : local_ip("127.0.0.1"),
        local_port(10086),
        path("/data/floyd"),
        check_leader_us(1000000),
        heartbeat_us(100000),
        append_entries_size_once(4u << 20),
        append_entries_count_once(4096),
        single_mode(false),
        join(false),
        snapshot_log_entries(50000),
        snapshot_log_bytes(32u << 20),
        snapshot_keep_entries(5000),
        snapshot_chunk_bytes(1u << 20),
        snapshot_bytes_per_sec(64u << 20),
        lease_reads(false),
        quiesce(-1),
        max_async_in_flight(100000),
        history_revisions(10000),
        session_timeout_ms(3600000) {}

  Options(const std::string& cluster_string, const std::string& _local_ip, int _local_port,
          const std::string& _path)
      : local_ip(_local_ip),
        local_port(_local_port),
        path(_path),
        check_leader_us(1000000),
        heartbeat_us(100000),
        append_entries_size_once(4u << 20),
        append_entries_count_once(4096),
        single_mode(false),
        join(false),
        snapshot_log_entries(50000),
        snapshot_log_bytes(32u << 20),
        snapshot_keep_entries(5000),
        snapshot_chunk_bytes(1u << 20),
        snapshot_bytes_per_sec(64u << 20),
        lease_reads(false),
        quiesce(-1),
        max_async_in_flight(100000),
        history_revisions(10000),
        session_timeout_ms(3600000) {
    SetMembers(cluster_string);
    if (members.size() == 1) single_mode = true;
  }
};

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
    detail::TakeBytes(p, p != nullptr ? std::char_traits<char>::length(p) : 0, ip_port);
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
    detail::TakeBytes(csv, csv != nullptr ? std::char_traits<char>::length(csv) : 0, &all);
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
    detail::TakeBytes(text, text != nullptr ? std::char_traits<char>::length(text) : 0, msg);
    return true;
  }

  // The metrics of this node's host and group in the OpenMetrics text
  // format Prometheus scrapes (floyd_get_metrics).
  Status Metrics(std::string* text) {
    if (text == nullptr) return Status::InvalidArgument("text is NULL");
    char* out = nullptr;
    int rc = floyd_get_metrics(f_, &out);
    if (rc != FLOYD_OK) {
      floyd_free(out);
      return Status::FromCode(rc, "floyd_get_metrics failed");
    }
    detail::TakeBytes(out, out != nullptr ? std::char_traits<char>::length(out) : 0, text);
    return Status::OK();
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

// How to open a Host: what all of its groups share. Its groups' own settings
// (members, timers, snapshots, reads, join) are the Options given to
// Host::OpenGroup.
struct HostOptions {
  // The host's address: it listens there, and its groups name it as their
  // member on this host ("local_ip:local_port").
  std::string local_ip;
  int local_port;
  // Data directory of every group of the host: <path>/log (one log store),
  // <path>/db (one key-value store), <path>/LOG and the groups' snapshots.
  std::string path;
  // Apply workers, each applying one group at a time, in order
  // (0: one per core, at most 8).
  uint32_t workers;
  // The cluster id every handshake names (empty: the library's "floyd");
  // hosts of two clusters never talk.
  std::string cluster_id;
  // Mutual TLS between hosts (PEM paths; all empty: off). As Options' fields
  // of the same names; a certificate names the host's address.
  std::string tls_ca_path;
  std::string tls_cert_path;
  std::string tls_key_path;
  // Also receives every line of the host's LOG (all its groups'); empty: none.
  // Kept alive by the Host and its groups' Floyds until the last is gone.
  LogCallback log_callback;

  HostOptions() : local_ip("127.0.0.1"), local_port(10086), path("/data/floyd"), workers(0) {}

  HostOptions(const std::string& _local_ip, int _local_port, const std::string& _path)
      : local_ip(_local_ip), local_port(_local_port), path(_path), workers(0) {}
};

// A host of many Raft groups in this process: one address, one directory,
// one LOG, one log store (one fsync for every group's writes) and one fixed
// set of threads, whatever the number of groups. Open it with Host::Open,
// open groups on it with OpenGroup (each a floyd::Floyd), and close it with
// Close or by destroying it.
//
//   floyd::Host* host = NULL;
//   floyd::Status s = floyd::Host::Open(floyd::HostOptions("10.0.0.1", 8901, "/var/lib/app/floyd"), &host);
//   floyd::Options opts("10.0.0.1:8901,10.0.0.2:8901,10.0.0.3:8901", "10.0.0.1", 8901, "");
//   floyd::Floyd* users = NULL;
//   if (s.ok()) s = host->OpenGroup(1, opts, &users);
//   if (s.ok()) s = users->Write("key", "value");
//   delete users;  // stops group 1 here; its data stays
//   delete host;   // stops every group still open, then the host's threads
//
// Thread-safe: OpenGroup, OpenGroupWithStateMachine, DropGroup, ListGroups
// and StatusJson may be called from many threads at once; Close, the
// destructor and the moves must not overlap any other call on the Host.
// Movable, not copyable: a moved-from Host is closed.
class Host {
 public:
  // A closed host (every call answers floyd_code() FLOYD_STOPPED), to move an
  // open one into.
  Host() : h_(nullptr) {}

  // Opens the host: its directory, stores, port and threads; no group runs
  // until OpenGroup. On success *host is the new host; on failure it is NULL.
  static Status Open(const HostOptions& options, Host** host) {
    if (host == nullptr) return Status::InvalidArgument("host (the output pointer) is NULL");
    *host = nullptr;
    if (detail::HasNul(options.local_ip) || detail::HasNul(options.path) || detail::HasNul(options.cluster_id)) {
      return Status::InvalidArgument("local_ip, path and cluster_id must not contain NUL bytes");
    }
    floyd_host_options_t* o =
        floyd_host_options_new(options.local_ip.c_str(), options.local_port, options.path.c_str());
    if (o == nullptr) return Status::IOError("out of memory allocating floyd host options");
    std::shared_ptr<detail::LogSink> log;
    Status s = Configure(options, o, &log);
    if (!s.ok()) {
      floyd_host_options_free(o);
      return s;
    }
    floyd_host_t* handle = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_host_open(o, &handle, &errmsg);
    floyd_host_options_free(o);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    *host = new (std::nothrow) Host(handle, log);
    if (*host == nullptr) {
      floyd_host_close(handle);
      return Status::IOError("out of memory allocating a floyd::Host");
    }
    return Status::OK();
  }

  Host(Host&& other) noexcept : h_(other.h_), log_(std::move(other.log_)) { other.h_ = nullptr; }

  // Closes this host first, then takes `other`'s.
  Host& operator=(Host&& other) noexcept {
    if (this != &other) {
      Close();
      h_ = other.h_;
      log_ = std::move(other.log_);
      other.h_ = nullptr;
    }
    return *this;
  }

  // Closes the host (see Close).
  ~Host() { Close(); }

  // Opens (creates or restarts) group `group_id` on this host, running the
  // key-value store; on success *floyd is its handle, on failure NULL.
  // `options` gives the group's members (host addresses), timers, snapshot,
  // read and join settings; its local_ip and local_port must name this host
  // (IsInvalidArgument() otherwise); its path is not used; TLS is the host's
  // (HostOptions), so its tls_* fields must be empty. IsInvalidArgument() for
  // a group already open on this host.
  Status OpenGroup(uint64_t group_id, const Options& options, Floyd** floyd) {
    if (floyd == nullptr) return Status::InvalidArgument("floyd (the output pointer) is NULL");
    *floyd = nullptr;
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    floyd_options_t* o = nullptr;
    Status s = MakeGroupOptions(options, &o);
    if (!s.ok()) return s;
    floyd_t* handle = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_host_open_group(h_, group_id, o, &handle, &errmsg);
    floyd_options_free(o);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    return Floyd::Wrap(handle, floyd, log_);
  }

  // OpenGroup with a StateMachine of your own instead of the key-value store
  // (see Floyd::open_with_state_machine). floyd takes the machine whatever
  // happens: it is deleted when the group closes (its Floyd is deleted or the
  // host closes), or before this returns if opening fails.
  Status OpenGroupWithStateMachine(uint64_t group_id, const Options& options, std::unique_ptr<StateMachine> machine,
                                   Floyd** floyd) {
    if (floyd == nullptr) return Status::InvalidArgument("floyd (the output pointer) is NULL");
    *floyd = nullptr;
    if (!machine) return Status::InvalidArgument("the state machine is NULL");
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    floyd_options_t* o = nullptr;
    Status s = MakeGroupOptions(options, &o);
    if (!s.ok()) return s;
    floyd_state_machine_t sm = detail::MachineCallbacks::Struct(machine.get());
    // From here floyd owns it: its finalize deletes it, on success or failure.
    machine.release();
    floyd_t* handle = nullptr;
    char* errmsg = nullptr;
    int rc = floyd_host_open_group_with_state_machine(h_, group_id, o, &sm, &handle, &errmsg);
    floyd_options_free(o);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    return Floyd::Wrap(handle, floyd, log_);
  }

  // Deletes group `group_id`'s data on this host (its log, state and
  // snapshots). IsInvalidArgument() while the group is open here: delete its
  // Floyd first.
  Status DropGroup(uint64_t group_id) {
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    char* errmsg = nullptr;
    int rc = floyd_host_drop_group(h_, group_id, &errmsg);
    return detail::TakeStatus(rc, errmsg);
  }

  // The ids of the groups open on this host, sorted (replaces *ids).
  Status ListGroups(std::vector<uint64_t>* ids) {
    if (ids == nullptr) return Status::InvalidArgument("ids is NULL");
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    uint64_t* p = nullptr;
    size_t count = 0;
    char* errmsg = nullptr;
    int rc = floyd_host_list_groups(h_, &p, &count, &errmsg);
    if (rc != FLOYD_OK) return detail::TakeStatus(rc, errmsg);
    ids->assign(p, p + (p != nullptr ? count : 0));
    floyd_free(p);
    return Status::OK();
  }

  // The metrics of the host and every group on it (floyd_host_get_metrics).
  Status Metrics(std::string* text) {
    if (text == nullptr) return Status::InvalidArgument("text is NULL");
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    char* out = nullptr;
    int rc = floyd_host_get_metrics(h_, &out);
    if (rc != FLOYD_OK) {
      floyd_free(out);
      return Status::FromCode(rc, "floyd_host_get_metrics failed");
    }
    detail::TakeBytes(out, out != nullptr ? std::char_traits<char>::length(out) : 0, text);
    return Status::OK();
  }

  // The host's status as JSON: its address ("host"), threads, open groups
  // and, per group, role, term, leader, commit and applied index.
  Status StatusJson(std::string* json) {
    if (json == nullptr) return Status::InvalidArgument("json is NULL");
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    char* text = nullptr;
    int rc = floyd_host_get_status_json(h_, &text);
    if (rc != FLOYD_OK) {
      floyd_free(text);
      return Status::FromCode(rc, "floyd_host_get_status_json failed");
    }
    detail::TakeBytes(text, text != nullptr ? std::char_traits<char>::length(text) : 0, json);
    return Status::OK();
  }

  // Stops every group still open on the host, then its threads, and closes
  // its stores. The Floyds of its groups then answer floyd_code()
  // FLOYD_STOPPED; delete them as usual (before or after the Host).
  // Idempotent; afterwards every call on the Host answers FLOYD_STOPPED.
  void Close() {
    if (h_ != nullptr) {
      floyd_host_close(h_);
      h_ = nullptr;
    }
    log_.reset();
  }

  // Whether the host is closed (or was moved from, or never opened).
  bool closed() const { return h_ == nullptr; }

 private:
  Host(floyd_host_t* h, std::shared_ptr<detail::LogSink> log) : h_(h), log_(log) {}

  // No copying allowed.
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Everything of `options` but the address and path, set on `o`; *log gets
  // the log callback's sink, if there is one.
  static Status Configure(const HostOptions& options, floyd_host_options_t* o,
                          std::shared_ptr<detail::LogSink>* log) {
    int rc = floyd_host_options_set_workers(o, options.workers);
    if (rc != FLOYD_OK) return Status::FromCode(rc, "setting workers failed");
    if (!options.cluster_id.empty()) {
      rc = floyd_host_options_set_cluster_id(o, options.cluster_id.c_str());
      if (rc != FLOYD_OK) return Status::FromCode(rc, "setting cluster_id failed");
    }
    if (!(options.tls_ca_path.empty() && options.tls_cert_path.empty() && options.tls_key_path.empty())) {
      if (detail::HasNul(options.tls_ca_path) || detail::HasNul(options.tls_cert_path) ||
          detail::HasNul(options.tls_key_path)) {
        return Status::InvalidArgument("TLS paths must not contain NUL bytes");
      }
      rc = floyd_host_options_set_tls(o, options.tls_ca_path.c_str(), options.tls_cert_path.c_str(),
                                      options.tls_key_path.c_str());
      if (rc != FLOYD_OK) {
        return Status::InvalidArgument("TLS needs all three paths: tls_ca_path, tls_cert_path, tls_key_path");
      }
    }
    if (options.log_callback) {
      detail::LogSink* sink = new (std::nothrow) detail::LogSink();
      if (sink == nullptr) return Status::IOError("out of memory allocating the log callback");
      log->reset(sink);
      sink->fn = options.log_callback;
      rc = floyd_host_options_set_log_callback(o, &detail::LogSink::Call, sink);
      if (rc != FLOYD_OK) return Status::FromCode(rc, "setting the log callback failed");
    }
    return Status::OK();
  }

  // The C options of a group; on OK the caller frees *out.
  static Status MakeGroupOptions(const Options& options, floyd_options_t** out) {
    if (!(options.tls_ca_path.empty() && options.tls_cert_path.empty() && options.tls_key_path.empty())) {
      return Status::InvalidArgument("TLS is the host's: set it in HostOptions, not in a group's Options");
    }
    return Floyd::MakeOptions(options, out);
  }

  floyd_host_t* h_;
  // The log callback, shared with the Floyds of the groups.
  std::shared_ptr<detail::LogSink> log_;
};

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_HPP_
