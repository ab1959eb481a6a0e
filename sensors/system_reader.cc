// System statistics from procfs (under the configured procfs_root) and statvfs: cpu, memory,
// load, disk, net. Sensor names: cpu.usage, memory.{total,available,used_percent},
// load.{1,5,15}, disk.<path>.{free,used_percent}, net.<iface>.{rx_bytes,tx_bytes}.
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "sensors/readers.h"

namespace edgeferry::sensors {
namespace {

bool ReadWhole(const std::string& path, std::string* out, int* err) {
  std::ifstream f(path);
  if (!f) {
    *err = errno ? errno : ENOENT;
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

class SystemReader final : public SensorReader {
 public:
  explicit SystemReader(const config::SensorInputConfig& cfg) : cfg_(cfg) {}

  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn& fail) override {
    out_ = out;
    fail_ = &fail;
    if (Want("cpu")) Cpu();
    if (Want("memory")) Memory();
    if (Want("load")) Load();
    if (Want("disk")) Disk();
    if (Want("net")) Net();
  }

 private:
  bool Want(const char* m) const {
    if (cfg_.metrics.empty()) return true;
    for (const auto& x : cfg_.metrics) {
      if (x == m) return true;
    }
    return false;
  }
  void Emit(const std::string& sensor, double v, const char* unit) {
    if (MatchesAny(cfg_.match, sensor)) out_->push_back({sensor, v, unit, 0, 0});
  }
  bool File(const std::string& rel, const std::string& sensor, std::string* text) {
    int err = 0;
    std::string path = cfg_.procfs_root + "/" + rel;
    if (!ReadWhole(path, text, &err)) {
      (*fail_)(sensor, ReasonForErrno(err), path + ": " + std::strerror(err));
      return false;
    }
    return true;
  }

  void Cpu() {
    std::string text;
    if (!File("stat", "cpu", &text)) return;
    std::istringstream in(text);
    std::string label;
    in >> label;
    std::vector<uint64_t> v;
    uint64_t x;
    while (v.size() < 10 && in >> x) v.push_back(x);
    if (label != "cpu" || v.size() < 4) {
      (*fail_)("cpu", "parse", cfg_.procfs_root + "/stat: no aggregate cpu line");
      return;
    }
    uint64_t total = 0;
    for (uint64_t t : v) total += t;
    uint64_t idle = v[3] + (v.size() > 4 ? v[4] : 0);  // idle + iowait
    // Usage needs two samples: the first poll only records the baseline.
    if (have_cpu_ && total > prev_total_) {
      double busy = static_cast<double>((total - idle) - (prev_total_ - prev_idle_));
      Emit("cpu.usage", 100.0 * busy / static_cast<double>(total - prev_total_), "%");
    }
    have_cpu_ = true;
    prev_total_ = total;
    prev_idle_ = idle;
  }

  void Memory() {
    std::string text;
    if (!File("meminfo", "memory", &text)) return;
    std::istringstream in(text);
    std::string key, unit;
    double total = -1, available = -1, value;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      if (!(ls >> key >> value)) continue;
      if (key == "MemTotal:") total = value * 1024;
      if (key == "MemAvailable:") available = value * 1024;
    }
    if (total <= 0 || available < 0) {
      (*fail_)("memory", "parse", cfg_.procfs_root + "/meminfo: no MemTotal/MemAvailable");
      return;
    }
    Emit("memory.total", total, "bytes");
    Emit("memory.available", available, "bytes");
    Emit("memory.used_percent", 100.0 * (total - available) / total, "%");
  }

  void Load() {
    std::string text;
    if (!File("loadavg", "load", &text)) return;
    std::istringstream in(text);
    double l1, l5, l15;
    if (!(in >> l1 >> l5 >> l15)) {
      (*fail_)("load", "parse", cfg_.procfs_root + "/loadavg: expected three numbers");
      return;
    }
    Emit("load.1", l1, "");
    Emit("load.5", l5, "");
    Emit("load.15", l15, "");
  }

  void Disk() {
    for (const auto& path : cfg_.disk_paths) {
      std::string sensor = "disk." + path;
      struct statvfs s;
      if (::statvfs(path.c_str(), &s) != 0) {
        int err = errno;
        (*fail_)(sensor, ReasonForErrno(err), "statvfs " + path + ": " + std::strerror(err));
        continue;
      }
      double total = static_cast<double>(s.f_blocks) * static_cast<double>(s.f_frsize);
      double free = static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize);
      double used = static_cast<double>(s.f_blocks - s.f_bfree) * static_cast<double>(s.f_frsize);
      Emit(sensor + ".free", free, "bytes");
      // As df computes it: used / (used + available to unprivileged users).
      if (used + free > 0 && total > 0)
        Emit(sensor + ".used_percent", 100.0 * used / (used + free), "%");
    }
  }

  void Net() {
    std::string text;
    if (!File("net/dev", "net", &text)) return;
    std::istringstream in(text);
    std::string line;
    int parsed = 0;
    while (std::getline(in, line)) {
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;  // the two header lines
      std::string iface = line.substr(0, colon);
      iface.erase(0, iface.find_first_not_of(' '));
      std::istringstream ls(line.substr(colon + 1));
      double f[9];
      bool ok = true;
      for (double& x : f) ok = ok && static_cast<bool>(ls >> x);
      if (!ok || iface.empty()) {
        (*fail_)("net." + iface, "parse", cfg_.procfs_root + "/net/dev: bad line for " + iface);
        continue;
      }
      ++parsed;
      Emit("net." + iface + ".rx_bytes", f[0], "bytes");
      Emit("net." + iface + ".tx_bytes", f[8], "bytes");
    }
    if (parsed == 0) (*fail_)("net", "parse", cfg_.procfs_root + "/net/dev: no interfaces");
  }

  config::SensorInputConfig cfg_;
  std::vector<Reading>* out_ = nullptr;
  const FailFn* fail_ = nullptr;
  bool have_cpu_ = false;
  uint64_t prev_total_ = 0, prev_idle_ = 0;
};

}  // namespace

std::unique_ptr<SensorReader> MakeSystemReader(const config::SensorInputConfig& cfg) {
  return std::make_unique<SystemReader>(cfg);
}

}  // namespace edgeferry::sensors
