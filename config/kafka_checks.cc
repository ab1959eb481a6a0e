// Cross-key checks of the kafka section. Pass-through properties are checked against our own
// keys (a property that one of them sets is an error naming both, never a silent override),
// against the ones the forwarder cannot allow (ForbiddenKafkaProperties) and against librdkafka
// itself, so `check-config` finds a misspelt property, not the first connect. These are the only
// checks of the kafka section: the forwarder (a layer above) relies on them and only reports
// what librdkafka says when it builds the producer's configuration.
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/loader.h"
#include "config/schema.h"

namespace edgeferry::config::schema {
namespace {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

// Every property name librdkafka knows, for "did you mean" (from its own property table).
const std::vector<std::string>& LibrdkafkaPropertyNames() {
  static const std::vector<std::string>* names = [] {
    auto* out = new std::vector<std::string>();
    char* buf = nullptr;
    size_t len = 0;
    FILE* mem = open_memstream(&buf, &len);
    if (mem == nullptr) return out;
    rd_kafka_conf_properties_show(mem);
    std::fclose(mem);
    std::string table(buf, len);
    std::free(buf);
    size_t pos = 0;
    while (pos < table.size()) {
      size_t eol = table.find('\n', pos);
      std::string line = table.substr(pos, eol == std::string::npos ? eol : eol - pos);
      pos = eol == std::string::npos ? table.size() : eol + 1;
      size_t bar = line.find('|');
      if (bar == std::string::npos) continue;
      std::string name = line.substr(0, bar);
      while (!name.empty() && name.back() == ' ') name.pop_back();
      if (name.empty() ||
          name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._") != std::string::npos) {
        continue;
      }
      out->push_back(name);
    }
    return out;
  }();
  return *names;
}

// "" when librdkafka accepts name=value, else why not.
std::string LibrdkafkaProblem(const std::string& name, const std::string& value, bool secret) {
  ConfPtr conf(rd_kafka_conf_new());
  char err[512] = {0};
  rd_kafka_conf_res_t res =
      rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), err, sizeof err);
  if (res == RD_KAFKA_CONF_OK) return "";
  if (res == RD_KAFKA_CONF_UNKNOWN) {
    std::string msg = "librdkafka has no property " + Quote(name);
    if (std::string guess = Suggest(name, LibrdkafkaPropertyNames()); !guess.empty()) {
      msg += "; did you mean \"" + guess + "\"?";
    }
    return msg;
  }
  if (secret) return "librdkafka rejects the value read for " + Quote(name);
  return "librdkafka rejects " + Quote(value) + ": " + std::string(err);
}

// Properties naming files that librdkafka opens only when it connects.
bool IsFileProperty(const std::string& name) {
  static const std::set<std::string> kFiles = {"ssl.ca.location",  "ssl.certificate.location",
                                               "ssl.key.location", "ssl.keystore.location",
                                               "ssl.crl.location", "sasl.kerberos.keytab"};
  return kFiles.contains(name);
}

}  // namespace

void FinishKafka(void* obj, SectionState& s) {
  auto& k = *static_cast<KafkaConfig*>(obj);
  if (s.Good("acks") && s.Good("idempotence") && k.idempotence && k.acks != "all") {
    s.Error(s.PathOf("acks"), "acks " + Quote(k.acks) +
                                  " needs idempotence false; the idempotent producer requires "
                                  "acks \"all\"");
  }
  if (s.Good("backoff_initial_ms") && s.Good("backoff_max_ms") &&
      k.backoff_max_ms < k.backoff_initial_ms) {
    s.Error(s.PathOf(s.Has("backoff_max_ms") ? "backoff_max_ms" : "backoff_initial_ms"),
            "backoff_max_ms (" + std::to_string(k.backoff_max_ms) +
                ") must be at least backoff_initial_ms (" + std::to_string(k.backoff_initial_ms) +
                ")");
  }
  if (s.Good("message_timeout_ms") && s.Good("linger_ms") && k.message_timeout_ms != 0 &&
      k.message_timeout_ms <= k.linger_ms) {
    s.Error(s.PathOf(s.Has("message_timeout_ms") ? "message_timeout_ms" : "linger_ms"),
            "message_timeout_ms (" + std::to_string(k.message_timeout_ms) +
                ") must be greater than linger_ms (" + std::to_string(k.linger_ms) + ") or 0");
  }

  // librdkafka property -> our key that sets it, from the table.
  std::map<std::string, std::string> owned;
  for (const Key& key : FindKey(Root(), "kafka")->section->keys) {
    for (const std::string& p : key.librdkafka) owned[p] = key.name;
  }
  auto forbidden = [](const std::string& name) {
    const auto& f = ForbiddenKafkaProperties();
    return std::find(f.begin(), f.end(), name) != f.end();
  };
  constexpr const char* kForbiddenWhy = "not supported (the forwarder owns delivery tracking)";
  auto conflict = [&](const std::string& name) {
    const std::string& ours = owned.at(name);
    return "conflicts with " + s.PathOf(ours) + ", which sets librdkafka's \"" + name + "\"; set " +
           s.PathOf(ours) + " instead";
  };

  if (s.Has("properties") && s.Good("properties")) {
    for (const auto& [name, raw] : s.json()["properties"].items()) {
      (void)raw;
      std::string path = s.PathOf("properties") + "/" + EscapePointerToken(name);
      if (owned.contains(name)) {
        s.Error(path, conflict(name));
        continue;
      }
      if (forbidden(name)) {
        s.Error(path, kForbiddenWhy);
        continue;
      }
      std::string& value = k.properties[name];
      if (IsFileProperty(name) && !(name == "ssl.ca.location" && value == "probe")) {
        value = ResolvePath(s.ctx(), value);
        std::string why = CheckReadableFile(value);
        if (name == "ssl.ca.location" && why == "it is a directory") why.clear();  // CA dir
        if (!why.empty()) {
          s.Error(path, "cannot read " + QuotePath(value) + ": " + why);
          continue;
        }
      }
      // Secrets written inline (against advice) are still not echoed back.
      bool secret =
          name.find("password") != std::string::npos || name.find("secret") != std::string::npos;
      if (std::string why = LibrdkafkaProblem(name, value, secret); !why.empty()) {
        s.Error(path, why);
      }
    }
  }
  if (s.Has("property_files") && s.Good("property_files")) {
    for (const auto& [name, raw] : s.json()["property_files"].items()) {
      (void)raw;
      std::string path = s.PathOf("property_files") + "/" + EscapePointerToken(name);
      if (owned.contains(name)) {
        s.Error(path, conflict(name));
        continue;
      }
      if (forbidden(name)) {
        s.Error(path, kForbiddenWhy);
        continue;
      }
      if (s.json().contains("properties") && s.json()["properties"].is_object() &&
          s.json()["properties"].contains(name)) {
        s.Error(path, "\"" + name + "\" is also set in " + s.PathOf("properties") + "/" +
                          EscapePointerToken(name) + "; set it in one place");
        continue;
      }
      const std::string& file = k.property_files.at(name);  // already resolved and readable
      std::string secret;
      std::string why;
      if (!ReadSecretFile(file, &secret, &why)) {
        s.Error(path, "cannot read " + QuotePath(file) + ": " + why);
        continue;
      }
      if (std::string problem = LibrdkafkaProblem(name, secret, true); !problem.empty()) {
        s.Error(path, problem);
        continue;
      }
      k.properties[name] = std::move(secret);
    }
  }
}

}  // namespace edgeferry::config::schema
