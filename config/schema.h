// The one table of config keys (convention 7). Each Key says its type, default, range or
// allowed values, description and where the parsed value goes; the loader, the error messages,
// the published JSON Schema (JsonSchema()) and the key reference in config/README.md
// (KeyReferenceMarkdown()) are all driven by it, so they cannot disagree.
//
// Internal to config/ and its tests; components read the structs in config.h, never this.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgeferry::config::schema {

// Document order matters (errors are reported in it), so objects keep insertion order.
using Json = nlohmann::ordered_json;

enum class Type {
  kString,
  kBool,
  kInteger,
  kNumber,
  kStringList,
  kStringMap,  // object of name -> string (kafka.properties also takes numbers and booleans)
  kObject,
  kObjectList,
};

// Checks on string values (and string list items / map values) beyond type and enum. They run
// on the value after ${VAR} substitution.
enum class Check {
  kNone,
  kName,           // [A-Za-z0-9._-]{1,64}: ends up in Kafka topics, keys and headers
  kHostPort,       // "host:port" or "[v6addr]:port", port 1..65535
  kMqttUri,        // tcp:// ssl:// mqtt:// mqtts:// host[:port] (ws:// wss:// refused by name)
  kMqttFilter,     // MQTT topic filter, "$share/group/filter" allowed
  kTopicPattern,   // MQTT topic levels with {name} captures, + and # (see sensors/)
  kTopicTemplate,  // Kafka topic: [A-Za-z0-9._-] and {device} {input} (no {topic}: it is this)
  kKeyTemplate,    // any text; placeholders limited to {device} {input} {topic}
  kKafkaTopic,     // a literal Kafka topic name
  kReadableFile,   // path of a readable regular file
  kDirectory,      // path of an existing directory
  kExecutable,     // absolute path of an executable file, or a name found in $PATH
  kEnvName,        // name of an environment variable that is set
  kPath,           // a path; relative paths are resolved against the config file's directory
};

struct Section;

// Stores a checked value into the section's struct. `obj` is the struct the section fills
// (Config, BufferConfig, InputConfig, TlsConfig, MqttSubscription ...); `value` has the right
// JSON type and range, strings are already substituted and paths resolved.
using Setter = std::function<void(void* obj, const Json& value)>;
// kObject: returns the sub-struct to fill. kObjectList: appends one element, returns it.
using Child = std::function<void*(void* obj)>;

struct Key {
  std::string name{};
  Type type = Type::kString;
  std::string description{};
  Json default_value{};  // null: none (shown in docs and schema only; the structs hold defaults)
  bool required = false;
  std::optional<double> minimum{};  // numbers: value; lists: number of entries
  std::optional<double> maximum{};
  std::vector<std::string> allowed{};  // allowed values (per item for lists); integers as text
  Check check = Check::kNone;
  // Inputs only: the input types this key applies to; empty = every type.
  std::vector<std::string> input_types{};
  // kafka only: the librdkafka properties this key sets; kafka.properties may not set them.
  std::vector<std::string> librdkafka{};
  bool secret = false;               // value is never echoed in messages or Describe()
  const Section* section = nullptr;  // kObject / kObjectList
  Setter set{};
  Child child{};
};

class SectionState;  // loader.cc: what a section's cross-key validator can see

struct Section {
  std::string pointer{};  // for docs: "", "/buffer", "/inputs/*", "/inputs/*/tls"
  std::string title{};
  std::string description{};
  std::vector<Key> keys{};
  // Inputs: the key whose value selects which type-specific keys apply ("type"), and a hook
  // that prepares the struct for that type before its keys are parsed.
  std::string discriminator{};
  std::function<void(void* obj, const std::string& type)> prepare{};
  // Cross-key checks and derived values, run after the section's keys are parsed.
  std::function<void(void* obj, SectionState& state)> finish{};
};

const Section& Root();

// librdkafka properties kafka.properties and kafka.property_files may not set beyond those our
// own keys set (Key::librdkafka): they would break the forwarder's delivery tracking.
const std::vector<std::string>& ForbiddenKafkaProperties();
const Key* FindKey(const Section& section, std::string_view name);

// Every input type, in documentation order.
const std::vector<std::string>& InputTypes();

}  // namespace edgeferry::config::schema
