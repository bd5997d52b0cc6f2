// Proves floyd.hpp is self-contained: it is the only include, and it is
// included twice in this translation unit (the include guard).
#include "floyd.hpp"
#include "floyd.hpp"

int main() {
  floyd::Options opts("127.0.0.1:8901", "127.0.0.1", 8901, "/tmp/unused");
  floyd::Floyd* f = NULL;
  floyd::Status s = floyd::Floyd::Open(opts, NULL);  // no node is opened
  (void)f;
  bool good = s.IsInvalidArgument() && opts.single_mode && opts.members.size() == 1 &&
              floyd::Status::FromCode(FLOYD_STOPPED, "stopped: closed").IsIOError();
  return good ? 0 : 1;
}
