// Helper for crash_test.cc: appends forever from several threads and reports every durable
// acknowledgment on stdout ("<thread> <first> <last>\n" = records first..last of that thread),
// until the parent kills it with SIGKILL.
//
//   buffer_crash_child <db path> <full|normal> <run id>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "buffer/buffer.h"

int main(int argc, char** argv) {
  using namespace edgeferry;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s DB full|normal RUN\n", argv[0]);
    return 2;
  }
  config::BufferConfig cfg;
  cfg.path = argv[1];
  cfg.sync = std::string(argv[2]) == "full" ? config::SyncMode::kFull : config::SyncMode::kNormal;
  cfg.max_bytes = 64ull << 20;
  std::string run = argv[3];
  auto b = buffer::Buffer::Open(cfg);
  if (!b.ok()) {
    std::fprintf(stderr, "open: %s\n", b.status().ToString().c_str());
    return 1;
  }
  std::mutex out_mu;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (long n = 0;;) {
        std::vector<Record> recs;
        long first = n;
        for (int j = 0; j < 1 + (n % 3); ++j, ++n) {
          Record r;
          r.source = "crash";
          r.payload = run + "/" + std::to_string(t) + "/" + std::to_string(n);
          recs.push_back(std::move(r));
        }
        Status st = (*b)->Append(std::move(recs));
        if (!st.ok()) {
          std::fprintf(stderr, "append: %s\n", st.ToString().c_str());
          std::_Exit(1);
        }
        // One write(2) per line: lines of a pipe write <= PIPE_BUF never interleave.
        std::string line =
            std::to_string(t) + " " + std::to_string(first) + " " + std::to_string(n - 1) + "\n";
        std::lock_guard lk(out_mu);
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
          std::_Exit(1);
      }
    });
  }
  for (auto& t : ts) t.join();
}
