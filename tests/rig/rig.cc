// Process, TempDir, ports, waits and Mosquitto. Kafka lives in kafka.cc.
#include "tests/rig/rig.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;

namespace edgeferry::rig {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

double TimeoutScale() {
  const char* s = std::getenv("EDGEFERRY_TEST_TIMEOUT_SCALE");
  if (s == nullptr || *s == '\0') return 1.0;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || v <= 0) throw RigError(std::string("bad EDGEFERRY_TEST_TIMEOUT_SCALE: ") + s);
  return v;
}

}  // namespace

std::chrono::milliseconds Scaled(std::chrono::milliseconds d) {
  return std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(d.count()) * TimeoutScale()));
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + Scaled(deadline);
  auto pause = 10ms;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    // Polling the condition is the point of this helper: the pause is not synchronisation.
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 100ms);
  }
  return condition();
}

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw RigError(Errno("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string err = Errno("bind 127.0.0.1:0");
    ::close(fd);
    throw RigError(err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool PortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint32_t salt = std::random_device{}();
  std::ostringstream s;
  s << prefix << "-" << ::getpid() << "-" << counter++ << "-" << std::hex << (salt & 0xffffff);
  return s.str();
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string LogTail(const fs::path& path, size_t lines) {
  std::ifstream in(path);
  if (!in) return "(no " + path.string() + ")";
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out = "--- last lines of " + path.string() + " ---\n";
  for (const auto& l : tail) out += l + "\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// TempDir

TempDir::TempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw RigError(Errno("mkdtemp " + tmpl));
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (!path_.empty() && !keep_) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

TempDir::TempDir(TempDir&& other) noexcept
    : path_(std::exchange(other.path_, {})), keep_(other.keep_) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty() && !keep_) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
    path_ = std::exchange(other.path_, {});
    keep_ = other.keep_;
  }
  return *this;
}

// ---------------------------------------------------------------------------------------------
// Process

void NoteDetachable(const std::string& line) {
  const char* file = std::getenv("EDGEFERRY_RIG_PENDING_FILE");
  if (file == nullptr || *file == '\0') return;
  std::ofstream out(file, std::ios::app);
  out << line << "\n";
}

namespace {

// Everything the child needs, prepared before fork: after fork only async-signal-safe calls.
struct SpawnPlan {
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  std::vector<char*> argv;
};

}  // namespace

Process::Process(std::vector<std::string> argv, Options options)
    : argv_(std::move(argv)), options_(std::move(options)) {
  if (argv_.empty()) throw RigError("Process: empty argv");
  SpawnPlan plan;
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : options_.env) {
    if (v) {
      env[k] = *v;
    } else {
      env.erase(k);
    }
  }
  for (const auto& [k, v] : env) plan.env_storage.push_back(k + "=" + v);
  for (auto& s : plan.env_storage) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  for (auto& a : argv_) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);

  auto open_out = [](const fs::path& p) {
    int fd = ::open(p.empty() ? "/dev/null" : p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                    0644);
    if (fd < 0) throw RigError(Errno("open " + p.string()));
    return fd;
  };
  int out_fd = open_out(options_.stdout_path);
  int err_fd = options_.stderr_path.empty() ? -1 : open_out(options_.stderr_path);

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw RigError(Errno("pipe2"));
  const pid_t parent = ::getpid();
  const char* cwd = options_.cwd.empty() ? nullptr : options_.cwd.c_str();
  const bool pdeath = options_.die_with_parent;
  const bool setsid_ = options_.new_session;

  pid_t pid = ::fork();
  if (pid < 0) throw RigError(Errno("fork"));
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    auto fail = [&](int err) {
      (void)!::write(pipefd[1], &err, sizeof(err));
      ::_exit(127);
    };
    if (setsid_) ::setsid();
    if (pdeath) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    }
    // A test runner may have blocked or ignored signals; the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull < 0 || ::dup2(devnull, 0) < 0) fail(errno);
    if (::dup2(out_fd, 1) < 0) fail(errno);
    if (::dup2(err_fd >= 0 ? err_fd : out_fd, 2) < 0) fail(errno);
    if (cwd != nullptr && ::chdir(cwd) != 0) fail(errno);
    ::execvpe(plan.argv[0], plan.argv.data(), plan.envp.data());
    fail(errno);
  }
  ::close(pipefd[1]);
  ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  pid_ = pid;
  if (!options_.die_with_parent) NoteDetachable("pid=" + std::to_string(pid));
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid_ = -1;
    throw RigError("cannot execute " + argv_[0] + ": " + std::strerror(child_errno));
  }
}

Process::~Process() {
  if (pid_ > 0 && !exit_status_) Kill();
}

Process::Process(Process&& other) noexcept
    : argv_(std::move(other.argv_)),
      options_(std::move(other.options_)),
      pid_(std::exchange(other.pid_, -1)),
      exit_status_(std::exchange(other.exit_status_, std::nullopt)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !exit_status_) Kill();
    argv_ = std::move(other.argv_);
    options_ = std::move(other.options_);
    pid_ = std::exchange(other.pid_, -1);
    exit_status_ = std::exchange(other.exit_status_, std::nullopt);
  }
  return *this;
}

void Process::Reap(int wait_status) {
  if (WIFEXITED(wait_status)) {
    exit_status_ = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    exit_status_ = 128 + WTERMSIG(wait_status);
  }
}

bool Process::running() {
  if (pid_ <= 0 || exit_status_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    Reap(status);
    return false;
  }
  return r == 0;
}

void Process::Signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

void Process::Kill() {
  if (pid_ <= 0 || exit_status_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) Reap(status);
  if (!exit_status_) exit_status_ = 128 + SIGKILL;
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_status_;
  WaitFor([&] { return !running(); }, timeout);
  return exit_status_;
}

pid_t Process::Release() {
  pid_t p = pid_;
  pid_ = -1;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Paths

std::string EdgeferryBinary() { return EDGEFERRY_RIG_AGENT_BINARY; }

std::vector<std::string> EdgeferryCommand() {
  std::vector<std::string> argv;
  std::string_view emulator = EDGEFERRY_RIG_EMULATOR;
  while (!emulator.empty()) {
    size_t bar = emulator.find('|');
    argv.emplace_back(emulator.substr(0, bar));
    emulator = bar == std::string_view::npos ? std::string_view() : emulator.substr(bar + 1);
  }
  argv.push_back(EdgeferryBinary());
  return argv;
}
fs::path SourceDir() { return EDGEFERRY_RIG_SOURCE_DIR; }

// ---------------------------------------------------------------------------------------------
// Mosquitto

namespace {

// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all P-256 and
// valid for two days, made with the openssl command line tool in `dir`.
void MakeTestCertificates(const fs::path& dir) {
  const std::string d = dir.string() + "/";
  {
    std::ofstream ext(d + "server.ext");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  }
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-days", "2", "-subj", "/CN=edgeferry test CA", "-keyout", d + "ca.key", "-out",
       d + "ca.crt"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-subj", "/CN=127.0.0.1", "-keyout", d + "server.key", "-out", d + "server.csr"},
      {"openssl", "x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.crt", "-CAkey",
       d + "ca.key", "-CAcreateserial", "-days", "2", "-extfile", d + "server.ext", "-out",
       d + "server.crt"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-subj", "/CN=edgeferry-test-client", "-keyout", d + "client.key", "-out", d + "client.csr"},
      {"openssl", "x509", "-req", "-in", d + "client.csr", "-CA", d + "ca.crt", "-CAkey",
       d + "ca.key", "-CAcreateserial", "-days", "2", "-out", d + "client.crt"},
  };
  for (const auto& argv : steps) {
    ProcessOptions o;
    o.stdout_path = dir / "openssl.log";
    Process p(argv, o);
    if (p.Wait(30s) != 0) {
      throw RigError("making test certificates failed: " + argv[1] + "\n" +
                     LogTail(dir / "openssl.log"));
    }
  }
}

}  // namespace

Mosquitto::Mosquitto(Options options) : options_(std::move(options)), dir_("edgeferry-mosquitto") {
  if (options_.detachable) NoteDetachable("dir=" + dir_.path().string());
  port_ = FreeLoopbackPort();
  std::ofstream conf(config_path());
  // The settings of config/examples/mosquitto-edgeferry.conf (explained there), with a faster
  // autosave so that a test's SIGKILL loses at most a second.
  conf << "listener " << port_ << " 127.0.0.1\n"
       << "allow_anonymous true\n"
       << "persistence " << (options_.persistence ? "true" : "false") << "\n"
       << "persistence_location " << dir_.path().string() << "/\n"
       << "autosave_interval 1\n"
       << "autosave_on_changes false\n"
       << "max_queued_messages 1000000\n"
       << "max_queued_bytes 0\n"
       << "max_inflight_messages 100\n"
       << "persistent_client_expiration 7d\n"
       << "queue_qos0_messages false\n"
       << "log_dest file " << log_path().string() << "\n"
       << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
       << "log_type subscribe\nlog_type unsubscribe\n"
       << "connection_messages true\n";
  // Run as root (CI, scripts/test), Mosquitto would switch to user "mosquitto", which cannot
  // write our temp dir; stay who we are.
  if (::geteuid() == 0) conf << "user root\n";
  if (options_.tls) {
    MakeTestCertificates(dir_.path());
    tls_port_ = FreeLoopbackPort();
    conf << "listener " << tls_port_ << " 127.0.0.1\n"
         << "cafile " << (dir_ / "ca.crt").string() << "\n"
         << "certfile " << (dir_ / "server.crt").string() << "\n"
         << "keyfile " << (dir_ / "server.key").string() << "\n"
         << "require_certificate " << (options_.require_client_cert ? "true" : "false") << "\n";
  }
  conf << options_.extra_config << "\n";
  conf.close();
  if (!conf) throw RigError("cannot write " + config_path().string());
  Start();
}

Mosquitto::~Mosquitto() {
  if (detached_) return;
  try {
    Stop();
  } catch (...) {
    process_.Kill();
  }
}

std::string Mosquitto::tls_uri() const {
  return tls_port_ == 0 ? std::string() : "ssl://127.0.0.1:" + std::to_string(tls_port_);
}

std::string Mosquitto::uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

bool Mosquitto::running() { return process_.running(); }

void Mosquitto::Start() {
  if (process_.running()) throw RigError("Mosquitto::Start: already running");
  Process::Options o;
  o.stdout_path = dir_ / "mosquitto.out";
  if (options_.detachable) {
    o.die_with_parent = false;
    o.new_session = true;
  }
  process_ = Process({"mosquitto", "-c", config_path().string()}, o);
  bool up = WaitFor([&] { return !process_.running() || PortOpen(port_); }, 10s);
  if (!up || !process_.running()) {
    std::string why = process_.running() ? "not listening after 10 s" : "exited";
    process_.Kill();
    throw RigError("mosquitto on 127.0.0.1:" + std::to_string(port_) + " " + why + "\n" +
                   LogTail(log_path()) + LogTail(dir_ / "mosquitto.out"));
  }
}

void Mosquitto::Stop() {
  if (!process_.running()) return;
  process_.Signal(SIGTERM);
  if (!process_.Wait(10s)) {
    process_.Kill();
    throw RigError("mosquitto did not stop within 10 s of SIGTERM\n" + LogTail(log_path()));
  }
}

void Mosquitto::Kill() { process_.Kill(); }

void Mosquitto::Detach() {
  if (!options_.detachable) throw RigError("Mosquitto::Detach: start it with detachable=true");
  process_.Release();
  dir_.Keep();
  detached_ = true;
}

size_t Mosquitto::SubscriptionCount(const std::string& client_id, const std::string& filter) const {
  // Mosquitto 2.0 logs a subscription as "<time>: <client id> <qos> <filter>".
  std::istringstream log(ReadFile(log_path()));
  std::string line;
  size_t n = 0;
  for (int qos = 0; qos <= 2; ++qos) {
    const std::string needle = ": " + client_id + " " + std::to_string(qos) + " " + filter;
    log.clear();
    log.seekg(0);
    while (std::getline(log, line)) {
      auto pos = line.find(needle);
      if (pos != std::string::npos && pos + needle.size() == line.size()) ++n;
    }
  }
  return n;
}

bool Mosquitto::WaitSubscribed(const std::string& client_id, const std::string& filter,
                               size_t more_than, std::chrono::milliseconds deadline) const {
  return WaitFor([&] { return SubscriptionCount(client_id, filter) > more_than; }, deadline);
}

}  // namespace edgeferry::rig
