#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/loader.h"
#include "config/schema.h"

namespace fs = std::filesystem;
using edgeferry::config::Config;
using edgeferry::config::LoadFile;
using edgeferry::config::LoadResult;
using edgeferry::config::LoadString;
using Json = nlohmann::ordered_json;

namespace {

const std::string kSourceDir = EDGEFERRY_SOURCE_DIR;
const std::string kBadDir = CONFIG_BAD_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

std::string ErrorText(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.ToString() + "\n";
  return out;
}

// Sets (or unsets, with nullopt) an environment variable for the scope of the object.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "edgeferry-config-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The secret files industrial-gateway.json names under ${EDGEFERRY_SECRETS}.
void WriteGatewaySecrets(const TempDir& dir) {
  for (const char* pem : {"kafka-ca.pem", "mqtt-ca.pem", "mqtt-client.pem", "mqtt-client.key"}) {
    WriteFile(dir.File(pem), "-----BEGIN CERTIFICATE-----\n");
  }
  WriteFile(dir.File("kafka.pass"), "kafka-s3cret\n");
  WriteFile(dir.File("mqtt.pass"), "mqtt-s3cret\r\n");
}

const char* kMinimal = R"({
  "device_id": "gw-1",
  "kafka": {"brokers": ["127.0.0.1:9092"]},
  "inputs": [{"name": "sim", "type": "simulated"}]
})";

}  // namespace

TEST_CASE("config: every bad config gives exactly the expected errors, in document order") {
  ScopedEnv unset("EDGEFERRY_TEST_UNSET", std::nullopt);
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(kBadDir)) {
    if (entry.path().extension() == ".json") cases.push_back(entry.path());
  }
  std::sort(cases.begin(), cases.end());
  CHECK(cases.size() >= 30);
  for (const fs::path& file : cases) {
    INFO("bad config ", file.filename().string());
    fs::path sidecar = file;
    sidecar.replace_extension(".expected");
    REQUIRE(fs::exists(sidecar));
    std::string expected;
    std::istringstream lines(ReadFile(sidecar.string()));
    for (std::string line; std::getline(lines, line);) {
      if (!line.starts_with("#")) expected += ReplaceAll(line, "@DIR@", kBadDir) + "\n";
    }
    REQUIRE_FALSE(expected.empty());
    LoadResult r = LoadFile(file.string());
    CHECK_FALSE(r.config.has_value());
    CHECK(ErrorText(r) == expected);
  }
}

TEST_CASE("config: hostile inputs give one clear error and no crash") {
  TempDir dir;
  SUBCASE("100000 nested arrays") {
    WriteFile(dir.File("deep.json"), std::string(100000, '['));
    CHECK(ErrorText(LoadFile(dir.File("deep.json"))) ==
          "/: JSON nested deeper than 64 levels (at line 1, column 65); a config needs at most "
          "5\n");
    std::string balanced = std::string(100000, '[') + std::string(100000, ']');
    CHECK(ErrorText(LoadString(balanced)) ==
          "/: JSON nested deeper than 64 levels (at line 1, column 65); a config needs at most "
          "5\n");
  }
  SUBCASE("deep objects") {
    std::string deep;
    for (int i = 0; i < 5000; ++i) deep += "{\"a\":";
    CHECK(ErrorText(LoadString(deep)) ==
          "/: JSON nested deeper than 64 levels (at line 1, column 321); a config needs at most "
          "5\n");
  }
  SUBCASE("brackets inside strings do not count as nesting") {
    std::string text = R"({"device_id": ")" + std::string(200, '[') + R"(\"{{"})";
    CHECK(ErrorText(LoadString(text)) ==
          "/device_id: expected a name of 1 to 64 letters, digits, '.', '_' or '-', found \"" +
              std::string(60, '[') +
              "...\"\n/kafka: required key is missing; expected an object with \"brokers\"\n"
              "/inputs: required key is missing; expected a list of objects with \"name\" and "
              "\"type\"\n");
  }
  SUBCASE("a file over 1 MiB is refused without parsing it") {
    WriteFile(dir.File("huge.json"), "{\"device_id\": \"" + std::string(3 << 20, 'x') + "\"}");
    CHECK(ErrorText(LoadFile(dir.File("huge.json"))) ==
          "/: config file \"" + dir.File("huge.json") +
              "\" is larger than 1048576 bytes (1 MiB); this is not an edgeferry config\n");
    CHECK(ErrorText(LoadString(std::string(2 << 20, ' '))) ==
          "/: the config is 2097152 bytes; at most 1048576 (1 MiB) are accepted\n");
  }
  SUBCASE("an endless device file") {
    CHECK(ErrorText(LoadFile("/dev/zero")) ==
          "/: config file \"/dev/zero\" is larger than 1048576 bytes (1 MiB); this is not an "
          "edgeferry config\n");
  }
  SUBCASE("a missing file") {
    CHECK(ErrorText(LoadFile(dir.File("nope.json"))) == "/: cannot read config file \"" +
                                                            dir.File("nope.json") +
                                                            "\": No such file or directory\n");
  }
  SUBCASE("a directory passed as the file") {
    CHECK(ErrorText(LoadFile(dir.path())) ==
          "/: cannot read config file \"" + dir.path() + "\": it is a directory\n");
  }
  SUBCASE("empty and whitespace-only files") {
    CHECK(ErrorText(LoadFile("/dev/null")) ==
          "/: the config is empty; expected a JSON object with at least device_id, kafka and "
          "inputs\n");
    CHECK(ErrorText(LoadString(" \n\t\n")) ==
          "/: the config is empty; expected a JSON object with at least device_id, kafka and "
          "inputs\n");
  }
  SUBCASE("invalid UTF-8 and binary garbage") {
    CHECK(ErrorText(LoadString(std::string("{\"device_id\": \"\xff\xfe\"}")))
              .starts_with("/: not valid JSON: parse error at line 1, column 16: syntax error "
                           "while parsing value - "
                           "invalid string: ill-formed UTF-8 byte"));
    std::string binary;
    for (int i = 0; i < 4096; ++i) binary += static_cast<char>(i * 37 % 256);
    LoadResult r = LoadString(binary);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message.starts_with("not valid JSON: "));
  }
}

TEST_CASE("config: every truncation and byte flip of an example fails cleanly or loads") {
  ScopedEnv secrets("EDGEFERRY_SECRETS", std::nullopt);
  const std::string text = ReadFile(kSourceDir + "/config/examples/demo.json");
  REQUIRE(LoadString(text).errors.empty());
  size_t failed = 0;
  for (size_t n = 0; n < text.size(); ++n) {
    LoadResult r = LoadString(text.substr(0, n));
    failed += r.errors.empty() ? 0 : 1;
    CHECK(r.config.has_value() == r.errors.empty());
  }
  // Every prefix that cuts the object before its closing brace fails; the rest (trailing
  // newline) is the whole config.
  CHECK(failed == text.rfind('}') + 1);
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string mutated = text;
    mutated[rng() % mutated.size()] = static_cast<char>(rng() % 256);
    LoadResult r = LoadString(mutated);
    CHECK(r.config.has_value() == r.errors.empty());
    for (const auto& e : r.errors) CHECK_FALSE(e.message.empty());
  }
}

TEST_CASE("config: the example configs load") {
  TempDir state;
  TempDir secrets;
  WriteGatewaySecrets(secrets);
  ScopedEnv s1("EDGEFERRY_SECRETS", secrets.path());
  ScopedEnv s2("EDGEFERRY_STATE_DIR", state.path());
  ScopedEnv s3("EDGEFERRY_DEVICE_ID", std::nullopt);
  ScopedEnv s4("EDGEFERRY_MQTT", std::nullopt);
  ScopedEnv s5("EDGEFERRY_MQTT_HOST", std::nullopt);
  ScopedEnv s6("EDGEFERRY_KAFKA_USER", std::nullopt);

  SUBCASE("demo: defaults of the ${VAR:-default}s, then from the environment") {
    ScopedEnv kafka("EDGEFERRY_KAFKA", std::nullopt);
    LoadResult r = LoadFile(kSourceDir + "/config/examples/demo.json");
    CHECK(ErrorText(r) == "");
    REQUIRE(r.config);
    const Config& c = *r.config;
    CHECK(c.device_id == "demo-01");
    CHECK(c.buffer.path == state.path() + "/buffer.db");
    CHECK(c.kafka.brokers == std::vector<std::string>{"127.0.0.1:9092"});
    REQUIRE(c.inputs.size() == 3);
    CHECK(c.inputs[0].type == "simulated");
    REQUIRE(c.inputs[0].sensor);
    CHECK(c.inputs[0].sensor->kind == "simulated");
    CHECK(c.inputs[0].sensor->sensors == 4);
    CHECK(c.inputs[0].sensor->rate_hz == 2.0);
    CHECK_FALSE(c.inputs[0].mqtt);
    REQUIRE(c.inputs[2].mqtt);
    CHECK(c.inputs[2].mqtt->uris == std::vector<std::string>{"tcp://127.0.0.1:1883"});
    CHECK(c.inputs[2].mqtt->client_id == "edgeferry-demo-01-mqtt");
    CHECK_FALSE(c.inputs[2].mqtt->tls);
    CHECK(c.inputs[2].mqtt->subscriptions ==
          std::vector<edgeferry::config::MqttSubscription>{{"demo/#", 1}});
    CHECK(c.metrics.enabled);
    CHECK(c.heartbeat.interval_s == 30);

    ScopedEnv kafka2("EDGEFERRY_KAFKA", "127.0.0.1:19092");
    ScopedEnv mqtt("EDGEFERRY_MQTT", "tcp://127.0.0.1:11883");
    LoadResult r2 = LoadFile(kSourceDir + "/config/examples/demo.json");
    REQUIRE(r2.config);
    CHECK(r2.config->kafka.brokers == std::vector<std::string>{"127.0.0.1:19092"});
    CHECK(r2.config->inputs[2].mqtt->uris == std::vector<std::string>{"tcp://127.0.0.1:11883"});
  }
  SUBCASE("raspberry-pi") {
    LoadResult r = LoadFile(kSourceDir + "/config/examples/raspberry-pi.json");
    CHECK(ErrorText(r) == "");
    REQUIRE(r.config);
    CHECK(r.config->buffer.sync == edgeferry::config::SyncMode::kNormal);
    CHECK(r.config->inputs[0].sensor->kind == "thermal");
    CHECK(r.config->inputs[0].sensor->match ==
          std::vector<std::string>{"cpu-thermal", "cpu_thermal"});
    CHECK(r.config->inputs[1].sensor->kind == "hwmon");
    CHECK(r.config->inputs[1].sensor->sysfs_root == "/sys");
    CHECK(r.config->inputs[3].mqtt->version == 5);
  }
  SUBCASE("industrial-gateway: secrets from files, TLS, SASL") {
    LoadResult r = LoadFile(kSourceDir + "/config/examples/industrial-gateway.json");
    CHECK(ErrorText(r) == "");
    REQUIRE(r.config);
    const Config& c = *r.config;
    CHECK(c.kafka.properties.at("sasl.password") == "kafka-s3cret");
    CHECK(c.kafka.properties.at("security.protocol") == "SASL_SSL");
    CHECK(c.kafka.properties.at("ssl.ca.location") == secrets.File("kafka-ca.pem"));
    CHECK(c.kafka.property_files.at("sasl.password") == secrets.File("kafka.pass"));
    CHECK(c.buffer.when_full == edgeferry::config::WhenFull::kBlock);
    const auto& m = *c.inputs[0].mqtt;
    CHECK(m.password == "mqtt-s3cret");
    CHECK(m.connections == 4);
    CHECK(m.subscriptions.size() == 7);
    REQUIRE(m.tls);
    CHECK(m.tls->ca_file == secrets.File("mqtt-ca.pem"));
    CHECK(m.tls->key_file == secrets.File("mqtt-client.key"));
    std::string summary = edgeferry::config::Describe(c);
    CHECK(summary.find("s3cret") == std::string::npos);
    CHECK(summary.find("plc (mqtt): ssl://127.0.0.1:8883") != std::string::npos);
  }
  SUBCASE("industrial-gateway without its secret files says which are missing") {
    ScopedEnv none("EDGEFERRY_SECRETS", secrets.path() + "/missing");
    std::string d = secrets.path() + "/missing/";
    CHECK(ErrorText(LoadFile(kSourceDir + "/config/examples/industrial-gateway.json")) ==
          "/kafka/properties/ssl.ca.location: cannot read \"" + d +
              "kafka-ca.pem\": No such file or directory\n"
              "/kafka/property_files/sasl.password: cannot read \"" +
              d +
              "kafka.pass\": No such file or directory\n"
              "/inputs/0/password_file: cannot read \"" +
              d +
              "mqtt.pass\": No such file or directory\n"
              "/inputs/0/tls/ca_file: cannot read \"" +
              d +
              "mqtt-ca.pem\": No such file or directory\n"
              "/inputs/0/tls/cert_file: cannot read \"" +
              d +
              "mqtt-client.pem\": No such file or directory\n"
              "/inputs/0/tls/key_file: cannot read \"" +
              d + "mqtt-client.key\": No such file or directory\n");
  }
}

// Replaces every value of every example, one at a time, with null and with an object holding an
// unknown key: the error must be at that value's own pointer (or inside it), whatever the key.
TEST_CASE("config: a wrong value anywhere in an example is reported at its own pointer") {
  TempDir state;
  TempDir secrets;
  WriteGatewaySecrets(secrets);
  ScopedEnv s1("EDGEFERRY_SECRETS", secrets.path());
  ScopedEnv s2("EDGEFERRY_STATE_DIR", state.path());
  size_t checked = 0;
  for (const char* name : {"demo.json", "raspberry-pi.json", "industrial-gateway.json"}) {
    const Json doc = Json::parse(ReadFile(kSourceDir + "/config/examples/" + name));
    REQUIRE(LoadString(doc.dump()).errors.empty());
    std::vector<std::string> pointers;
    auto walk = [&](auto&& self, const Json& j, const std::string& path) -> void {
      if (!path.empty()) pointers.push_back(path);
      if (j.is_object()) {
        for (const auto& [k, v] : j.items()) {
          self(self, v, path + "/" + edgeferry::config::schema::EscapePointerToken(k));
        }
      } else if (j.is_array()) {
        for (size_t i = 0; i < j.size(); ++i) self(self, j[i], path + "/" + std::to_string(i));
      }
    };
    walk(walk, doc, "");
    for (const std::string& p : pointers) {
      for (const Json& replacement : {Json(nullptr), Json{{"zz_unknown", 1}}}) {
        INFO(name, " ", p, " = ", replacement.dump());
        Json mutated = doc;
        mutated[Json::json_pointer(p)] = replacement;
        LoadResult r = LoadString(mutated.dump());
        CHECK_FALSE(r.config.has_value());
        bool at_pointer = std::any_of(r.errors.begin(), r.errors.end(), [&](const auto& e) {
          return e.path == p || e.path.starts_with(p + "/");
        });
        CHECK(at_pointer);
        ++checked;
      }
    }
  }
  CHECK(checked > 300);
}

TEST_CASE("config: environment variable substitution") {
  ScopedEnv a("EF_TEST_A", "alpha");
  ScopedEnv empty("EF_TEST_EMPTY", "");
  ScopedEnv unset("EF_TEST_UNSET", std::nullopt);
  auto device = [](const std::string& value) {
    Json j = Json::parse(kMinimal);
    j["device_id"] = value;
    LoadResult r = LoadString(j.dump());
    return r.config ? r.config->device_id : "ERROR " + ErrorText(r);
  };
  CHECK(device("${EF_TEST_A}") == "alpha");
  CHECK(device("gw-${EF_TEST_A}-${EF_TEST_A}") == "gw-alpha-alpha");
  CHECK(device("${EF_TEST_UNSET:-fallback}") == "fallback");
  CHECK(device("${EF_TEST_EMPTY:-fallback}") == "fallback");  // like the shell's :-
  CHECK(device("${EF_TEST_A:-fallback}") == "alpha");
  CHECK(device("x${EF_TEST_EMPTY}y") == "xy");
  CHECK(device("${EF_TEST_UNSET}") ==
        "ERROR /device_id: environment variable EF_TEST_UNSET is not set and has no default "
        "(write ${EF_TEST_UNSET:-default} to give one)\n");
  // $${ is a literal "${", which then fails the name check with the text as written.
  CHECK(device("$${EF_TEST_A}") ==
        "ERROR /device_id: expected a name of 1 to 64 letters, digits, '.', '_' or '-', found "
        "\"${EF_TEST_A}\"\n");
}

TEST_CASE(
    "config: secrets from password_file and password_env, relative paths from the config dir") {
  TempDir dir;
  WriteFile(dir.File("mqtt.pass"), "pw-from-file\n");
  WriteFile(dir.File("key.pass"), "keypass");
  WriteFile(dir.File("ca.pem"), "x");
  ScopedEnv env("EF_TEST_MQTT_PASSWORD", "pw-from-env");
  Json j = Json::parse(kMinimal);
  j["buffer"] = {{"path", "state/buffer.db"}};
  j["inputs"] = Json::array({{{"name", "a"},
                              {"type", "mqtt"},
                              {"uris", {"mqtts://127.0.0.1:8883"}},
                              {"username", "u"},
                              {"password_file", "mqtt.pass"},
                              {"tls", {{"ca_file", "ca.pem"}, {"key_password_file", "key.pass"}}},
                              {"subscriptions", {{{"filter", "a/#"}}}}},
                             {{"name", "b"},
                              {"type", "mqtt"},
                              {"uris", {"ssl://127.0.0.1:8883"}},
                              {"username", "u"},
                              {"password_env", "EF_TEST_MQTT_PASSWORD"},
                              {"subscriptions", {{{"filter", "b/#"}, {"qos", 2}}}}}});
  WriteFile(dir.File("edgeferry.json"), j.dump(2));
  LoadResult r = LoadFile(dir.File("edgeferry.json"));
  CHECK(ErrorText(r) == "");
  REQUIRE(r.config);
  CHECK(r.config->buffer.path == dir.File("state/buffer.db"));
  const auto& a = *r.config->inputs[0].mqtt;
  CHECK(a.password == "pw-from-file");
  REQUIRE(a.tls);
  CHECK(a.tls->ca_file == dir.File("ca.pem"));
  CHECK(a.tls->key_password == "keypass");
  const auto& b = *r.config->inputs[1].mqtt;
  CHECK(b.password == "pw-from-env");
  REQUIRE(b.tls);  // an ssl:// URI without a tls object gets default TLS settings
  CHECK(b.tls->ca_file.empty());
  CHECK(b.tls->verify_hostname);
  CHECK(b.subscriptions[0].qos == 2);
}

// Builds, from the table, a config that spells out every documented default, and checks that it
// loads to the same structs as a config that leaves them out: the docs and schema cannot claim a
// default the code does not have.
TEST_CASE("config: documented defaults are the struct defaults") {
  using edgeferry::config::schema::Key;
  using edgeferry::config::schema::Root;
  using edgeferry::config::schema::Section;
  using edgeferry::config::schema::Type;
  auto defaults = [](const Section& sec, const std::string& type) {
    Json j = Json::object();
    for (const Key& k : sec.keys) {
      if (k.default_value.is_null() || k.type == Type::kObject || k.name == "client_id") continue;
      if (!k.input_types.empty() &&
          std::find(k.input_types.begin(), k.input_types.end(), type) == k.input_types.end()) {
        continue;
      }
      j[k.name] = k.default_value;
    }
    return j;
  };
  const Section& root = Root();
  auto section = [&](const char* name) {
    return edgeferry::config::schema::FindKey(root, name)->section;
  };
  Json minimal = Json::parse(kMinimal);
  minimal["inputs"] = Json::array();
  Json full = defaults(root, "");
  full["device_id"] = "gw-1";
  for (const char* s : {"buffer", "kafka", "metrics", "heartbeat"})
    full[s] = defaults(*section(s), "");
  full["kafka"]["brokers"] = {"127.0.0.1:9092"};
  full["inputs"] = Json::array();
  for (const std::string& type : edgeferry::config::schema::InputTypes()) {
    Json required = {{"name", "in-" + type}, {"type", type}};
    if (type == "mqtt") {
      required["uris"] = {"tcp://127.0.0.1:1883"};
      required["subscriptions"] = {{{"filter", "a/#"}}};
    }
    if (type == "exec") required["command"] = {"/bin/sh"};
    minimal["inputs"].push_back(required);
    Json in = defaults(*section("inputs"), type);
    for (const auto& [k, v] : required.items()) in[k] = v;
    if (type == "mqtt") in["subscriptions"][0]["qos"] = 1;  // the subscription's own default
    full["inputs"].push_back(in);
  }
  LoadResult a = LoadString(minimal.dump());
  LoadResult b = LoadString(full.dump());
  CHECK(ErrorText(a) == "");
  CHECK(ErrorText(b) == "");
  REQUIRE(a.config);
  REQUIRE(b.config);
  CHECK(a.config->buffer == b.config->buffer);
  CHECK(a.config->kafka == b.config->kafka);
  CHECK(a.config->metrics == b.config->metrics);
  CHECK(a.config->heartbeat == b.config->heartbeat);
  CHECK(a.config->log_level == b.config->log_level);
  REQUIRE(a.config->inputs.size() == b.config->inputs.size());
  for (size_t i = 0; i < a.config->inputs.size(); ++i) {
    INFO("input type ", a.config->inputs[i].type);
    CHECK(a.config->inputs[i] == b.config->inputs[i]);
  }
  // And the loaded defaults are the plain struct defaults.
  CHECK(a.config->buffer == edgeferry::config::BufferConfig{});
  edgeferry::config::KafkaConfig k;
  k.brokers = {"127.0.0.1:9092"};
  CHECK(a.config->kafka == k);
}

TEST_CASE("config: the committed JSON Schema is the generated one") {
  CHECK(ReadFile(kSourceDir + "/config/edgeferry.schema.json") == edgeferry::config::JsonSchema());
}

TEST_CASE("config: config/README.md documents every key: its reference is the generated one") {
  const std::string readme = ReadFile(kSourceDir + "/config/README.md");
  const std::string begin = "<!-- BEGIN GENERATED KEY REFERENCE (edgeferry_schema_gen) -->\n";
  const std::string end = "\n<!-- END GENERATED KEY REFERENCE -->";
  size_t b = readme.find(begin);
  size_t e = readme.find(end);
  REQUIRE(b != std::string::npos);
  REQUIRE(e != std::string::npos);
  CHECK(readme.substr(b + begin.size(), e - b - begin.size()) ==
        edgeferry::config::KeyReferenceMarkdown());
  size_t keys = 0;
  auto walk = [&](auto&& self, const edgeferry::config::schema::Section& s) -> void {
    for (const auto& k : s.keys) {
      ++keys;
      INFO("key ", s.pointer, "/", k.name);
      CHECK(readme.find("| `" + k.name + "` |") != std::string::npos);
      if (k.section) self(self, *k.section);
    }
  };
  walk(walk, edgeferry::config::schema::Root());
  CHECK(keys > 60);
}
