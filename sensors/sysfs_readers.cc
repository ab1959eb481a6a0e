// Readers for Linux sysfs sensors: hwmon, thermal zones, IIO and 1-Wire DS18B20. Every path is
// under the configured sysfs_root so that tests run on fake trees. A file that cannot be read or
// parsed fails that one sensor (counted by reason); the others in the same poll still report.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "sensors/readers.h"

namespace edgeferry::sensors {
namespace {

// Reads a small sysfs file. On failure returns nullopt and sets *err to errno.
std::optional<std::string> ReadSmallFile(const std::string& path, int* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 65536) break;  // sysfs attributes are one page at most
  }
  ::close(fd);
  return out;
}

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, e - b + 1);
}

// Sorted directory entries (not "." / ".."); empty if the directory cannot be read.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool ParseDouble(const std::string& text, double* out) {
  std::string t = Trim(text);
  if (t.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(t.c_str(), &end);
  if (errno != 0 || end == t.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// Reads one numeric file; on failure reports it for `sensor` and returns false.
bool ReadNumber(const std::string& path, const std::string& sensor, const FailFn& fail,
                double* out) {
  int err = 0;
  auto text = ReadSmallFile(path, &err);
  if (!text) {
    fail(sensor, ReasonForErrno(err), path + ": " + std::strerror(err));
    return false;
  }
  if (!ParseDouble(*text, out)) {
    fail(sensor, "parse", path + ": not a number: \"" + Trim(text->substr(0, 40)) + "\"");
    return false;
  }
  return true;
}

std::string ReadNameOr(const std::string& path, const std::string& fallback) {
  int err = 0;
  auto t = ReadSmallFile(path, &err);
  if (!t) return fallback;
  std::string n = Trim(*t);
  return n.empty() ? fallback : n;
}

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool EndsWith(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// ---- hwmon: /sys/class/hwmon/hwmonN/{name, <type><n>_input, <type><n>_label}
struct HwmonType {
  const char* prefix;
  double divisor;
  const char* unit;
};
constexpr HwmonType kHwmonTypes[] = {
    {"temp", 1000.0, "C"}, {"in", 1000.0, "V"},         {"fan", 1.0, "RPM"},  {"power", 1e6, "W"},
    {"curr", 1000.0, "A"}, {"humidity", 1000.0, "%RH"}, {"energy", 1e6, "J"}, {"pwm", 1.0, ""},
};

class HwmonReader final : public SensorReader {
 public:
  explicit HwmonReader(const config::SensorInputConfig& cfg) : cfg_(cfg) {}
  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn& fail) override {
    std::string root = cfg_.sysfs_root + "/class/hwmon";
    auto chips = ListDir(root);
    if (chips.empty()) {
      fail("hwmon", "missing", root + ": no hwmon devices");
      return;
    }
    std::map<std::string, int> seen_names;
    for (const auto& chip : chips) {
      std::string dir = root + "/" + chip;
      std::string chip_name = ReadNameOr(dir + "/name", chip);
      // Two chips of the same kind: the second becomes "name#2" (hwmonN numbers change at boot).
      int nth = ++seen_names[chip_name];
      if (nth > 1) chip_name += "#" + std::to_string(nth);
      for (const auto& file : ListDir(dir)) {
        if (!EndsWith(file, "_input")) continue;
        std::string channel = file.substr(0, file.size() - 6);  // "temp1"
        const HwmonType* type = nullptr;
        for (const auto& t : kHwmonTypes) {
          if (StartsWith(channel, t.prefix) && channel.size() > std::strlen(t.prefix) &&
              std::isdigit(static_cast<unsigned char>(channel[std::strlen(t.prefix)]))) {
            type = &t;
          }
        }
        if (!type) continue;
        std::string label = ReadNameOr(dir + "/" + channel + "_label", channel);
        std::string sensor = chip_name + "/" + label;
        if (!MatchesAny(cfg_.match, {sensor, chip_name})) continue;
        double raw;
        if (!ReadNumber(dir + "/" + file, sensor, fail, &raw)) continue;
        out->push_back({sensor, raw / type->divisor, type->unit, 0, 0});
      }
    }
  }

 private:
  config::SensorInputConfig cfg_;
};

// ---- thermal: /sys/class/thermal/thermal_zoneN/{type, temp} in millidegrees Celsius
class ThermalReader final : public SensorReader {
 public:
  explicit ThermalReader(const config::SensorInputConfig& cfg) : cfg_(cfg) {}
  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn& fail) override {
    std::string root = cfg_.sysfs_root + "/class/thermal";
    bool any = false;
    for (const auto& zone : ListDir(root)) {
      if (!StartsWith(zone, "thermal_zone")) continue;
      any = true;
      std::string dir = root + "/" + zone;
      std::string type = ReadNameOr(dir + "/type", "unknown");
      std::string sensor = zone + "/" + type;
      if (!MatchesAny(cfg_.match, {sensor, type, zone})) continue;
      double milli;
      if (!ReadNumber(dir + "/temp", sensor, fail, &milli)) continue;
      out->push_back({sensor, milli / 1000.0, "C", 0, 0});
    }
    if (!any) fail("thermal", "missing", root + ": no thermal zones");
  }

 private:
  config::SensorInputConfig cfg_;
};

// ---- IIO: /sys/bus/iio/devices/iio:deviceN/{name, in_<chan>_raw, in_<chan>_scale|in_<type>_scale,
// in_<chan>_offset|in_<type>_offset}; value = (raw + offset) * scale, in the IIO ABI's units.
const char* IioUnit(const std::string& type) {
  if (type == "temp") return "mC";  // milli degrees Celsius
  if (type == "voltage") return "mV";
  if (type == "current") return "mA";
  if (type == "accel") return "m/s^2";
  if (type == "anglvel") return "rad/s";
  if (type == "magn") return "G";
  if (type == "pressure") return "kPa";
  if (type == "humidityrelative") return "m%RH";
  if (type == "illuminance") return "lx";
  if (type == "power") return "mW";
  return "";
}

class IioReader final : public SensorReader {
 public:
  explicit IioReader(const config::SensorInputConfig& cfg) : cfg_(cfg) {}
  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn& fail) override {
    std::string root = cfg_.sysfs_root + "/bus/iio/devices";
    bool any = false;
    for (const auto& dev : ListDir(root)) {
      if (!StartsWith(dev, "iio:device")) continue;
      any = true;
      std::string dir = root + "/" + dev;
      std::string dev_name = ReadNameOr(dir + "/name", dev);
      for (const auto& file : ListDir(dir)) {
        if (!StartsWith(file, "in_") || !EndsWith(file, "_raw")) continue;
        std::string chan = file.substr(3, file.size() - 7);  // "voltage0", "accel_x", "temp"
        size_t i = 0;
        while (i < chan.size() && std::isalpha(static_cast<unsigned char>(chan[i]))) ++i;
        std::string type = chan.substr(0, i);
        std::string sensor = dev_name + "/" + chan;
        if (!MatchesAny(cfg_.match, {sensor, dev_name})) continue;
        double raw;
        if (!ReadNumber(dir + "/" + file, sensor, fail, &raw)) continue;
        double scale = 1.0, offset = 0.0;
        if (!Optional(dir, chan, type, "_scale", sensor, fail, &scale)) continue;
        if (!Optional(dir, chan, type, "_offset", sensor, fail, &offset)) continue;
        out->push_back({sensor, (raw + offset) * scale, IioUnit(type), 0, 0});
      }
    }
    if (!any) fail("iio", "missing", root + ": no IIO devices");
  }

 private:
  // The channel's own attribute, else the type-wide one, else the default. A present but broken
  // file fails the sensor (a wrong scale would report wrong values silently).
  static bool Optional(const std::string& dir, const std::string& chan, const std::string& type,
                       const char* suffix, const std::string& sensor, const FailFn& fail,
                       double* out) {
    for (const std::string& name : {"in_" + chan + suffix, "in_" + type + suffix}) {
      std::string path = dir + "/" + name;
      if (::access(path.c_str(), F_OK) != 0) continue;
      return ReadNumber(path, sensor, fail, out);
    }
    return true;
  }
  config::SensorInputConfig cfg_;
};

// ---- 1-Wire DS18B20 (family 28): /sys/bus/w1/devices/28-*/temperature (millidegrees, newer
// kernels) or w1_slave ("... crc=xx YES" / "... t=23125").
class W1Reader final : public SensorReader {
 public:
  explicit W1Reader(const config::SensorInputConfig& cfg) : cfg_(cfg) {}
  void Read(Clock::TimePoint, std::vector<Reading>* out, const FailFn& fail) override {
    std::string root = cfg_.sysfs_root + "/bus/w1/devices";
    bool any = false;
    for (const auto& dev : ListDir(root)) {
      if (!StartsWith(dev, "28-")) continue;
      any = true;
      if (!MatchesAny(cfg_.match, dev)) continue;
      std::string dir = root + "/" + dev;
      std::string temperature = dir + "/temperature";
      if (::access(temperature.c_str(), F_OK) == 0) {
        double milli;
        if (ReadNumber(temperature, dev, fail, &milli)) {
          out->push_back({dev, milli / 1000.0, "C", 0, 0});
        }
        continue;
      }
      int err = 0;
      std::string path = dir + "/w1_slave";
      auto text = ReadSmallFile(path, &err);
      if (!text) {
        fail(dev, ReasonForErrno(err), path + ": " + std::strerror(err));
        continue;
      }
      size_t nl = text->find('\n');
      std::string first = text->substr(0, nl);
      if (Trim(first).size() < 3 || Trim(first).substr(Trim(first).size() - 3) != "YES") {
        fail(dev, "crc", path + ": CRC check failed: \"" + Trim(first) + "\"");
        continue;
      }
      size_t t = text->find("t=", nl == std::string::npos ? 0 : nl);
      double milli;
      if (t == std::string::npos || !ParseDouble(text->substr(t + 2), &milli)) {
        fail(dev, "parse", path + ": no t=<millidegrees>");
        continue;
      }
      out->push_back({dev, milli / 1000.0, "C", 0, 0});
    }
    if (!any) fail("w1", "missing", root + ": no DS18B20 (28-*) devices");
  }

 private:
  config::SensorInputConfig cfg_;
};

}  // namespace

std::unique_ptr<SensorReader> MakeHwmonReader(const config::SensorInputConfig& cfg) {
  return std::make_unique<HwmonReader>(cfg);
}
std::unique_ptr<SensorReader> MakeThermalReader(const config::SensorInputConfig& cfg) {
  return std::make_unique<ThermalReader>(cfg);
}
std::unique_ptr<SensorReader> MakeIioReader(const config::SensorInputConfig& cfg) {
  return std::make_unique<IioReader>(cfg);
}
std::unique_ptr<SensorReader> MakeW1Reader(const config::SensorInputConfig& cfg) {
  return std::make_unique<W1Reader>(cfg);
}

}  // namespace edgeferry::sensors
