#include "agent/metrics.h"

#include <fmt/format.h>
#include <httplib.h>

#include <charconv>

#include "common/log.h"
#include "common/thread_name.h"

namespace edgeferry::agent {

namespace {

// Label values escape backslash, double quote and newline (exposition format 0.0.4).
std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

class Writer {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void Sample(std::string_view name, double value, std::string_view labels = {}) {
    if (labels.empty())
      out_ += fmt::format("{} {}\n", name, value);
    else
      out_ += fmt::format("{}{{{}}} {}\n", name, labels, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string L(std::string_view k, std::string_view v) {
  return fmt::format("{}=\"{}\"", k, Escape(v));
}
std::string L2(std::string_view k1, std::string_view v1, std::string_view k2, std::string_view v2) {
  return L(k1, v1) + "," + L(k2, v2);
}

double D(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::string RenderMetrics(const Snapshot& s, int64_t now_ms) {
  Writer w;
  w.Family("edgeferry_build_info", "gauge", "Version of the agent and of librdkafka.");
  w.Sample("edgeferry_build_info", 1,
           L2("version", s.version, "librdkafka", forwarder::LibrdkafkaVersion()) + "," +
               L("device", s.device_id));
  w.Family("edgeferry_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.Sample("edgeferry_uptime_seconds", static_cast<double>(now_ms - s.started_unix_ms) / 1000.0);

  // Inputs.
  w.Family("edgeferry_input_readings_received_total", "counter",
           "Readings or messages an input produced or took from its broker.");
  for (const auto& in : s.inputs)
    w.Sample("edgeferry_input_readings_received_total", D(in.stats.received), L("input", in.name));
  w.Family("edgeferry_input_readings_accepted_total", "counter",
           "Readings an input appended to the buffer (durable).");
  for (const auto& in : s.inputs)
    w.Sample("edgeferry_input_readings_accepted_total", D(in.stats.accepted), L("input", in.name));
  w.Family("edgeferry_input_readings_rejected_total", "counter",
           "Readings an input refused, by reason (oversized payload, ...).");
  for (const auto& in : s.inputs) {
    for (const auto& [reason, n] : in.stats.rejected_by_reason) {
      w.Sample("edgeferry_input_readings_rejected_total", D(n),
               L2("input", in.name, "reason", reason));
    }
  }
  w.Family("edgeferry_input_errors_total", "counter",
           "Input errors by reason (read failures, failed appends, connection failures).");
  for (const auto& in : s.inputs) {
    for (const auto& [reason, n] : in.stats.errors_by_reason) {
      w.Sample("edgeferry_input_errors_total", D(n), L2("input", in.name, "reason", reason));
    }
  }
  w.Family("edgeferry_input_up", "gauge", "1 if the input is running (MQTT: connected), else 0.");
  for (const auto& in : s.inputs) {
    bool up = in.error.empty() && (in.stats.state == "running" || in.stats.state == "connected");
    w.Sample("edgeferry_input_up", up ? 1 : 0, L2("input", in.name, "type", in.type));
  }
  w.Family("edgeferry_mqtt_connected", "gauge", "MQTT inputs: 1 while connected to the broker.");
  w.Family("edgeferry_mqtt_reconnects_total", "counter",
           "MQTT inputs: successful reconnects after the first connect.");
  for (const auto& in : s.inputs) {
    if (in.type != "mqtt") continue;
    w.Sample("edgeferry_mqtt_connected", in.stats.state == "connected" ? 1 : 0,
             L("input", in.name));
    w.Sample("edgeferry_mqtt_reconnects_total", D(in.stats.reconnects), L("input", in.name));
  }

  // Buffer.
  const auto& b = s.buffer;
  w.Family("edgeferry_buffer_records", "gauge",
           "Records held in the buffer (not yet delivered and trimmed).");
  w.Sample("edgeferry_buffer_records", D(b.records));
  w.Family("edgeferry_buffer_bytes", "gauge", "Logical bytes of the records held.");
  w.Sample("edgeferry_buffer_bytes", D(b.bytes));
  w.Family("edgeferry_buffer_file_bytes", "gauge", "Database plus WAL on disk.");
  w.Sample("edgeferry_buffer_file_bytes", D(b.file_bytes));
  w.Family("edgeferry_buffer_max_bytes", "gauge", "Configured bound for the buffer's files.");
  w.Sample("edgeferry_buffer_max_bytes", D(b.max_bytes));
  w.Family("edgeferry_buffer_oldest_undelivered_age_seconds", "gauge",
           "Age of the oldest record not yet delivered to Kafka; 0 when all are delivered.");
  w.Sample("edgeferry_buffer_oldest_undelivered_age_seconds",
           static_cast<double>(b.oldest_undelivered_age_ms) / 1000.0);
  w.Family("edgeferry_buffer_appended_records_total", "counter",
           "Records the buffer ever accepted.");
  w.Sample("edgeferry_buffer_appended_records_total", D(b.appended_total));
  w.Family("edgeferry_buffer_dropped_records_total", "counter",
           "Records dropped by the buffer, by reason.");
  for (const auto& [reason, n] : b.drops)
    w.Sample("edgeferry_buffer_dropped_records_total", D(n), L("reason", reason));
  w.Family("edgeferry_buffer_dead_letters", "gauge",
           "Records in the dead-letter table, by reason.");
  for (const auto& [reason, n] : b.dead_letters)
    w.Sample("edgeferry_buffer_dead_letters", D(n), L("reason", reason));
  w.Family("edgeferry_buffer_cursor_lag_records", "gauge", "Records held after each cursor.");
  for (const auto& [name, c] : b.cursors)
    w.Sample("edgeferry_buffer_cursor_lag_records", D(c.lag_records), L("cursor", name));

  // Kafka.
  const auto& k = s.kafka;
  w.Family("edgeferry_kafka_delivered_records_total", "counter",
           "Records with a successful delivery report.");
  w.Sample("edgeferry_kafka_delivered_records_total", D(k.delivered_records));
  w.Family("edgeferry_kafka_delivered_bytes_total", "counter", "Bytes of the records delivered.");
  w.Sample("edgeferry_kafka_delivered_bytes_total", D(k.delivered_bytes));
  w.Family("edgeferry_kafka_inflight_records", "gauge",
           "Records handed to librdkafka without a delivery report yet.");
  w.Sample("edgeferry_kafka_inflight_records", D(k.inflight_records));
  w.Family("edgeferry_kafka_resent_records_total", "counter",
           "Records produced again after a failed delivery.");
  w.Sample("edgeferry_kafka_resent_records_total", D(k.resent_records));
  w.Family("edgeferry_kafka_delivery_failures_total", "counter",
           "Failed delivery reports of any kind (records the forwarder purged itself excluded).");
  w.Sample("edgeferry_kafka_delivery_failures_total", D(k.delivery_failures));
  w.Family("edgeferry_kafka_purged_records_total", "counter",
           "Records the forwarder took back from librdkafka's queue after a failure, to resend "
           "them in order (part of resent_records; not failures).");
  w.Sample("edgeferry_kafka_purged_records_total", D(k.purged_records));
  w.Family("edgeferry_kafka_errors_total", "counter",
           "Failed deliveries and produce refusals by librdkafka error name.");
  for (const auto& [kind, n] : k.errors_by_kind)
    w.Sample("edgeferry_kafka_errors_total", D(n), L("kind", kind));
  w.Family("edgeferry_kafka_producer_restarts_total", "counter",
           "Producers recreated after a fatal error.");
  w.Sample("edgeferry_kafka_producer_restarts_total", D(k.producer_restarts));
  w.Family("edgeferry_kafka_backing_off", "gauge", "1 while sending is paused after a failure.");
  w.Sample("edgeferry_kafka_backing_off", k.backing_off ? 1 : 0);
  w.Family("edgeferry_kafka_last_delivery_timestamp_seconds", "gauge",
           "Unix time of the last successful delivery report; 0 if none since start.");
  w.Sample("edgeferry_kafka_last_delivery_timestamp_seconds",
           static_cast<double>(k.last_delivery_unix_ms) / 1000.0);
  w.Family("edgeferry_kafka_cursor", "gauge", "Every buffer seq up to this one is delivered.");
  w.Sample("edgeferry_kafka_cursor", D(k.cursor));
  // Histogram (cumulative `le` buckets, +Inf, _sum, _count) from the forwarder's fixed buckets.
  w.Family("edgeferry_delivery_latency_seconds", "histogram",
           "Time from a record's acceptance by the buffer to its successful delivery report.");
  const auto& h = k.delivery_latency;
  for (size_t i = 0; i < forwarder::LatencyHistogram::kBoundsMs.size(); ++i) {
    w.Sample(
        "edgeferry_delivery_latency_seconds_bucket", D(h.Cumulative(i)),
        L("le", fmt::format("{}", static_cast<double>(forwarder::LatencyHistogram::kBoundsMs[i]) /
                                      1000.0)));
  }
  w.Sample("edgeferry_delivery_latency_seconds_bucket", D(h.count), L("le", "+Inf"));
  w.Sample("edgeferry_delivery_latency_seconds_sum", static_cast<double>(h.sum_ms) / 1000.0);
  w.Sample("edgeferry_delivery_latency_seconds_count", D(h.count));

  w.Family("edgeferry_watchdog_healthy", "gauge",
           "1 while every main loop makes progress (the systemd watchdog is petted).");
  w.Sample("edgeferry_watchdog_healthy", s.stalled_loops.empty() ? 1 : 0);
  w.Family("edgeferry_heartbeats_total", "counter", "Heartbeat records appended to the buffer.");
  w.Sample("edgeferry_heartbeats_total", D(s.heartbeats));
  return w.Take();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Status::InvalidArgument(
        fmt::format("metrics.listen \"{}\": expected host:port", listen));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = -1;
  std::string_view ps(listen.data() + colon + 1, listen.size() - colon - 1);
  auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || ptr != ps.data() + ps.size() || port < 0 || port > 65535) {
    return Status::InvalidArgument(fmt::format("metrics.listen \"{}\": bad port", listen));
  }

  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->server_ = std::make_unique<httplib::Server>();
  // httplib's default pool is max(8, cores - 1) threads, each idle for the agent's lifetime. A
  // scraper or two per interval is the whole load: two workers answer them.
  m->server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default also sets SO_REUSEPORT, which would let a second agent bind the same port
  // and steal half the scrapes. SO_REUSEADDR alone keeps restarts quick and clashes loud.
  m->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  MetricsServer* self = m.get();
  m->server_->Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    std::string text;
    {
      std::lock_guard lock(self->mu_);
      text = self->text_;
    }
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  m->server_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("edgeferry: metrics at /metrics\n", "text/plain");
  });
  int bound = port == 0 ? m->server_->bind_to_any_port(host)
                        : (m->server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return Status::IOError(fmt::format(
        "metrics.listen \"{}\": cannot listen there (address in use or not local?)", listen));
  }
  m->port_ = bound;
  m->listen_ = listen;
  m->thread_ = std::thread([self] {
    SetThreadName("ef-metrics");  // its HTTP workers start from here and inherit the name
    self->server_->listen_after_bind();
  });
  // httplib's stop() is a no-op until the accept loop runs, so the destructor could otherwise
  // join a thread that never ends. The loop starts within microseconds of the thread.
  while (!m->server_->is_running()) std::this_thread::yield();
  return m;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void MetricsServer::Publish(std::string text) {
  std::lock_guard lock(mu_);
  text_ = std::move(text);
}

}  // namespace edgeferry::agent
