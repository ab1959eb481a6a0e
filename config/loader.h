// Internal to config/: the state the table-driven loader (loader.cc) shares with the sections'
// cross-key checks (schema.cc), and the small helpers both use to word messages.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/schema.h"

namespace edgeferry::config::schema {

// One load: collects errors, remembers what must be unique across the file.
struct LoadContext {
  std::vector<ConfigError> errors;
  std::string base_dir;                            // relative paths resolve against it; "" = cwd
  std::map<std::string, std::string> input_names;  // name -> path of its first use
  void Error(std::string path, std::string message) {
    errors.push_back({std::move(path), std::move(message)});
  }
};

// What a section's finish hook sees: the object as written and which keys parsed cleanly.
class SectionState {
 public:
  SectionState(LoadContext* ctx, const Json* json, std::string path, std::string type)
      : ctx_(ctx), json_(json), path_(std::move(path)), type_(std::move(type)) {}

  const std::string& path() const { return path_; }
  const Json& json() const { return *json_; }
  // Discriminator value ("mqtt", "exec", ...) when the section has one and it was valid.
  const std::string& type() const { return type_; }
  bool Has(std::string_view key) const;
  // Absent (the struct keeps its default) or present and valid: safe to cross-check.
  bool Good(std::string_view key) const { return !bad_.contains(std::string(key)); }
  std::string PathOf(std::string_view key) const;
  void Error(std::string path, std::string message) {
    ctx_->Error(std::move(path), std::move(message));
  }
  LoadContext& ctx() { return *ctx_; }

  // A string key's value after substitution and path resolution (also for keys the table does
  // not store in a struct, such as password_file); "" when absent or bad.
  std::string Value(const std::string& key) const {
    auto it = values_.find(key);
    return it == values_.end() ? std::string() : it->second;
  }

  void MarkBad(const std::string& key) { bad_.insert(key); }
  void SetValue(const std::string& key, std::string v) { values_[key] = std::move(v); }

 private:
  LoadContext* ctx_;
  const Json* json_;
  std::string path_;
  std::string type_;
  std::set<std::string> bad_;
  std::map<std::string, std::string> values_;
};

// RFC 6901 escaping of one reference token ("a/b" -> "a~1b").
std::string EscapePointerToken(std::string_view token);
// A value as it appears in messages: strings quoted and cut at 60 characters, lists and
// objects by kind ("a list", "an object").
std::string DescribeValue(const Json& value);
std::string Quote(std::string_view text);
// A file path in messages: quoted but never cut, since the operator needs all of it.
std::string QuotePath(std::string_view path);
// Closest candidate within a small edit distance, or "".
std::string Suggest(std::string_view wrong, const std::vector<std::string>& candidates);
// "" when `path` names a readable regular file, else the reason ("No such file or directory").
std::string CheckReadableFile(const std::string& path);
// Reads a secret file (at most 64 KiB), dropping one trailing newline. Returns false and sets
// *reason when it cannot.
bool ReadSecretFile(const std::string& path, std::string* out, std::string* reason);
std::string ResolvePath(const LoadContext& ctx, const std::string& path);

// kafka section: acks/idempotence and timing consistency, kafka.properties against our own keys
// and librdkafka, property_files read and merged into properties (kafka_checks.cc).
void FinishKafka(void* obj, SectionState& state);

}  // namespace edgeferry::config::schema
