// A TCP proxy on 127.0.0.1 between a client and a broker that a test can cut: Close() resets
// every connection and refuses new ones; Blackhole() keeps connections open but forwards nothing
// (a silent network partition, found only by keepalive); Restore() forwards again.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace edgeferry::sensors::testing {

class CutProxy {
 public:
  enum class Mode { kForward, kClosed, kBlackhole };

  explicit CutProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback(0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("CutProxy: bind/listen failed");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~CutProxy() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
    for (auto& p : pairs_) CloseAll(p);
  }
  int port() const { return port_; }
  void Close() { mode_ = Mode::kClosed; }
  void Blackhole() { mode_ = Mode::kBlackhole; }
  void Restore() { mode_ = Mode::kForward; }

 private:
  struct Pair {
    int client = -1, broker = -1;
  };
  static sockaddr_in Loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  static void CloseAll(Pair& p) {
    if (p.client >= 0) ::close(p.client);
    if (p.broker >= 0) ::close(p.broker);
    p.client = p.broker = -1;
  }
  // One thread: accepts, and copies bytes both ways for every pair, as the mode says.
  void Loop() {
    char buf[65536];
    while (!stop_) {
      Mode mode = mode_.load();
      if (mode == Mode::kClosed) {
        for (auto& p : pairs_) CloseAll(p);
        pairs_.clear();
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      if (mode == Mode::kForward) {
        for (auto& p : pairs_) {
          fds.push_back({p.client, POLLIN, 0});
          fds.push_back({p.broker, POLLIN, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          if (mode == Mode::kClosed) {
            ::close(c);
          } else {
            int b = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a = Loopback(target_port_);
            if (::connect(b, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
              ::close(b);
              ::close(c);
            } else {
              pairs_.push_back({c, b});
            }
          }
        }
      }
      if (mode != Mode::kForward) continue;
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Pair& p = pairs_[(i - 1) / 2];
        int from = fds[i].fd;
        int to = from == p.client ? p.broker : p.client;
        if (from < 0 || to < 0) continue;
        ssize_t n = ::read(from, buf, sizeof buf);
        bool ok = n > 0;
        for (ssize_t off = 0; ok && off < n;) {
          ssize_t w = ::write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) ok = false;
          off += w > 0 ? w : 0;
        }
        if (!ok) CloseAll(p);
      }
      std::erase_if(pairs_, [](const Pair& p) { return p.client < 0; });
    }
  }

  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<Mode> mode_{Mode::kForward};
  std::vector<Pair> pairs_;  // proxy thread only
  std::thread thread_;
};

}  // namespace edgeferry::sensors::testing
