// floyd/status.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// Status, the log levels, and the helpers every other part uses to take
// what the C API hands back (codes, messages, buffers).

#ifndef FLOYD_BINDINGS_CPP_FLOYD_STATUS_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_STATUS_HPP_

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

// A NUL-terminated text from the library, taken like TakeBytes.
inline void TakeText(char* p, std::string* out) { TakeBytes(p, p != nullptr ? std::strlen(p) : 0, out); }

// The text a call that reports no message gave (`failed` names the call when
// it failed): into *out, and the library's copy freed either way.
inline Status TakeTextResult(int rc, char* p, const char* failed, std::string* out) {
  if (rc != FLOYD_OK) {
    floyd_free(p);
    return Status::FromCode(rc, failed);
  }
  TakeText(p, out);
  return Status::OK();
}

inline bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

}  // namespace detail

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_STATUS_HPP_
