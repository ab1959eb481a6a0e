// A RecordSink for tests: keeps what was appended; can be told to fail or to block until released
// (to test back-pressure).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/seams.h"

namespace edgeferry::sensors::testing {

class FakeSink final : public RecordSink {
 public:
  Status Append(std::vector<Record> records) override {
    std::unique_lock lock(mu_);
    ++calls_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !blocked_; });
    if (!fail_.ok()) return fail_;
    for (auto& r : records) records_.push_back(std::move(r));
    cv_.notify_all();
    return Status::Ok();
  }

  void Block() {
    std::lock_guard lock(mu_);
    blocked_ = true;
  }
  void Unblock() {
    std::lock_guard lock(mu_);
    blocked_ = false;
    cv_.notify_all();
  }
  void FailWith(Status s) {
    std::lock_guard lock(mu_);
    fail_ = std::move(s);
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return records_.size();
  }
  size_t calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<Record> records() const {
    std::lock_guard lock(mu_);
    return records_;
  }
  // Waits until pred() (called under the lock with the records) holds or `timeout` passes.
  bool WaitUntil(const std::function<bool(const std::vector<Record>&)>& pred,
                 std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(records_); });
  }
  bool WaitForCount(size_t n, std::chrono::milliseconds timeout) {
    return WaitUntil([n](const std::vector<Record>& r) { return r.size() >= n; }, timeout);
  }
  bool WaitForCalls(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return calls_ >= n; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Record> records_;
  size_t calls_ = 0;
  bool blocked_ = false;
  Status fail_;
};

// Polls `cond` until it holds or `timeout` passes (for state without a condition variable).
template <typename F>
bool Eventually(F cond, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

}  // namespace edgeferry::sensors::testing
