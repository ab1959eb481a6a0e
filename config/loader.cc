// The table-driven loader: reads the file defensively, parses JSON without trusting it, walks
// the schema table and collects every error with its JSON pointer, then sorts them into
// document order. Nothing here throws to the caller.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "config/config.h"
#include "config/loader.h"
#include "config/schema.h"

namespace edgeferry::config {
namespace schema {

std::string EscapePointerToken(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Quote(std::string_view text) {
  std::string cut(text.substr(0, 60));
  std::string q = Json(cut).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 60) q.insert(q.size() - 1, "...");
  return q;
}

std::string QuotePath(std::string_view path) {
  return Json(std::string(path)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string DescribeValue(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return Quote(v.get_ref<const std::string&>());
    case Json::value_t::array:
      return v.empty() ? "an empty list" : "a list";
    case Json::value_t::object:
      return v.empty() ? "an empty object" : "an object";
    case Json::value_t::null:
      return "null";
    default:
      return v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

namespace {

size_t EditDistance(std::string_view a, std::string_view b) {
  // Optimal string alignment distance: a swap of two neighbours counts once.
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                            std::tolower(static_cast<unsigned char>(b[j - 1]))
                        ? 0
                        : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string Suggest(std::string_view wrong, const std::vector<std::string>& candidates) {
  if (wrong.size() > 200) return "";
  std::string best;
  size_t best_d = std::max<size_t>(2, wrong.size() / 3) + 1;
  for (const std::string& c : candidates) {
    size_t d = EditDistance(wrong, c);
    // A key that starts the same way is the likely intent even when further away.
    if (d >= best_d && c.size() >= 4 && wrong.size() >= 4 &&
        (c.starts_with(wrong) || wrong.starts_with(c))) {
      d = best_d - 1;
    }
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string CheckReadableFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::strerror(errno);
  struct stat st {};
  std::string reason;
  if (::fstat(fd, &st) != 0) {
    reason = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    reason = "it is a directory";
  } else if (!S_ISREG(st.st_mode)) {
    reason = "not a regular file";
  }
  ::close(fd);
  return reason;
}

bool ReadSecretFile(const std::string& path, std::string* out, std::string* reason) {
  constexpr size_t kMaxSecret = 64 * 1024;
  *reason = CheckReadableFile(path);
  if (!reason->empty()) return false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *reason = std::strerror(errno);
    return false;
  }
  std::string data;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *reason = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSecret) {
      ::close(fd);
      *reason = "larger than 64 KiB; not a secret";
      return false;
    }
  }
  ::close(fd);
  if (data.ends_with("\r\n")) {
    data.resize(data.size() - 2);
  } else if (data.ends_with('\n')) {
    data.pop_back();
  }
  *out = std::move(data);
  return true;
}

std::string ResolvePath(const LoadContext& ctx, const std::string& path) {
  if (path.empty() || path.front() == '/' || ctx.base_dir.empty()) return path;
  return (std::filesystem::path(ctx.base_dir) / path).lexically_normal().string();
}

bool SectionState::Has(std::string_view key) const {
  return json_->is_object() && json_->contains(std::string(key));
}

std::string SectionState::PathOf(std::string_view key) const {
  return path_ + "/" + EscapePointerToken(key);
}

}  // namespace schema

namespace {

using schema::Check;
using schema::Json;
using schema::Key;
using schema::LoadContext;
using schema::Quote;
using schema::QuotePath;
using schema::Section;
using schema::SectionState;
using schema::Type;

constexpr size_t kMaxFileBytes = 1 << 20;
constexpr int kMaxDepth = 64;

std::string Num(double d) { return fmt::format("{}", d); }

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string JoinQuoted(const std::vector<std::string>& v, const char* last_sep = ", ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += (i + 1 == v.size()) ? last_sep : ", ";
    out += "\"" + v[i] + "\"";
  }
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

// ---- what a key accepts, in words ------------------------------------------------------------

std::string StringPhrase(const Key& k) {
  if (!k.allowed.empty()) return "one of " + JoinQuoted(k.allowed);
  switch (k.check) {
    case Check::kName:
      return "a name of 1 to 64 letters, digits, '.', '_' or '-'";
    case Check::kHostPort:
      return "\"host:port\" with a port from 1 to 65535";
    case Check::kMqttUri:
      return "a broker URI like \"tcp://host:1883\" or \"ssl://host:8883\" (schemes tcp, ssl, "
             "mqtt, mqtts)";
    case Check::kMqttFilter:
      return "an MQTT topic filter";
    case Check::kTopicPattern:
      return "an MQTT topic pattern";
    case Check::kTopicTemplate:
      return "a Kafka topic template";
    case Check::kKeyTemplate:
      return "a key template";
    case Check::kKafkaTopic:
      return "a Kafka topic name";
    case Check::kReadableFile:
      return "the path of a readable file";
    case Check::kDirectory:
      return "the path of a directory";
    case Check::kExecutable:
      return "a program";
    case Check::kEnvName:
      return "the name of an environment variable";
    case Check::kPath:
      return "a file path";
    case Check::kNone:
      break;
  }
  return "a string";
}

std::string RangePhrase(const Key& k, const char* what) {
  if (k.minimum && k.maximum)
    return fmt::format("{} from {} to {}", what, Num(*k.minimum), Num(*k.maximum));
  if (k.minimum) return fmt::format("{} of at least {}", what, Num(*k.minimum));
  if (k.maximum) return fmt::format("{} of at most {}", what, Num(*k.maximum));
  return what;
}

// " with \"name\" and \"type\"": the keys every object of a section needs.
std::string RequiredKeys(const Section& sec) {
  std::vector<std::string> names;
  for (const Key& k : sec.keys) {
    if (k.required && k.input_types.empty()) names.push_back(k.name);
  }
  if (names.empty()) return "";
  return " with " + JoinQuoted(names, " and ");
}

std::string Expected(const Key& k) {
  switch (k.type) {
    case Type::kString:
      return StringPhrase(k);
    case Type::kBool:
      return "true or false";
    case Type::kInteger:
      if (!k.allowed.empty()) {
        std::string out;
        for (size_t i = 0; i < k.allowed.size(); ++i) {
          out += (i == 0 ? "" : i + 1 == k.allowed.size() ? " or " : ", ") + k.allowed[i];
        }
        return out;
      }
      return RangePhrase(k, "an integer");
    case Type::kNumber:
      return RangePhrase(k, "a number");
    case Type::kStringList:
      if (!k.allowed.empty()) return "a list of strings, each one of " + JoinQuoted(k.allowed);
      if (k.check == Check::kHostPort) return "a list of \"host:port\" strings";
      if (k.check == Check::kMqttUri) return "a list of broker URIs like \"tcp://host:1883\"";
      return "a list of strings";
    case Type::kStringMap:
      if (k.check == Check::kReadableFile) return "an object of names to file paths";
      return "an object of names to strings, numbers or booleans";
    case Type::kObject:
      return "an object" + RequiredKeys(*k.section);
    case Type::kObjectList:
      return "a list of objects" + RequiredKeys(*k.section);
  }
  return "?";
}

// ---- ${VAR} substitution -------------------------------------------------------------------

bool ValidEnvName(std::string_view n) {
  if (n.empty() || std::isdigit(static_cast<unsigned char>(n[0]))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// ${VAR}, ${VAR:-default} (default when unset or empty), $${ for a literal "${".
bool Expand(const std::string& in, const std::string& path, LoadContext& ctx, std::string* out) {
  bool ok = true;
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '$' && in.compare(i, 3, "$${") == 0) {
      *out += "${";
      i += 2;
      continue;
    }
    if (in[i] != '$' || in.compare(i, 2, "${") != 0) {
      *out += in[i];
      continue;
    }
    size_t close = in.find('}', i + 2);
    if (close == std::string::npos) {
      ctx.Error(path,
                "unterminated \"${\" in " + Quote(in) + "; write \"$${\" for a literal \"${\"");
      return false;
    }
    std::string inner = in.substr(i + 2, close - i - 2);
    std::string name = inner;
    std::optional<std::string> fallback;
    if (size_t sep = inner.find(":-"); sep != std::string::npos) {
      name = inner.substr(0, sep);
      fallback = inner.substr(sep + 2);
    }
    if (!ValidEnvName(name)) {
      ctx.Error(path, "invalid environment variable name " + Quote(name) + " in " + Quote(in) +
                          "; expected letters, digits and '_'");
      ok = false;
    } else {
      const char* value = std::getenv(name.c_str());
      if (value != nullptr && (*value != '\0' || !fallback)) {
        *out += value;
      } else if (fallback) {
        *out += *fallback;
      } else {
        ctx.Error(path, "environment variable " + name +
                            " is not set and has no default (write ${" + name +
                            ":-default} to give one)");
        ok = false;
      }
    }
    i = close;
  }
  return ok;
}

// ---- string checks -------------------------------------------------------------------------

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

bool ValidHostPort(const std::string& s) {
  std::string host;
  std::string port;
  if (!s.empty() && s[0] == '[') {
    size_t end = s.find("]:");
    if (end == std::string::npos || end == 1) return false;
    host = s.substr(1, end - 1);
    port = s.substr(end + 2);
    if (host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos) return false;
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find_first_of(":/[] \t@") != std::string::npos) return false;
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  int p = std::stoi(port);
  return p >= 1 && p <= 65535;
}

bool ValidMqttUri(const std::string& s) {
  static const std::vector<std::string> kSchemes = {"tcp://", "ssl://", "mqtt://", "mqtts://"};
  for (const std::string& scheme : kSchemes) {
    if (!s.starts_with(scheme)) continue;
    std::string rest = s.substr(scheme.size());
    std::string hostport = rest.substr(0, rest.find('/'));
    if (hostport.empty()) return false;
    if (hostport.find(':') == std::string::npos || (hostport[0] == '[' && hostport.back() == ']')) {
      return hostport.find_first_of(" \t@") == std::string::npos;  // default port
    }
    return ValidHostPort(hostport);
  }
  return false;
}

std::vector<std::string> SplitLevels(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash == std::string::npos ? slash : slash - start));
    if (slash == std::string::npos) return out;
    start = slash + 1;
  }
}

// "" if valid, else why not.
std::string MqttFilterProblem(const std::string& f) {
  if (f.empty()) return "it is empty";
  if (f.size() > 65535) return "longer than 65535 bytes";
  std::string filter = f;
  if (f.starts_with("$share/")) {
    size_t slash = f.find('/', 7);
    std::string group = f.substr(7, slash == std::string::npos ? slash : slash - 7);
    if (group.empty() || slash == std::string::npos || slash + 1 >= f.size()) {
      return "a shared subscription is \"$share/<group>/<filter>\"";
    }
    if (group.find_first_of("+#") != std::string::npos) {
      return "the share group may not contain + or #";
    }
    filter = f.substr(slash + 1);
  }
  std::vector<std::string> levels = SplitLevels(filter);
  for (size_t i = 0; i < levels.size(); ++i) {
    const std::string& l = levels[i];
    if (l.find('#') != std::string::npos && (l != "#" || i + 1 != levels.size())) {
      return "\"#\" must be a whole level and the last one";
    }
    if (l.find('+') != std::string::npos && l != "+") return "\"+\" must be a whole level";
  }
  return "";
}

std::string TopicPatternProblem(const std::string& p) {
  if (p.empty()) return "";
  std::vector<std::string> levels = SplitLevels(p);
  for (size_t i = 0; i < levels.size(); ++i) {
    const std::string& l = levels[i];
    if (l == "#") {
      if (i + 1 != levels.size()) return "\"#\" must be the last level";
      continue;
    }
    if (l == "+") continue;
    if (l.find_first_of("+#") != std::string::npos) return "\"+\" and \"#\" must be whole levels";
    bool has_brace = l.find_first_of("{}") != std::string::npos;
    if (!has_brace) continue;
    if (l.size() < 3 || l.front() != '{' || l.back() != '}' ||
        l.find_first_of("{}", 1) != l.size() - 1) {
      return "a capture must be a whole level like {device}";
    }
    std::string name = l.substr(1, l.size() - 2);
    if (!ValidEnvName(name)) return "capture names are letters, digits and '_'";
  }
  return "";
}

// Topic and key templates; topics also need Kafka's character set once the placeholders are
// filled in. Key templates take {device} {input} {topic}, topic templates only {device} {input}:
// {topic} is the record's own Kafka topic, which a topic template builds (the forwarder fills it
// with "" there), so it is refused by name rather than documented as always empty.
std::string TemplateProblem(const std::string& t, bool kafka_topic, bool placeholders) {
  static const std::vector<std::string> kKeyPlaceholders = {"device", "input", "topic"};
  static const std::vector<std::string> kTopicPlaceholders = {"device", "input"};
  const auto& allowed = kafka_topic ? kTopicPlaceholders : kKeyPlaceholders;
  const char* allowed_text = kafka_topic ? "{device}, {input}" : "{device}, {input}, {topic}";
  if (t.empty()) return "it is empty";
  if (kafka_topic && t.size() > 249) return "Kafka topics are at most 249 characters";
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '{' && placeholders) {
      size_t close = t.find('}', i);
      std::string name = t.substr(i + 1, close == std::string::npos ? close : close - i - 1);
      if (kafka_topic && close != std::string::npos && name == "topic") {
        return std::string(
                   "{topic} is the record's own topic and cannot be used to build it; "
                   "allowed here: ") +
               allowed_text;
      }
      if (close == std::string::npos || !Contains(allowed, name)) {
        return "unknown placeholder " +
               Quote("{" + name + (close == std::string::npos ? "" : "}")) +
               "; allowed: " + allowed_text;
      }
      i = close;
      continue;
    }
    if (kafka_topic && !IsNameChar(t[i])) {
      return "character " + Quote(std::string(1, t[i])) +
             " cannot be in a Kafka topic (letters, digits, '.', '_', '-')";
    }
  }
  return "";
}

// Checks one string value; on success *stored is what goes into the struct.
bool CheckString(const Key& k, const std::string& s, const std::string& path, LoadContext& ctx,
                 std::string* stored) {
  *stored = s;
  if (!k.allowed.empty() && !Contains(k.allowed, s)) {
    std::string msg = "expected one of " + JoinQuoted(k.allowed) + ", found " + Quote(s);
    if (std::string guess = schema::Suggest(s, k.allowed); !guess.empty()) {
      msg += "; did you mean \"" + guess + "\"?";
    }
    ctx.Error(path, msg);
    return false;
  }
  std::string problem;
  switch (k.check) {
    case Check::kNone:
    case Check::kExecutable:  // checked by the exec input's finish hook (first item only)
      break;
    case Check::kName:
      if (s.empty() || s.size() > 64 || !std::all_of(s.begin(), s.end(), IsNameChar)) {
        problem = "expected " + StringPhrase(k) + ", found " + Quote(s);
      }
      break;
    case Check::kHostPort:
      if (!ValidHostPort(s)) problem = "expected " + StringPhrase(k) + ", found " + Quote(s);
      break;
    case Check::kMqttUri:
      if (s.starts_with("ws://") || s.starts_with("wss://")) {
        // The MQTT input's own client (sensors/) speaks MQTT over TCP and TLS only.
        problem =
            "MQTT over WebSockets is not supported: use tcp:// or ssl:// (mqtt://, "
            "mqtts://), found " +
            Quote(s);
      } else if (!ValidMqttUri(s)) {
        problem = "expected " + StringPhrase(k) + ", found " + Quote(s);
      }
      break;
    case Check::kMqttFilter:
      if (std::string why = MqttFilterProblem(s); !why.empty()) {
        problem = Quote(s) + " is not a valid MQTT topic filter: " + why;
      }
      break;
    case Check::kTopicPattern:
      if (std::string why = TopicPatternProblem(s); !why.empty()) {
        problem = Quote(s) + " is not a valid topic pattern: " + why;
      }
      break;
    case Check::kTopicTemplate:
      if (std::string why = TemplateProblem(s, true, true); !why.empty()) {
        problem = Quote(s) + " is not a valid topic template: " + why;
      }
      break;
    case Check::kKeyTemplate:
      if (std::string why = TemplateProblem(s, false, true); !why.empty()) {
        problem = Quote(s) + " is not a valid key template: " + why;
      }
      break;
    case Check::kKafkaTopic:
      if (std::string why = TemplateProblem(s, true, false); !why.empty()) {
        problem = Quote(s) + " is not a valid Kafka topic: " + why;
      }
      break;
    case Check::kReadableFile: {
      *stored = schema::ResolvePath(ctx, s);
      if (s.empty()) {
        problem = "expected the path of a readable file, found \"\"";
      } else if (std::string why = schema::CheckReadableFile(*stored); !why.empty()) {
        problem = "cannot read " + QuotePath(*stored) + ": " + why;
      }
      break;
    }
    case Check::kDirectory: {
      *stored = schema::ResolvePath(ctx, s);
      struct stat st {};
      if (::stat(stored->c_str(), &st) != 0) {
        problem = "cannot use " + QuotePath(*stored) + " as a directory: " + std::strerror(errno);
      } else if (!S_ISDIR(st.st_mode)) {
        problem = QuotePath(*stored) + " is not a directory";
      }
      break;
    }
    case Check::kEnvName:
      if (!ValidEnvName(s)) {
        problem = "expected " + StringPhrase(k) + ", found " + Quote(s);
      } else if (std::getenv(s.c_str()) == nullptr) {
        problem = "environment variable " + s + " is not set";
      }
      break;
    case Check::kPath:
      if (s.empty()) {
        problem = "expected a file path, found \"\"";
      } else {
        *stored = schema::ResolvePath(ctx, s);
      }
      break;
  }
  if (!problem.empty()) {
    ctx.Error(path, problem);
    return false;
  }
  return true;
}

std::string CountProblem(const Key& k, size_t n) {
  auto entries = [](double d) { return Num(d) + (d == 1 ? " entry" : " entries"); };
  if (k.minimum && double(n) < *k.minimum) {
    return fmt::format("expected at least {}, found {}", entries(*k.minimum),
                       n == 0 ? "none" : std::to_string(n));
  }
  if (k.maximum && double(n) > *k.maximum) {
    return fmt::format("expected at most {}, found {}", entries(*k.maximum), n);
  }
  return "";
}

bool ParseSection(const Json& j, const Section& sec, void* obj, const std::string& path,
                  LoadContext& ctx);

// Parses one value of `k` at `path` into obj. False when it reported an error.
bool ParseValue(const Key& k, const Json& v, void* obj, const std::string& path, LoadContext& ctx,
                std::string* string_value) {
  auto type_error = [&] {
    ctx.Error(path, "expected " + Expected(k) + ", found " + schema::DescribeValue(v));
    return false;
  };
  switch (k.type) {
    case Type::kString: {
      if (!v.is_string()) return type_error();
      std::string expanded;
      std::string stored;
      if (!Expand(v.get<std::string>(), path, ctx, &expanded)) return false;
      if (!CheckString(k, expanded, path, ctx, &stored)) return false;
      if (k.set) k.set(obj, Json(stored));
      *string_value = stored;
      return true;
    }
    case Type::kBool:
      if (!v.is_boolean()) return type_error();
      if (k.set) k.set(obj, v);
      return true;
    case Type::kInteger:
    case Type::kNumber: {
      if (!v.is_number()) return type_error();
      double d = v.get<double>();
      if (k.type == Type::kInteger && v.is_number_float() &&
          (!std::isfinite(d) || d != std::floor(d))) {
        return type_error();
      }
      bool in_range = (!k.minimum || d >= *k.minimum) && (!k.maximum || d <= *k.maximum);
      if (k.type == Type::kInteger && !k.allowed.empty()) {
        in_range = Contains(k.allowed, fmt::format("{}", static_cast<int64_t>(d)));
      }
      if (!in_range) return type_error();
      Json normalized = v;
      if (k.type == Type::kInteger) {
        normalized = d < 0 ? Json(v.get<int64_t>()) : Json(v.get<uint64_t>());
      }
      if (k.set) k.set(obj, normalized);
      return true;
    }
    case Type::kStringList: {
      if (!v.is_array()) return type_error();
      bool ok = true;
      if (std::string why = CountProblem(k, v.size()); !why.empty()) {
        ctx.Error(path, why);
        ok = false;
      }
      std::vector<std::string> items;
      for (size_t i = 0; i < v.size(); ++i) {
        std::string ipath = path + "/" + std::to_string(i);
        const Json& item = v[i];
        if (!item.is_string()) {
          std::string what = !k.allowed.empty()        ? "one of " + JoinQuoted(k.allowed)
                             : k.check != Check::kNone ? StringPhrase(k)
                                                       : "a string";
          ctx.Error(ipath, "expected " + what + ", found " + schema::DescribeValue(item));
          ok = false;
          continue;
        }
        std::string expanded;
        std::string stored;
        if (!Expand(item.get<std::string>(), ipath, ctx, &expanded) ||
            !CheckString(k, expanded, ipath, ctx, &stored)) {
          ok = false;
          continue;
        }
        items.push_back(stored);
      }
      if (ok && k.set) k.set(obj, Json(items));
      return ok;
    }
    case Type::kStringMap: {
      if (!v.is_object()) return type_error();
      bool ok = true;
      Json normalized = Json::object();
      for (const auto& [name, item] : v.items()) {
        std::string ipath = path + "/" + schema::EscapePointerToken(name);
        bool scalar_ok = k.check == Check::kNone && (item.is_number() || item.is_boolean());
        if (scalar_ok) {
          normalized[name] = item.dump();
          continue;
        }
        if (!item.is_string()) {
          ctx.Error(ipath, std::string("expected ") +
                               (k.check == Check::kNone ? "a string, number or boolean"
                                                        : StringPhrase(k).c_str()) +
                               ", found " + schema::DescribeValue(item));
          ok = false;
          continue;
        }
        std::string expanded;
        std::string stored;
        if (!Expand(item.get<std::string>(), ipath, ctx, &expanded) ||
            !CheckString(k, expanded, ipath, ctx, &stored)) {
          ok = false;
          continue;
        }
        normalized[name] = stored;
      }
      if (ok && k.set) k.set(obj, normalized);
      return ok;
    }
    case Type::kObject:
      if (!v.is_object()) return type_error();
      return ParseSection(v, *k.section, k.child(obj), path, ctx);
    case Type::kObjectList: {
      if (!v.is_array()) return type_error();
      bool ok = true;
      if (std::string why = CountProblem(k, v.size()); !why.empty()) {
        ctx.Error(path, why);
        ok = false;
      }
      for (size_t i = 0; i < v.size(); ++i) {
        std::string ipath = path + "/" + std::to_string(i);
        if (!v[i].is_object()) {
          ctx.Error(ipath, "expected an object, found " + schema::DescribeValue(v[i]));
          ok = false;
          continue;
        }
        ok = ParseSection(v[i], *k.section, k.child(obj), ipath, ctx) && ok;
      }
      return ok;
    }
  }
  return false;
}

bool ParseSection(const Json& j, const Section& sec, void* obj, const std::string& path,
                  LoadContext& ctx) {
  const size_t errors_before = ctx.errors.size();
  std::string type;
  if (!sec.discriminator.empty()) {
    auto it = j.find(sec.discriminator);
    if (it != j.end() && it->is_string() &&
        Contains(schema::InputTypes(), it->get<std::string>())) {
      type = it->get<std::string>();
      sec.prepare(obj, type);
    }
  }
  auto applies = [&](const Key& k) {
    return k.input_types.empty() || (!type.empty() && Contains(k.input_types, type));
  };
  SectionState state(&ctx, &j, path, type);
  for (const auto& [name, value] : j.items()) {
    const Key* k = schema::FindKey(sec, name);
    std::string kpath = path + "/" + schema::EscapePointerToken(name);
    if (k == nullptr) {
      std::vector<std::string> candidates;
      for (const Key& c : sec.keys) {
        if (applies(c)) candidates.push_back(c.name);
      }
      std::string msg = "unknown key " + Quote(name);
      if (std::string guess = schema::Suggest(name, candidates); !guess.empty()) {
        msg += "; did you mean \"" + guess + "\"?";
      } else if (sec.pointer == "/kafka" && name.find('.') != std::string::npos) {
        msg += "; librdkafka properties go under " + path + "/properties";
      } else {
        msg += "; allowed here: " + Join(candidates);
      }
      ctx.Error(kpath, msg);
      state.MarkBad(name);
      continue;
    }
    if (!k->input_types.empty() && type.empty()) {
      state.MarkBad(name);  // the type is missing or wrong, reported at its own path
      continue;
    }
    if (!applies(*k)) {
      const auto& types = k->input_types;
      ctx.Error(kpath, "key " + Quote(name) + " does not apply to type " + Quote(type) +
                           "; it belongs to type" + (types.size() > 1 ? "s " : " ") + Join(types));
      state.MarkBad(name);
      continue;
    }
    std::string string_value;
    if (ParseValue(*k, value, obj, kpath, ctx, &string_value)) {
      if (k->type == Type::kString) state.SetValue(name, string_value);
    } else {
      state.MarkBad(name);
    }
  }
  for (const Key& k : sec.keys) {
    if (!k.required || j.contains(k.name) || !applies(k)) continue;
    if (!k.input_types.empty() && type.empty()) continue;
    ctx.Error(path + "/" + schema::EscapePointerToken(k.name),
              "required key is missing; expected " + Expected(k));
    state.MarkBad(k.name);
  }
  if (sec.finish) sec.finish(obj, state);
  return ctx.errors.size() == errors_before;
}

// ---- reading and parsing the text ----------------------------------------------------------

// Nesting depth of [ and { outside strings: nlohmann's DOM builder and our walk recurse, so a
// hostile file ("[[[[...") is refused before either sees it.
bool DepthWithinLimit(std::string_view text, size_t* line, size_t* column) {
  int depth = 0;
  bool in_string = false;
  *line = 1;
  *column = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    ++*column;
    if (c == '\n') {
      ++*line;
      *column = 0;
    }
    if (in_string) {
      if (c == '\\') {
        ++i;
        ++*column;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// Tracks the pointer path during parsing to report duplicate keys (JSON would keep the last one
// silently, hiding a mistake such as two "kafka" sections).
class DuplicateKeyFinder {
 public:
  explicit DuplicateKeyFinder(LoadContext* ctx) : ctx_(ctx) {}

  bool operator()(int /*depth*/, nlohmann::detail::parse_event_t event, Json& parsed) {
    using E = nlohmann::detail::parse_event_t;
    switch (event) {
      case E::object_start:
        frames_.push_back({false, 0, "", {}});
        break;
      case E::array_start:
        frames_.push_back({true, 0, "", {}});
        break;
      case E::key: {
        Frame& f = frames_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) {
          ctx_->Error(Path(), "duplicate key " + Quote(f.key) +
                                  "; JSON keeps only the last one, so remove one of them");
        }
        break;
      }
      case E::object_end:
      case E::array_end:
        frames_.pop_back();
        ElementDone();
        break;
      case E::value:
        ElementDone();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_array;
    size_t index;
    std::string key;
    std::set<std::string> keys;
  };
  void ElementDone() {
    if (!frames_.empty() && frames_.back().is_array) ++frames_.back().index;
  }
  std::string Path() const {
    std::string p;
    for (const Frame& f : frames_) {
      p += "/" + (f.is_array ? std::to_string(f.index) : schema::EscapePointerToken(f.key));
    }
    return p;
  }
  LoadContext* ctx_;
  std::vector<Frame> frames_;
};

// Sorts errors into document order: an error at an existing node by the node's position, a
// missing key at the end of the object that lacks it; ties keep the order of discovery.
void SortByDocumentOrder(const Json& doc, std::vector<ConfigError>* errors) {
  std::map<std::string, std::pair<size_t, size_t>> span;
  size_t counter = 0;
  auto index = [&](auto&& self, const Json& j, const std::string& path) -> void {
    size_t start = counter++;
    if (j.is_object()) {
      for (const auto& [k, v] : j.items()) {
        self(self, v, path + "/" + schema::EscapePointerToken(k));
      }
    } else if (j.is_array()) {
      for (size_t i = 0; i < j.size(); ++i) self(self, j[i], path + "/" + std::to_string(i));
    }
    span[path] = {start, counter - 1};
  };
  index(index, doc, "");
  std::vector<std::tuple<size_t, int, size_t>> keys;
  for (size_t i = 0; i < errors->size(); ++i) {
    std::string p = (*errors)[i].path;
    auto it = span.find(p);
    if (it != span.end()) {
      keys.emplace_back(it->second.first, 0, i);
      continue;
    }
    while (it == span.end() && !p.empty()) {
      p = p.substr(0, p.rfind('/'));
      it = span.find(p);
    }
    keys.emplace_back(it == span.end() ? 0 : it->second.second, 1, i);
  }
  std::stable_sort(keys.begin(), keys.end());
  std::vector<ConfigError> sorted;
  for (const auto& [pos, tier, i] : keys) sorted.push_back((*errors)[i]);
  *errors = std::move(sorted);
}

std::string StripJsonPrefix(std::string what) {
  // "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
  if (what.starts_with("[json.exception.")) {
    size_t close = what.find("] ");
    if (close != std::string::npos) what = what.substr(close + 2);
  }
  return what;
}

LoadResult LoadText(const std::string& text, const std::string& origin,
                    const std::string& base_dir) {
  LoadResult result;
  LoadContext ctx;
  ctx.base_dir = base_dir;
  if (text.size() > kMaxFileBytes) {
    ctx.Error("", fmt::format("the config is {} bytes; at most {} (1 MiB) are accepted",
                              text.size(), kMaxFileBytes));
    result.errors = std::move(ctx.errors);
    return result;
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    ctx.Error("",
              "the config is empty; expected a JSON object with at least device_id, kafka "
              "and inputs");
    result.errors = std::move(ctx.errors);
    return result;
  }
  size_t line = 0;
  size_t column = 0;
  if (!DepthWithinLimit(text, &line, &column)) {
    ctx.Error("", fmt::format("JSON nested deeper than {} levels (at line {}, column {}); a "
                              "config needs at most 5",
                              kMaxDepth, line, column));
    result.errors = std::move(ctx.errors);
    return result;
  }
  Json doc;
  try {
    DuplicateKeyFinder finder(&ctx);
    doc = Json::parse(text, std::ref(finder));
  } catch (const Json::exception& e) {
    ctx.errors.clear();
    ctx.Error("", "not valid JSON: " + StripJsonPrefix(e.what()));
    result.errors = std::move(ctx.errors);
    return result;
  }
  if (!doc.is_object()) {
    ctx.Error("", "expected a JSON object at the top level, found " + schema::DescribeValue(doc));
    result.errors = std::move(ctx.errors);
    return result;
  }
  Config cfg;
  ParseSection(doc, schema::Root(), &cfg, "", ctx);
  SortByDocumentOrder(doc, &ctx.errors);
  result.errors = std::move(ctx.errors);
  if (result.errors.empty()) {
    cfg.source_path = origin;
    result.config = std::move(cfg);
  }
  return result;
}

}  // namespace

LoadResult LoadString(const std::string& text, const std::string& origin) {
  try {
    return LoadText(text, origin, "");
  } catch (const std::exception& e) {  // a bug, not the input's fault; still no throw
    LoadResult r;
    r.errors.push_back({"", std::string("internal error while loading the config: ") + e.what()});
    return r;
  }
}

LoadResult LoadFile(const std::string& path) {
  LoadResult r;
  try {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      r.errors.push_back(
          {"", "cannot read config file " + QuotePath(path) + ": " + std::strerror(errno)});
      return r;
    }
    if (S_ISDIR(st.st_mode)) {
      r.errors.push_back(
          {"", "cannot read config file " + QuotePath(path) + ": it is a directory"});
      return r;
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      r.errors.push_back(
          {"", "cannot read config file " + QuotePath(path) + ": " + std::strerror(errno)});
      return r;
    }
    // Read at most one byte past the limit: a huge file (or /dev/zero) is refused without
    // reading it all.
    std::string text;
    char buf[65536];
    std::string read_error;
    while (text.size() <= kMaxFileBytes) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        read_error = std::strerror(errno);
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    if (!read_error.empty()) {
      r.errors.push_back({"", "cannot read config file " + QuotePath(path) + ": " + read_error});
      return r;
    }
    if (text.size() > kMaxFileBytes) {
      r.errors.push_back({"", fmt::format("config file {} is larger than {} bytes (1 MiB); this "
                                          "is not an edgeferry config",
                                          Quote(path), kMaxFileBytes)});
      return r;
    }
    std::string dir = std::filesystem::absolute(path).parent_path().string();
    return LoadText(text, path, dir);
  } catch (const std::exception& e) {
    r.errors.push_back({"", std::string("internal error while loading the config: ") + e.what()});
    return r;
  }
}

}  // namespace edgeferry::config
