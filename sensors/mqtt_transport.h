// The byte stream under one MQTT connection: TCP, or TLS over TCP with OpenSSL (internal to
// sensors/). Non-blocking socket, every wait bounded (poll with a timeout), so the connection
// thread can notice Stop between waits; Interrupt() from another thread wakes a wait at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "config/config.h"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace edgeferry::sensors::mqtt {

// A broker address from a URI: tcp://, mqtt:// (plain) or ssl://, mqtts:// (TLS); host may be
// a name, an IPv4 address or a bracketed IPv6 address; port defaults to 1883 / 8883.
struct BrokerAddress {
  std::string host;
  int port = 0;
  bool tls = false;
};
// Errors: InvalidArgument naming the URI (ws:// and wss:// are not supported).
Result<BrokerAddress> ParseBrokerUri(const std::string& uri);

// An OpenSSL client context built from TlsConfig: TLS 1.2 or later, the server certificate always
// verified (against ca_file, a file or a directory, or the system store when empty), an optional
// client certificate and key (with key password). Thread-safe after construction (SSL_CTX is).
class TlsContext {
 public:
  // Errors: InvalidArgument with OpenSSL's reason and the file that failed.
  static Result<std::shared_ptr<TlsContext>> Create(const config::TlsConfig& cfg);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const { return ctx_; }
  bool verify_hostname() const { return verify_hostname_; }

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool verify_hostname_ = true;
  std::string key_password_;  // read by OpenSSL's password callback while loading the key
};

// One connection. Not thread-safe, except Interrupt(), which any thread may call.
class Transport {
 public:
  using Deadline = std::chrono::steady_clock::time_point;
  Transport() = default;
  ~Transport();  // Close()
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Resolves, connects (each resolved address in turn) and, for TLS, handshakes with SNI and
  // hostname (or IP) verification. `tls` null for plain TCP. Errors: Unavailable with the
  // reason (refused, timeout, "certificate verify failed: hostname mismatch", ...).
  Status Connect(const BrokerAddress& addr, const TlsContext* tls, Deadline deadline);
  // Appends what can be read without blocking, up to `max` bytes, to *buf. Returns the number
  // read (0: nothing available now). Errors: Unavailable on EOF ("connection closed by the
  // broker") or a socket / TLS error.
  Result<size_t> ReadAvailable(std::string* buf, size_t max);
  // Writes all of `data`, waiting for the socket as needed, until `deadline`. Errors:
  // Unavailable (closed, error, timeout, interrupted).
  Status WriteAll(std::string_view data, Deadline deadline);
  // Waits until there is something to read (or TLS bytes already decrypted), an error, an
  // interrupt, or `timeout` passed. Returns true if a read should be attempted.
  bool WaitReadable(std::chrono::milliseconds timeout);
  // Shuts the socket down for reading so that a wait or read returns at once. Thread-safe.
  void Interrupt();
  // Forgets an earlier Interrupt() (a stopped input that is started again).
  void ClearInterrupt();
  void Close();
  bool open() const { return fd_ >= 0; }

 private:
  bool WaitFor(short events, Deadline deadline);
  std::mutex fd_mu_;  // guards fd_ against Interrupt() racing Close()
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool interrupted_ = false;  // GUARDED_BY(fd_mu_); sticky until ClearInterrupt()
};

}  // namespace edgeferry::sensors::mqtt
