// floyd/host.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// floyd::Host and floyd::HostOptions: many Raft groups on one address,
// directory and set of threads.

#ifndef FLOYD_BINDINGS_CPP_FLOYD_HOST_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_HOST_HPP_

#include "node.hpp"
#include "options.hpp"
#include "status.hpp"

namespace floyd {

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
    return detail::TakeTextResult(rc, out, "floyd_host_get_metrics failed", text);
  }

  // The host's status as JSON: its address ("host"), threads, open groups
  // and, per group, role, term, leader, commit and applied index.
  Status StatusJson(std::string* json) {
    if (json == nullptr) return Status::InvalidArgument("json is NULL");
    if (h_ == nullptr) return Status::FromCode(FLOYD_STOPPED, "the host is closed");
    char* text = nullptr;
    int rc = floyd_host_get_status_json(h_, &text);
    return detail::TakeTextResult(rc, text, "floyd_host_get_status_json failed", json);
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

#endif  // FLOYD_BINDINGS_CPP_FLOYD_HOST_HPP_
