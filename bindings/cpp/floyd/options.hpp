// floyd/options.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// floyd::Options (how to open a node or a group) and the log callback.

#ifndef FLOYD_BINDINGS_CPP_FLOYD_OPTIONS_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_OPTIONS_HPP_

#include "status.hpp"

namespace floyd {

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
      : Options() {
    // (The defaults are the other constructor's: written once.)
    local_ip = _local_ip;
    local_port = _local_port;
    path = _path;
    SetMembers(cluster_string);
    if (members.size() == 1) single_mode = true;
  }
};

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_OPTIONS_HPP_
