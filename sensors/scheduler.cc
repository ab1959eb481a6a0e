#include "sensors/scheduler.h"

#include "common/log.h"
#include "common/thread_name.h"

namespace edgeferry::sensors {

struct SensorScheduler::Core {
  std::mutex mu;
  std::condition_variable timer_cv;  // timer thread: due times changed, stop
  std::condition_variable work_cv;   // workers: queue has work, stop
  std::condition_variable done_cv;   // Remove(): a read finished
  bool stopping = false;
  bool started = false;
  uint64_t next_task = 1;
  uint64_t next_worker = 1;
  std::map<uint64_t, std::shared_ptr<Task>> tasks;
  std::deque<std::shared_ptr<Task>> queue;
  // Workers by id; an abandoned worker is moved out of `workers` and detached.
  std::map<uint64_t, std::thread> workers;
  std::map<uint64_t, bool> abandoned;
  std::mt19937_64 rng{std::random_device{}()};
};

std::shared_ptr<SensorScheduler> NewSensorScheduler(Clock* clock, int workers) {
  return std::make_shared<SensorScheduler>(clock, workers);
}

SensorScheduler::SensorScheduler(Clock* clock, int workers)
    : clock_(clock), pool_size_(workers < 1 ? 1 : workers), core_(std::make_shared<Core>()) {}

SensorScheduler::~SensorScheduler() {
  std::map<uint64_t, std::thread> workers;
  {
    std::lock_guard lock(core_->mu);
    core_->stopping = true;
    workers.swap(core_->workers);
  }
  core_->timer_cv.notify_all();
  core_->work_cv.notify_all();
  if (timer_.joinable()) timer_.join();
  for (auto& [id, t] : workers) {
    bool abandoned;
    {
      std::lock_guard lock(core_->mu);
      abandoned = core_->abandoned[id];
    }
    // A worker stuck in a kernel read cannot be joined; it holds `core` and exits on return.
    if (abandoned) {
      t.detach();
    } else {
      t.join();
    }
  }
}

int SensorScheduler::live_workers() const {
  std::lock_guard lock(core_->mu);
  return static_cast<int>(core_->workers.size());
}

void SensorScheduler::StartWorkerLocked() {
  uint64_t id = core_->next_worker++;
  std::shared_ptr<Core> core = core_;
  std::atomic<uint64_t>* reads = &reads_started_;
  // The worker only touches `core` (shared) and, while not abandoned, reads_started_; an
  // abandoned worker stops touching the scheduler object before it returns to the loop.
  core->workers.emplace(id, std::thread([core, id, reads] {
                          SetThreadName("ef-sensor");
                          std::unique_lock lock(core->mu);
                          while (true) {
                            core->work_cv.wait(
                                lock, [&] { return core->stopping || !core->queue.empty(); });
                            if (core->stopping) return;
                            std::shared_ptr<Task> task = core->queue.front();
                            core->queue.pop_front();
                            task->queued = false;
                            if (task->removed) continue;
                            task->running = true;
                            task->timed_out = false;
                            task->worker = id;
                            // started was set by the timer when it queued the task: the timeout
                            // covers queueing too, so a saturated pool shows up as timeouts instead
                            // of silent lateness.
                            auto deadline = task->started + task->spec.timeout;
                            reads->fetch_add(1, std::memory_order_relaxed);
                            lock.unlock();
                            try {
                              task->spec.run(deadline);
                            } catch (const std::exception& e) {
                              EF_LOG(kError, "sensors", "sensor read threw: {}", e.what());
                            }
                            lock.lock();
                            if (!task->timed_out && !task->removed && task->spec.commit) {
                              task->committing = true;
                              lock.unlock();
                              try {
                                task->spec.commit();
                              } catch (const std::exception& e) {
                                EF_LOG(kError, "sensors", "sensor commit threw: {}", e.what());
                              }
                              lock.lock();
                              task->committing = false;
                            }
                            task->running = false;
                            core->done_cv.notify_all();
                            core->timer_cv.notify_all();
                            if (core->abandoned[id]) {
                              // A replacement took our place; leave the pool.
                              core->abandoned.erase(id);
                              auto it = core->workers.find(id);
                              if (it != core->workers.end()) {
                                it->second.detach();
                                core->workers.erase(it);
                              }
                              return;
                            }
                          }
                        }));
}

uint64_t SensorScheduler::Add(TaskSpec spec) {
  std::lock_guard lock(core_->mu);
  auto task = std::make_shared<Task>();
  auto now = clock_->Now();
  auto jitter = spec.jitter.count() > 0
                    ? std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(
                          0, spec.jitter.count())(core_->rng))
                    : std::chrono::milliseconds(0);
  task->next_due = now + jitter;
  task->spec = std::move(spec);
  uint64_t id = core_->next_task++;
  core_->tasks[id] = task;
  if (!core_->started) {
    core_->started = true;
    for (int i = 0; i < pool_size_; ++i) StartWorkerLocked();
    timer_ = std::thread([this] {
      SetThreadName("ef-sensor-timer");
      TimerLoop();
    });
  }
  core_->timer_cv.notify_all();
  return id;
}

void SensorScheduler::Remove(uint64_t id) {
  std::unique_lock lock(core_->mu);
  auto it = core_->tasks.find(id);
  if (it == core_->tasks.end()) return;
  std::shared_ptr<Task> task = it->second;
  core_->tasks.erase(it);
  task->removed = true;
  core_->done_cv.wait(lock, [&] {
    return !task->running || (task->timed_out && !task->committing) || core_->stopping;
  });
}

void SensorScheduler::Wake() { core_->timer_cv.notify_all(); }

void SensorScheduler::TimerLoop() {
  std::unique_lock lock(core_->mu);
  while (!core_->stopping) {
    auto now = clock_->Now();
    Clock::TimePoint next = now + std::chrono::seconds(1);
    for (auto& [id, task] : core_->tasks) {
      if (task->committing) continue;
      if (task->running || task->queued) {
        auto deadline = task->started + task->spec.timeout + task->spec.grace;
        if (!task->timed_out && now >= deadline) {
          task->timed_out = true;
          if (task->spec.on_timeout) task->spec.on_timeout();
          if (task->running && !core_->abandoned[task->worker]) {
            // Park the stuck worker and keep the pool at its size.
            core_->abandoned[task->worker] = true;
            StartWorkerLocked();
          }
          core_->done_cv.notify_all();
        } else if (!task->timed_out && deadline < next) {
          next = deadline;
        }
        continue;
      }
      if (now >= task->next_due) {
        task->queued = true;
        task->timed_out = false;
        task->started = now;
        core_->queue.push_back(task);
        core_->work_cv.notify_one();
        // Fixed rate; a late or slow read skips the missed ticks instead of bursting.
        task->next_due += task->spec.interval;
        if (task->next_due <= now) task->next_due = now + task->spec.interval;
        auto deadline = now + task->spec.timeout + task->spec.grace;
        if (deadline < next) next = deadline;
      }
      if (task->next_due < next) next = task->next_due;
    }
    // Real-time wait for the clock's distance to the next event. With a FakeClock the test moves
    // time and calls Wake(); the 1 s cap only bounds how long a missed wake-up can hide.
    auto wait = next - now;
    if (wait > std::chrono::seconds(1)) wait = std::chrono::seconds(1);
    if (wait > Clock::Duration::zero()) core_->timer_cv.wait_for(lock, wait);
  }
}

}  // namespace edgeferry::sensors
