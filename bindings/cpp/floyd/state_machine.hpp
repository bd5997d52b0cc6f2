// floyd/state_machine.hpp -- part of floyd.hpp, the C++ API of floyd (include that).
//
// floyd::StateMachine: a state machine of your own, replicated by floyd,
// and the C callbacks that call it.

#ifndef FLOYD_BINDINGS_CPP_FLOYD_STATE_MACHINE_HPP_
#define FLOYD_BINDINGS_CPP_FLOYD_STATE_MACHINE_HPP_

#include "status.hpp"

namespace floyd {

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

}  // namespace floyd

#endif  // FLOYD_BINDINGS_CPP_FLOYD_STATE_MACHINE_HPP_
