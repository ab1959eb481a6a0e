#include "sensors/mqtt_transport.h"

#include <openssl/crypto.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace edgeferry::sensors::mqtt {
namespace {

using SteadyClock = std::chrono::steady_clock;

// The last OpenSSL error of this thread as text (and clears the queue), or `fallback`.
std::string OpenSslError(const std::string& fallback) {
  unsigned long e = ERR_get_error();
  std::string out;
  while (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
    e = ERR_get_error();
  }
  return out.empty() ? fallback : out;
}

int PasswordCallback(char* buf, int size, int /*rwflag*/, void* userdata) {
  const auto* pw = static_cast<const std::string*>(userdata);
  if (pw == nullptr || size <= 0) return 0;
  size_t n = std::min(pw->size(), static_cast<size_t>(size));
  std::memcpy(buf, pw->data(), n);
  return static_cast<int>(n);
}

bool IsIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

int RemainingMs(Transport::Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left.count(), 100)));
}

}  // namespace

Result<BrokerAddress> ParseBrokerUri(const std::string& uri) {
  BrokerAddress a;
  std::string rest;
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(fmt::format("broker URI \"{}\": {}", uri, why));
  };
  if (uri.starts_with("tcp://") || uri.starts_with("mqtt://")) {
    rest = uri.substr(uri.find("://") + 3);
  } else if (uri.starts_with("ssl://") || uri.starts_with("mqtts://")) {
    rest = uri.substr(uri.find("://") + 3);
    a.tls = true;
  } else if (uri.starts_with("ws://") || uri.starts_with("wss://")) {
    return bad("MQTT over WebSockets is not supported; use tcp:// or ssl://");
  } else {
    return bad("scheme must be tcp://, mqtt://, ssl:// or mqtts://");
  }
  rest = rest.substr(0, rest.find('/'));
  std::string port;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return bad("unterminated [IPv6 address]");
    a.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return bad("expected :port after ]");
      port = rest.substr(close + 2);
    }
  } else {
    size_t colon = rest.rfind(':');
    a.host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
  }
  if (a.host.empty()) return bad("no host");
  if (port.empty()) {
    a.port = a.tls ? 8883 : 1883;
  } else {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
      return bad("port is not a number");
    }
    a.port = std::stoi(port);
    if (a.port < 1 || a.port > 65535) return bad("port out of range");
  }
  return a;
}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const config::TlsConfig& cfg) {
  std::shared_ptr<TlsContext> t(new TlsContext());
  t->verify_hostname_ = cfg.verify_hostname;
  t->key_password_ = cfg.key_password;
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  auto fail = [&](const std::string& what) {
    return Status::InvalidArgument(fmt::format("tls: {}: {}", what, OpenSslError("failed")));
  };
  if (t->ctx_ == nullptr) return fail("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(t->ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(t->ctx_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (cfg.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(t->ctx_) != 1) return fail("system CA store");
  } else {
    std::error_code ec;
    bool dir = std::filesystem::is_directory(cfg.ca_file, ec);
    if (SSL_CTX_load_verify_locations(t->ctx_, dir ? nullptr : cfg.ca_file.c_str(),
                                      dir ? cfg.ca_file.c_str() : nullptr) != 1) {
      return fail("ca_file " + cfg.ca_file);
    }
  }
  if (!cfg.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(t->ctx_, cfg.cert_file.c_str()) != 1) {
      return fail("cert_file " + cfg.cert_file);
    }
  }
  if (!cfg.key_file.empty()) {
    SSL_CTX_set_default_passwd_cb(t->ctx_, PasswordCallback);
    SSL_CTX_set_default_passwd_cb_userdata(t->ctx_, &t->key_password_);
    if (SSL_CTX_use_PrivateKey_file(t->ctx_, cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail("key_file " + cfg.key_file + " (wrong key_password?)");
    }
    if (SSL_CTX_check_private_key(t->ctx_) != 1) {
      return fail("key_file " + cfg.key_file + " does not match cert_file");
    }
  }
  return t;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

Transport::~Transport() { Close(); }

void Transport::Close() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  std::lock_guard lock(fd_mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Transport::ClearInterrupt() {
  std::lock_guard lock(fd_mu_);
  interrupted_ = false;
}

void Transport::Interrupt() {
  std::lock_guard lock(fd_mu_);
  interrupted_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RD);
}

bool Transport::WaitFor(short events, Deadline deadline) {
  while (true) {
    {
      std::lock_guard lock(fd_mu_);
      if (interrupted_) return false;
    }
    pollfd p{fd_, events, 0};
    int ms = RemainingMs(deadline);
    int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
    if (SteadyClock::now() >= deadline) return false;
  }
}

Status Transport::Connect(const BrokerAddress& addr, const TlsContext* tls, Deadline deadline) {
  Close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int gai = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    return Status::Unavailable(fmt::format("cannot resolve {}: {}", addr.host, gai_strerror(gai)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    {
      std::lock_guard lock(fd_mu_);
      fd_ = fd;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      if (!WaitFor(POLLOUT, deadline)) {
        last = "connect timed out";
        Close();
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r != 0) {
      last = std::strerror(errno);
      Close();
      continue;
    }
    break;
  }
  if (fd_ < 0) {
    return Status::Unavailable(fmt::format("connect to {}:{}: {}", addr.host, addr.port, last));
  }
  if (tls == nullptr) return Status::Ok();

  ssl_ = SSL_new(tls->get());
  if (ssl_ == nullptr) return Status::Unavailable("tls: " + OpenSslError("SSL_new failed"));
  SSL_set_fd(ssl_, fd_);
  const bool ip = IsIpLiteral(addr.host);
  if (!ip) SSL_set_tlsext_host_name(ssl_, addr.host.c_str());  // SNI takes names only
  if (tls->verify_hostname()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, addr.host.c_str())
                : SSL_set1_host(ssl_, addr.host.c_str());
    if (ok != 1) return Status::Unavailable("tls: cannot set the expected host " + addr.host);
  }
  while (true) {
    ERR_clear_error();
    int r = SSL_connect(ssl_);
    if (r == 1) return Status::Ok();
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!WaitFor(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
        return Status::Unavailable(
            fmt::format("TLS handshake with {}:{} timed out", addr.host, addr.port));
      }
      continue;
    }
    long vr = SSL_get_verify_result(ssl_);
    std::string why =
        vr != X509_V_OK
            ? fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(vr))
            : OpenSslError(e == SSL_ERROR_SYSCALL ? "connection closed" : "failed");
    return Status::Unavailable(
        fmt::format("TLS handshake with {}:{}: {}", addr.host, addr.port, why));
  }
}

Result<size_t> Transport::ReadAvailable(std::string* buf, size_t max) {
  size_t total = 0;
  char tmp[64 * 1024];
  while (total < max) {
    size_t want = std::min(sizeof tmp, max - total);
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r = SSL_read(ssl_, tmp, static_cast<int>(want));
      if (r <= 0) {
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN)
          return Status::Unavailable("connection closed by the broker");
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
          return Status::Unavailable(errno == 0 ? std::string("connection closed by the broker")
                                                : std::string("read: ") + std::strerror(errno));
        }
        return Status::Unavailable("TLS read: " + OpenSslError("failed"));
      }
      n = r;
    } else {
      n = ::recv(fd_, tmp, want, 0);
      if (n == 0) return Status::Unavailable("connection closed by the broker");
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return Status::Unavailable(std::string("read: ") + std::strerror(errno));
      }
    }
    buf->append(tmp, static_cast<size_t>(n));
    total += static_cast<size_t>(n);
  }
  return total;
}

Status Transport::WriteAll(std::string_view data, Deadline deadline) {
  size_t off = 0;
  while (off < data.size()) {
    short wait_events = POLLOUT;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
      if (r > 0) {
        off += static_cast<size_t>(r);
        continue;
      }
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ) {
        wait_events = POLLIN;
      } else if (e != SSL_ERROR_WANT_WRITE) {
        return Status::Unavailable("TLS write: " + OpenSslError("connection closed"));
      }
    } else {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        return Status::Unavailable(std::string("write: ") + std::strerror(errno));
      }
    }
    // Writes are not interrupted by Interrupt() (acks after a durable append should still go
    // out at Stop); only the deadline bounds them.
    pollfd p{fd_, wait_events, 0};
    int ms = RemainingMs(deadline);
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) {
      return Status::Unavailable(std::string("poll: ") + std::strerror(errno));
    }
    if (SteadyClock::now() >= deadline) return Status::Unavailable("write timed out");
  }
  return Status::Ok();
}

bool Transport::WaitReadable(std::chrono::milliseconds timeout) {
  if (ssl_ != nullptr && SSL_pending(ssl_) > 0) return true;
  {
    std::lock_guard lock(fd_mu_);
    if (interrupted_) return true;  // the read sees the shut-down socket
  }
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  return r > 0;
}

}  // namespace edgeferry::sensors::mqtt

namespace edgeferry::sensors {

std::string MqttClientVersion() {
  return std::string("built-in MQTT 3.1.1/5 client, ") + OpenSSL_version(OPENSSL_VERSION);
}

}  // namespace edgeferry::sensors
