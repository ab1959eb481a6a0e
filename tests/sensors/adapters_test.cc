// Sensor adapters on fake sysfs/procfs trees built by each test, including broken files.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sensors/readers.h"
#include "tests/sensors/fake_sink.h"

namespace edgeferry::sensors {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class Tree {
 public:
  Tree() {
    std::string tmpl = (fs::temp_directory_path() / "ef-sensors-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    root_ = tmpl;
  }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Write(const std::string& rel, const std::string& content) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  void Mkdir(const std::string& rel) { fs::create_directories(root_ / rel); }
  std::string path() const { return root_.string(); }

 private:
  fs::path root_;
};

struct Failure {
  std::string sensor, reason, detail;
};

struct Result {
  std::map<std::string, Reading> readings;
  std::vector<Failure> failures;
  std::map<std::string, int> reasons;
};

Result RunReader(SensorReader& r) {
  Result out;
  std::vector<Reading> v;
  r.Read(SystemClock()->Now() + 5s, &v,
         [&](const std::string& s, const std::string& reason, const std::string& d) {
           out.failures.push_back({s, reason, d});
           ++out.reasons[reason];
         });
  for (auto& x : v) out.readings[x.sensor] = x;
  return out;
}

config::SensorInputConfig Cfg(const Tree& t) {
  config::SensorInputConfig c;
  c.sysfs_root = t.path();
  c.procfs_root = t.path();
  return c;
}

TEST_CASE("hwmon: channels with labels and units, a broken file fails only its sensor") {
  Tree t;
  t.Write("class/hwmon/hwmon0/name", "coretemp\n");
  t.Write("class/hwmon/hwmon0/temp1_input", "45500\n");
  t.Write("class/hwmon/hwmon0/temp1_label", "Package id 0\n");
  t.Write("class/hwmon/hwmon0/temp2_input", "garbage\n");
  t.Write("class/hwmon/hwmon0/temp2_label", "Core 0\n");
  t.Mkdir("class/hwmon/hwmon0/temp3_input");  // reading a directory: EISDIR, an I/O failure
  t.Write("class/hwmon/hwmon1/name", "ina219\n");
  t.Write("class/hwmon/hwmon1/in1_input", "5020\n");
  t.Write("class/hwmon/hwmon1/curr1_input", "250\n");
  t.Write("class/hwmon/hwmon1/power1_input", "1255000\n");
  t.Write("class/hwmon/hwmon1/fan1_input", "1200\n");
  t.Write("class/hwmon/hwmon1/temp1_max", "90000\n");  // not an _input: ignored
  t.Write("class/hwmon/hwmon2/name", "coretemp\n");    // a second chip of the same kind
  t.Write("class/hwmon/hwmon2/temp1_input", "30000\n");
  auto r = MakeHwmonReader(Cfg(t));
  Result res = RunReader(*r);
  CHECK(res.readings.size() == 6);
  CHECK(res.readings["coretemp/Package id 0"].value == doctest::Approx(45.5));
  CHECK(res.readings["coretemp/Package id 0"].unit == "C");
  CHECK(res.readings["ina219/in1"].value == doctest::Approx(5.02));
  CHECK(res.readings["ina219/in1"].unit == "V");
  CHECK(res.readings["ina219/curr1"].value == doctest::Approx(0.25));
  CHECK(res.readings["ina219/power1"].value == doctest::Approx(1.255));
  CHECK(res.readings["ina219/power1"].unit == "W");
  CHECK(res.readings["ina219/fan1"].unit == "RPM");
  CHECK(res.readings["coretemp#2/temp1"].value == doctest::Approx(30.0));
  CHECK(res.reasons == std::map<std::string, int>{{"parse", 1}, {"io", 1}});
  for (const auto& f : res.failures) {
    if (f.reason == "parse") {
      CHECK(f.sensor == "coretemp/Core 0");
      CHECK(f.detail.find("temp2_input") != std::string::npos);
    }
  }

  auto cfg = Cfg(t);
  for (const char* glob : {"ina219/*", "ina219"}) {
    cfg.match = {glob};
    Result only = RunReader(*MakeHwmonReader(cfg));
    CHECK(only.readings.size() == 4);
    CHECK(only.failures.empty());
  }
}

TEST_CASE("hwmon and thermal: a missing tree is one failure, not a crash") {
  Tree t;
  Result h = RunReader(*MakeHwmonReader(Cfg(t)));
  CHECK(h.readings.empty());
  CHECK(h.reasons == std::map<std::string, int>{{"missing", 1}});
  Result th = RunReader(*MakeThermalReader(Cfg(t)));
  CHECK(th.reasons == std::map<std::string, int>{{"missing", 1}});
}

TEST_CASE("thermal zones in millidegrees, missing temp file counted") {
  Tree t;
  t.Write("class/thermal/thermal_zone0/type", "cpu-thermal\n");
  t.Write("class/thermal/thermal_zone0/temp", "48312\n");
  t.Write("class/thermal/thermal_zone1/type", "gpu-thermal\n");  // no temp file
  t.Write("class/thermal/cooling_device0/type", "fan\n");        // not a zone
  Result r = RunReader(*MakeThermalReader(Cfg(t)));
  REQUIRE(r.readings.size() == 1);
  CHECK(r.readings["thermal_zone0/cpu-thermal"].value == doctest::Approx(48.312));
  CHECK(r.reasons == std::map<std::string, int>{{"missing", 1}});
  CHECK(r.failures.at(0).sensor == "thermal_zone1/gpu-thermal");

  // `match` globs apply to the full name, the zone type or the zone directory.
  auto cfg = Cfg(t);
  for (const char* glob : {"cpu-thermal", "thermal_zone0", "*/cpu-*"}) {
    cfg.match = {glob};
    Result m = RunReader(*MakeThermalReader(cfg));
    CHECK_MESSAGE(m.readings.size() == 1, glob);
    CHECK(m.failures.empty());
  }
  cfg.match = {"gpu*"};
  CHECK(RunReader(*MakeThermalReader(cfg)).readings.empty());
}

TEST_CASE("iio: (raw + offset) * scale with channel and shared attributes") {
  Tree t;
  const std::string d = "bus/iio/devices/iio:device0/";
  t.Write(d + "name", "ads1015\n");
  t.Write(d + "in_voltage0_raw", "1000\n");
  t.Write(d + "in_voltage_scale", "3.0\n");  // shared by all voltage channels
  t.Write(d + "in_voltage1_raw", "10\n");
  t.Write(d + "in_voltage1_scale", "0.5\n");  // channel-specific wins
  t.Write(d + "in_temp_raw", "100\n");
  t.Write(d + "in_temp_offset", "-50\n");
  t.Write(d + "in_temp_scale", "10\n");
  t.Write(d + "in_accel_x_raw", "-20\n");
  t.Write(d + "in_accel_scale", "0.1\n");
  t.Write(d + "in_voltage2_raw", "12\n");
  t.Write(d + "in_voltage2_scale", "bad\n");  // a broken scale fails the channel, no raw value
  t.Write("bus/iio/devices/trigger0/name", "t\n");
  Result r = RunReader(*MakeIioReader(Cfg(t)));
  CHECK(r.readings.size() == 4);
  CHECK(r.readings["ads1015/voltage0"].value == doctest::Approx(3000.0));
  CHECK(r.readings["ads1015/voltage0"].unit == "mV");
  CHECK(r.readings["ads1015/voltage1"].value == doctest::Approx(5.0));
  CHECK(r.readings["ads1015/temp"].value == doctest::Approx(500.0));
  CHECK(r.readings["ads1015/temp"].unit == "mC");
  CHECK(r.readings["ads1015/accel_x"].value == doctest::Approx(-2.0));
  CHECK(r.reasons == std::map<std::string, int>{{"parse", 1}});
  CHECK(r.failures.at(0).sensor == "ads1015/voltage2");
}

TEST_CASE("w1: DS18B20 via temperature or w1_slave, CRC failure and garbage counted") {
  Tree t;
  const std::string d = "bus/w1/devices/";
  t.Write(d + "28-000001/temperature", "21562\n");
  t.Write(d + "28-000002/w1_slave",
          "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n");
  t.Write(d + "28-000003/w1_slave",
          "72 01 4b 46 7f ff 0e 10 57 : crc=00 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n");
  t.Write(d + "28-000004/w1_slave", "72 01 : crc=57 YES\nno temperature here\n");
  t.Write(d + "28-000005/w1_slave", "");
  t.Write(d + "w1_bus_master1/name", "w1_bus_master1\n");
  Result r = RunReader(*MakeW1Reader(Cfg(t)));
  CHECK(r.readings.size() == 2);
  CHECK(r.readings["28-000001"].value == doctest::Approx(21.562));
  CHECK(r.readings["28-000002"].value == doctest::Approx(23.125));
  CHECK(r.readings["28-000002"].unit == "C");
  CHECK(r.reasons == std::map<std::string, int>{{"crc", 2}, {"parse", 1}});
}

TEST_CASE("system: cpu (two samples), memory, load, disk, net from a fake procfs") {
  Tree t;
  t.Write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n");
  t.Write("meminfo", "MemTotal:        1000 kB\nMemFree:  100 kB\nMemAvailable:     250 kB\n");
  t.Write("loadavg", "0.50 0.25 0.10 1/100 1234\n");
  t.Write("net/dev",
          "Inter-|   Receive                            |  Transmit\n"
          " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
          "    lo:    1000      10    0    0    0     0          0         0     1000      10    "
          "0    0    0     0       0          0\n"
          "  eth0: 5000 50 0 0 0 0 0 0 7000 70 0 0 0 0 0 0\n");
  auto cfg = Cfg(t);
  cfg.disk_paths = {t.path(), t.path() + "/does-not-exist"};
  auto reader = MakeSystemReader(cfg);
  Result first = RunReader(*reader);
  CHECK(first.readings.count("cpu.usage") == 0);  // needs a second sample
  CHECK(first.readings["memory.total"].value == doctest::Approx(1000 * 1024.0));
  CHECK(first.readings["memory.available"].value == doctest::Approx(250 * 1024.0));
  CHECK(first.readings["memory.used_percent"].value == doctest::Approx(75.0));
  CHECK(first.readings["load.1"].value == doctest::Approx(0.5));
  CHECK(first.readings["load.15"].value == doctest::Approx(0.1));
  CHECK(first.readings["net.eth0.rx_bytes"].value == doctest::Approx(5000));
  CHECK(first.readings["net.eth0.tx_bytes"].value == doctest::Approx(7000));
  CHECK(first.readings["net.lo.tx_bytes"].value == doctest::Approx(1000));
  CHECK(first.readings.count("disk." + t.path() + ".free") == 1);
  CHECK(first.readings["disk." + t.path() + ".used_percent"].unit == "%");
  CHECK(first.reasons == std::map<std::string, int>{{"missing", 1}});  // the missing disk path

  // 100 more busy jiffies and 100 idle: 50 %.
  t.Write("stat", "cpu  150 0 150 900 0 0 0 0 0 0\n");
  Result second = RunReader(*reader);
  CHECK(second.readings["cpu.usage"].value == doctest::Approx(50.0));

  // Garbage in every file: each metric fails alone, nothing throws.
  t.Write("stat", "nonsense\n");
  t.Write("meminfo", "\x01\x02\n");
  t.Write("loadavg", "x y z\n");
  t.Write("net/dev", "header\nheader\n  eth0: 1 2\n");
  cfg.metrics = {"cpu", "memory", "load", "net"};
  Result bad = RunReader(*MakeSystemReader(cfg));
  CHECK(bad.readings.empty());
  CHECK(bad.reasons["parse"] == 5);  // cpu, memory, load, eth0 line, no interfaces
}

TEST_CASE("errno to reason") {
  CHECK(ReasonForErrno(ENOENT) == "missing");
  CHECK(ReasonForErrno(EACCES) == "permission");
  CHECK(ReasonForErrno(EPERM) == "permission");
  CHECK(ReasonForErrno(EIO) == "io");
}

config::SensorInputConfig ExecCfg(std::vector<std::string> cmd, const std::string& format,
                                  uint32_t timeout_ms = 2000) {
  config::SensorInputConfig c;
  c.command = std::move(cmd);
  c.format = format;
  c.timeout_ms = timeout_ms;
  return c;
}

TEST_CASE("exec: JSON shapes and key=value lines") {
  {
    auto r = MakeExecReader(
        ExecCfg({"sh", "-c", R"(echo '{"temp": 21.5, "hum": {"value": 40, "unit": "%"}}')"},
                "json"),
        SystemClock());
    Result res = RunReader(*r);
    CHECK(res.failures.empty());
    CHECK(res.readings["temp"].value == doctest::Approx(21.5));
    CHECK(res.readings["hum"].unit == "%");
  }
  {
    auto r = MakeExecReader(
        ExecCfg({"sh", "-c",
                 R"(echo '[{"sensor":"a","value":1,"unit":"V"},{"sensor":"b","value":"x"}]')"},
                "json"),
        SystemClock());
    Result res = RunReader(*r);
    CHECK(res.readings.size() == 1);
    CHECK(res.readings["a"].unit == "V");
    CHECK(res.reasons == std::map<std::string, int>{{"parse", 1}});
  }
  {
    auto r = MakeExecReader(
        ExecCfg({"sh", "-c", "printf '{\"a\":1}\\nnot json\\n{\"b\":2}\\n'"}, "json"),
        SystemClock());
    Result res = RunReader(*r);
    CHECK(res.readings.size() == 2);
    CHECK(res.reasons == std::map<std::string, int>{{"parse", 1}});
  }
  {
    auto r = MakeExecReader(
        ExecCfg({"sh", "-c", "printf '# comment\\ntemp=21.5 C\\nbad line\\nx=abc\\n\\ny = 3\\n'"},
                "kv"),
        SystemClock());
    Result res = RunReader(*r);
    CHECK(res.readings.size() == 2);
    CHECK(res.readings["temp"].value == doctest::Approx(21.5));
    CHECK(res.readings["temp"].unit == "C");
    CHECK(res.readings["y"].value == doctest::Approx(3));
    CHECK(res.reasons == std::map<std::string, int>{{"parse", 2}});
  }
}

TEST_CASE("exec: failures (missing binary, exit status, timeout kills the process group)") {
  Result missing =
      RunReader(*MakeExecReader(ExecCfg({"/nonexistent/edgeferry-probe"}, "json"), SystemClock()));
  CHECK(missing.reasons == std::map<std::string, int>{{"exec", 1}});
  CHECK(missing.failures.at(0).detail.find("/nonexistent/edgeferry-probe") != std::string::npos);

  Result status = RunReader(
      *MakeExecReader(ExecCfg({"sh", "-c", "echo oops >&2; exit 3"}, "json"), SystemClock()));
  CHECK(status.reasons == std::map<std::string, int>{{"exec", 1}});
  CHECK(status.failures.at(0).detail.find("exit status 3") != std::string::npos);
  CHECK(status.failures.at(0).detail.find("oops") != std::string::npos);

  // A hung script whose child keeps stdout open: killed at the deadline with its child.
  Tree t;
  std::string pidfile = t.path() + "/child.pid";
  auto reader = MakeExecReader(
      ExecCfg({"sh", "-c", "sleep 60 & echo $! > " + pidfile + "; wait"}, "json", 300),
      SystemClock());
  std::vector<Reading> v;
  std::vector<std::string> reasons;
  auto start = std::chrono::steady_clock::now();
  reader->Read(SystemClock()->Now() + 300ms, &v,
               [&](const std::string&, const std::string& reason, const std::string&) {
                 reasons.push_back(reason);
               });
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(reasons == std::vector<std::string>{"timeout"});
  CHECK(took < 5s);
  std::ifstream pf(pidfile);
  int child = 0;
  pf >> child;
  REQUIRE(child > 0);
  // The grandchild was in the killed process group: it is gone (or a zombie of init).
  CHECK(testing::Eventually([&] {
    std::ifstream st("/proc/" + std::to_string(child) + "/stat");
    std::string s;
    std::getline(st, s);
    return !st || s.find(") Z ") != std::string::npos;
  }));
}

TEST_CASE("scheduler isolation: a hung exec sensor does not delay a simulated one") {
  testing::FakeSink sink;
  auto sched = NewSensorScheduler(SystemClock(), 1);
  config::InputConfig hung;
  hung.name = "hung";
  hung.type = "exec";
  hung.sensor = ExecCfg({"sleep", "30"}, "json", 500);
  hung.sensor->interval_ms = 100;
  config::InputConfig sim;
  sim.name = "sim";
  sim.type = "simulated";
  sim.sensor = config::SensorInputConfig{};
  sim.sensor->rate_hz = 50;
  auto h = CreateInput(hung, "d", &sink, SystemClock(), sched);
  auto s = CreateInput(sim, "d", &sink, SystemClock(), sched);
  REQUIRE(h.ok());
  REQUIRE(s.ok());
  REQUIRE((*h)->Start().ok());
  REQUIRE((*s)->Start().ok());
  // 50 readings at 50 Hz take ~1 s, during which the exec is stuck in `sleep 30` until killed
  // at 500 ms and then started again.
  REQUIRE(sink.WaitForCount(50, 20s));
  REQUIRE(testing::Eventually([&] { return (*h)->Stats().errors_by_reason["timeout"] >= 2; }));
  (*h)->Stop();
  (*s)->Stop();
  CHECK((*h)->Stats().accepted == 0);
  CHECK((*s)->Stats().errors == 0);
  for (const auto& r : sink.records()) CHECK(r.source == "sim");
}

TEST_CASE("sensor input: JSON record format and error counting end to end") {
  Tree t;
  t.Write("class/thermal/thermal_zone0/type", "cpu \"hot\"\n");
  t.Write("class/thermal/thermal_zone0/temp", "40000\n");
  t.Write("class/thermal/thermal_zone1/type", "broken\n");
  t.Write("class/thermal/thermal_zone1/temp", "n/a\n");
  FakeClock clock;
  testing::FakeSink sink;
  auto sched = NewSensorScheduler(&clock);
  config::InputConfig cfg;
  cfg.name = "temps";
  cfg.type = "thermal";
  cfg.sensor = Cfg(t);
  cfg.sensor->interval_ms = 1000;
  auto in = CreateInput(cfg, "gw-1", &sink, &clock, sched);
  REQUIRE(in.ok());
  REQUIRE((*in)->Start().ok());
  REQUIRE(sink.WaitForCount(1, 10s));
  clock.Advance(1s);
  sched->Wake();
  REQUIRE(sink.WaitForCount(2, 10s));
  (*in)->Stop();
  auto recs = sink.records();
  REQUIRE(recs.size() == 2);
  auto j = nlohmann::json::parse(recs[0].payload);
  CHECK(j == nlohmann::json{{"device", "gw-1"},
                            {"sensor", "thermal_zone0/cpu \"hot\""},
                            {"ts", clock.NowUnixMs() - 1000},
                            {"value", 40.0},
                            {"unit", "C"}});
  CHECK(recs[0].event_time_ms == clock.NowUnixMs() - 1000);
  InputStats st = (*in)->Stats();
  CHECK(st.accepted == 2);
  CHECK(st.errors == 2);
  CHECK(st.errors_by_reason == std::map<std::string, uint64_t>{{"parse", 2}});

  cfg.type = "sonar";
  auto bad = CreateInput(cfg, "gw-1", &sink, &clock, sched);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message() == "input temps: unknown type \"sonar\"");
}

}  // namespace
}  // namespace edgeferry::sensors
