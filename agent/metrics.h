// Prometheus text exposition (format 0.0.4) of a Snapshot, served on GET /metrics by a small
// cpp-httplib listener meant for loopback (metrics.listen, default 127.0.0.1:9464). Series are
// documented in agent/README.md.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/status.h"
#include "common/status.h"

namespace httplib {
class Server;
}

namespace edgeferry::agent {

std::string RenderMetrics(const Snapshot& s, int64_t now_unix_ms);

// Owns one listener thread (started by Start, stopped and joined by the destructor). Serves the
// text last given to Publish(), so a scrape never touches the pipeline's components.
class MetricsServer {
 public:
  // `listen` is "host:port" (port 0 picks a free one). Errors: InvalidArgument for a malformed
  // address, IOError when the address cannot be bound.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Thread-safe.
  void Publish(std::string text);
  int port() const { return port_; }
  const std::string& listen() const { return listen_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string listen_;
  int port_ = 0;
  std::mutex mu_;
  std::string text_;
};

}  // namespace edgeferry::agent
