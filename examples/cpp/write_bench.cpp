// write_bench: the counterpart of the original Floyd's classic write benchmark
// (t1): a 5-node cluster in one process, N threads each writing M values of
// S bytes to the leader. Prints writes/s and the p50/p99 latency of one write.
//
//   write_bench [threads=4] [value_size=128] [items=1000]
//
// Every write is fsynced on a majority before it is acknowledged (the original
// synced nothing). Uses only the C++ API of floyd.hpp.
#include "floyd.hpp"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const int kNodes = 5;
typedef std::chrono::steady_clock Clock;

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

// A positive integer argument, or the default when absent.
long Arg(int argc, char** argv, int i, long fallback) {
  if (argc <= i) return fallback;
  char* end = NULL;
  long v = std::strtol(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "usage: write_bench [threads=4] [value_size=128] [items=1000]\n"
                         "bad argument %d: \"%s\" (want a positive integer)\n", i, argv[i]);
    std::exit(2);
  }
  return v;
}

// kNodes free ports: bind 127.0.0.1:0 for every node at once, read them, close.
bool PickPorts(std::vector<int>* ports) {
  std::vector<int> fds;
  bool ok = true;
  for (int i = 0; i < kNodes && ok; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    fds.push_back(fd);
    struct sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ok = bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof a) == 0 &&
         getsockname(fd, reinterpret_cast<struct sockaddr*>(&a), &len) == 0;
    ports->push_back(ntohs(a.sin_port));
  }
  for (size_t i = 0; i < fds.size(); i++) close(fds[i]);
  return ok;
}

double Millis(long long us) { return us / 1000.0; }

}  // namespace

int main(int argc, char** argv) {
  const long threads = Arg(argc, argv, 1, 4);
  const long value_size = Arg(argc, argv, 2, 128);
  const long items = Arg(argc, argv, 3, 1000);

  char dir[] = "/tmp/floyd_write_bench.XXXXXX";
  if (mkdtemp(dir) == NULL) {
    std::perror("mkdtemp");
    return 1;
  }
  std::vector<int> ports;
  if (!PickPorts(&ports)) {
    std::fprintf(stderr, "cannot find %d free ports on 127.0.0.1\n", kNodes);
    return 1;
  }
  std::string members;
  for (int i = 0; i < kNodes; i++) {
    std::ostringstream m;
    m << (i ? "," : "") << "127.0.0.1:" << ports[i];
    members += m.str();
  }

  std::vector<floyd::Floyd*> nodes(kNodes, static_cast<floyd::Floyd*>(NULL));
  int rc = 0;
  for (int i = 0; i < kNodes && rc == 0; i++) {
    std::ostringstream path;
    path << dir << "/node" << i;
    floyd::Options opts(members, "127.0.0.1", ports[i], path.str());
    floyd::Status s = floyd::Floyd::Open(opts, &nodes[i]);
    if (!s.ok()) {
      std::fprintf(stderr, "open node %d: %s\n", i, s.ToString().c_str());
      rc = 1;
    }
  }

  // Wait (with a deadline) until one node leads.
  int leader = -1;
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  while (rc == 0 && leader < 0) {
    for (int i = 0; i < kNodes; i++) {
      if (nodes[i]->IsLeader()) leader = i;
    }
    if (leader >= 0) break;
    if (Clock::now() >= deadline) {
      std::fprintf(stderr, "no leader elected in 30 s\n");
      rc = 1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  if (rc == 0) {
    std::string leader_addr;
    nodes[leader]->GetLeader(&leader_addr);
    std::printf("write_bench: %d nodes in one process, %ld threads x %ld writes of %ld-byte values to the leader %s\n",
                kNodes, threads, items, value_size, leader_addr.c_str());

    std::vector<std::vector<long long> > latencies(threads);
    std::vector<long> errors(threads, 0);
    std::mutex first_error_mu;
    std::string first_error;
    floyd::Floyd* target = nodes[leader];
    Clock::time_point start = Clock::now();
    std::vector<std::thread> workers;
    for (long t = 0; t < threads; t++) {
      workers.push_back(std::thread([&, t]() {
        std::string value(static_cast<size_t>(value_size), static_cast<char>('a' + t % 26));
        latencies[t].reserve(items);
        for (long i = 0; i < items; i++) {
          std::ostringstream key;
          key << "key_" << t << "_" << i;
          Clock::time_point before = Clock::now();
          floyd::Status s = target->Write(key.str(), value);
          Clock::time_point after = Clock::now();
          if (!s.ok()) {
            errors[t]++;
            std::lock_guard<std::mutex> lock(first_error_mu);
            if (first_error.empty()) first_error = s.ToString();
            continue;
          }
          latencies[t].push_back(std::chrono::duration_cast<std::chrono::microseconds>(after - before).count());
        }
      }));
    }
    for (size_t t = 0; t < workers.size(); t++) workers[t].join();
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();

    std::vector<long long> all;
    long failed = 0;
    for (long t = 0; t < threads; t++) {
      all.insert(all.end(), latencies[t].begin(), latencies[t].end());
      failed += errors[t];
    }
    std::sort(all.begin(), all.end());
    if (!all.empty()) {
      size_t n = all.size();
      std::printf("%zu writes in %.3f s: %.0f writes/s, latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", n,
                  seconds, n / seconds, Millis(all[n / 2]), Millis(all[std::min(n - 1, n * 99 / 100)]),
                  Millis(all[n - 1]));
    }
    if (failed > 0) {
      std::printf("%ld writes failed; first error: %s\n", failed, first_error.c_str());
      rc = 1;
    }
  }

  for (int i = 0; i < kNodes; i++) delete nodes[i];
  nftw(dir, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
