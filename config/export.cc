// The table turned into the published JSON Schema (draft-07, what editors support best) and the
// key reference of config/README.md. Both are committed; tests compare them with these outputs.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "config/config.h"
#include "config/schema.h"

namespace edgeferry::config {
namespace {

using schema::Check;
using schema::Json;
using schema::Key;
using schema::Section;
using schema::Type;

// Strings that hold ${VAR} are checked after substitution, so the schema lets them through
// wherever it checks a format.
constexpr const char* kVarAlt = "\\$\\{|";

Json Number(double d) {
  if (d == std::floor(d) && std::fabs(d) < 9.0e15) return Json(static_cast<int64_t>(d));
  return Json(d);
}

void AddStringConstraints(const Key& k, Json* s) {
  if (!k.allowed.empty()) {
    (*s)["enum"] = k.allowed;
    return;
  }
  switch (k.check) {
    case Check::kName:
      (*s)["pattern"] = std::string(kVarAlt) + "^[A-Za-z0-9._-]{1,64}$";
      break;
    case Check::kHostPort:
      (*s)["pattern"] =
          std::string(kVarAlt) + "^(\\[[0-9A-Fa-f:.]+\\]|[^\\s:/\\[\\]@]+):[0-9]{1,5}$";
      break;
    case Check::kMqttUri:
      (*s)["pattern"] = std::string(kVarAlt) + "^(tcp|ssl|mqtt|mqtts)://[^\\s/@]+(/.*)?$";
      break;
    case Check::kTopicTemplate:
      (*s)["pattern"] = std::string(kVarAlt) + "^([A-Za-z0-9._-]|\\{(device|input)\\})+$";
      break;
    case Check::kKeyTemplate:
      (*s)["pattern"] = std::string(kVarAlt) + "^([^{]|\\{(device|input|topic)\\})+$";
      break;
    case Check::kKafkaTopic:
      (*s)["pattern"] = std::string(kVarAlt) + "^[A-Za-z0-9._-]{1,249}$";
      break;
    case Check::kEnvName:
      (*s)["pattern"] = "^[A-Za-z_][A-Za-z0-9_]*$";
      break;
    case Check::kMqttFilter:
    case Check::kReadableFile:
    case Check::kDirectory:
    case Check::kExecutable:
    case Check::kPath:
      (*s)["minLength"] = 1;
      break;
    case Check::kTopicPattern:
    case Check::kNone:
      break;
  }
}

Json SectionSchema(const Section& sec);

Json KeySchema(const Key& k) {
  Json s = Json::object();
  s["description"] = k.description;
  switch (k.type) {
    case Type::kString:
      s["type"] = "string";
      AddStringConstraints(k, &s);
      break;
    case Type::kBool:
      s["type"] = "boolean";
      break;
    case Type::kInteger:
    case Type::kNumber:
      s["type"] = k.type == Type::kInteger ? "integer" : "number";
      if (!k.allowed.empty()) {
        Json values = Json::array();
        for (const std::string& a : k.allowed) values.push_back(std::stoll(a));
        s["enum"] = values;
      }
      if (k.minimum) s["minimum"] = Number(*k.minimum);
      if (k.maximum) s["maximum"] = Number(*k.maximum);
      break;
    case Type::kStringList: {
      s["type"] = "array";
      Json items = {{"type", "string"}};
      AddStringConstraints(k, &items);
      s["items"] = items;
      if (k.minimum) s["minItems"] = Number(*k.minimum);
      if (k.maximum) s["maxItems"] = Number(*k.maximum);
      break;
    }
    case Type::kStringMap:
      s["type"] = "object";
      if (k.check == Check::kNone) {
        s["additionalProperties"] = {{"type", Json::array({"string", "number", "boolean"})}};
      } else {
        Json items = {{"type", "string"}};
        AddStringConstraints(k, &items);
        s["additionalProperties"] = items;
      }
      break;
    case Type::kObject: {
      return SectionSchema(*k.section);  // the section's description says more than the key's
    }
    case Type::kObjectList:
      s["type"] = "array";
      s["items"] = SectionSchema(*k.section);
      if (k.minimum) s["minItems"] = Number(*k.minimum);
      if (k.maximum) s["maxItems"] = Number(*k.maximum);
      break;
  }
  if (!k.default_value.is_null()) s["default"] = k.default_value;
  return s;
}

Json SectionSchema(const Section& sec) {
  Json s = Json::object();
  s["type"] = "object";
  s["description"] = sec.description;
  Json props = Json::object();
  Json required = Json::array();
  for (const Key& k : sec.keys) {
    props[k.name] = KeySchema(k);
    if (k.required && k.input_types.empty()) required.push_back(k.name);
  }
  // kafka: pass-through properties may not set what our own keys set.
  Json owned = Json::array();
  for (const Key& k : sec.keys) {
    for (const std::string& p : k.librdkafka) owned.push_back(p);
  }
  if (!owned.empty()) {
    for (const std::string& p : schema::ForbiddenKafkaProperties()) owned.push_back(p);
    for (const Key& k : sec.keys) {
      if (k.type == Type::kStringMap) props[k.name]["propertyNames"] = {{"not", {{"enum", owned}}}};
    }
  }
  s["properties"] = props;
  if (!required.empty()) s["required"] = required;
  s["additionalProperties"] = false;
  if (!sec.discriminator.empty()) {
    // The type decides which keys apply: one if/then per type restricting the key names and
    // adding that type's required keys.
    Json all_of = Json::array();
    for (const std::string& type : schema::InputTypes()) {
      Json names = Json::array();
      Json type_required = Json::array();
      for (const Key& k : sec.keys) {
        bool applies =
            k.input_types.empty() ||
            std::find(k.input_types.begin(), k.input_types.end(), type) != k.input_types.end();
        if (!applies) continue;
        names.push_back(k.name);
        if (k.required && !k.input_types.empty()) type_required.push_back(k.name);
      }
      Json then = {{"propertyNames", {{"enum", names}}}};
      if (!type_required.empty()) then["required"] = type_required;
      all_of.push_back({{"if",
                         {{"properties", {{sec.discriminator, {{"const", type}}}}},
                          {"required", Json::array({sec.discriminator})}}},
                        {"then", then}});
    }
    s["allOf"] = all_of;
  }
  return s;
}

// ---- markdown ------------------------------------------------------------------------------

std::string TypeName(const Key& k) {
  switch (k.type) {
    case Type::kString:
      return "string";
    case Type::kBool:
      return "boolean";
    case Type::kInteger:
      return "integer";
    case Type::kNumber:
      return "number";
    case Type::kStringList:
      return "list of strings";
    case Type::kStringMap:
      return k.check == Check::kNone ? "object: name to value" : "object: name to file";
    case Type::kObject:
      return "object";
    case Type::kObjectList:
      return "list of objects";
  }
  return "?";
}

std::string Allowed(const Key& k) {
  auto num = [](double d) { return fmt::format("{}", d); };
  std::string out;
  if (!k.allowed.empty()) {
    for (size_t i = 0; i < k.allowed.size(); ++i) {
      out += (i ? ", " : "") + std::string("`") +
             (k.type == Type::kInteger ? k.allowed[i] : "\"" + k.allowed[i] + "\"") + "`";
    }
    return out;
  }
  bool list = k.type == Type::kStringList || k.type == Type::kObjectList;
  if (k.minimum && k.maximum) {
    out = num(*k.minimum) + " to " + num(*k.maximum);
  } else if (k.minimum) {
    out = "at least " + num(*k.minimum);
  } else if (k.maximum) {
    out = "at most " + num(*k.maximum);
  }
  if (list && !out.empty()) out += " entries";
  std::string check;
  switch (k.check) {
    case Check::kName:
      check = "name: `A-Z a-z 0-9 . _ -`, 1 to 64";
      break;
    case Check::kHostPort:
      check = "`host:port`";
      break;
    case Check::kMqttUri:
      check = "`tcp://` `ssl://` `mqtt://` `mqtts://` URI";
      break;
    case Check::kMqttFilter:
      check = "MQTT topic filter";
      break;
    case Check::kTopicPattern:
      check = "topic levels, `+`, `#`, `{name}`";
      break;
    case Check::kTopicTemplate:
      check = "Kafka topic with `{device}` `{input}`";
      break;
    case Check::kKeyTemplate:
      check = "text with `{device}` `{input}` `{topic}`";
      break;
    case Check::kKafkaTopic:
      check = "Kafka topic name";
      break;
    case Check::kReadableFile:
      check = "readable file";
      break;
    case Check::kDirectory:
      check = "existing directory";
      break;
    case Check::kExecutable:
      check = "executable";
      break;
    case Check::kEnvName:
      check = "set environment variable";
      break;
    case Check::kPath:
      check = "path";
      break;
    case Check::kNone:
      break;
  }
  if (!check.empty()) out += (out.empty() ? "" : "; ") + check;
  return out;
}

std::string Cell(std::string s) {
  std::string out;
  for (char c : s) out += (c == '|') ? std::string("\\|") : std::string(1, c);
  return out;
}

void SectionMarkdown(const Section& sec, std::string* out) {
  bool inputs = !sec.discriminator.empty();
  std::string heading = sec.pointer.empty() ? "Top level" : "`" + sec.title + "`";
  *out += "### " + heading + "\n\n" + sec.description + "\n\n";
  *out += inputs ? "| Key | Types | Type | Default | Allowed | Description |\n"
                   "|---|---|---|---|---|---|\n"
                 : "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n";
  for (const Key& k : sec.keys) {
    std::string def = k.required                  ? "**required**"
                      : k.default_value.is_null() ? ""
                                                  : "`" + k.default_value.dump() + "`";
    std::string row = "| `" + k.name + "` | ";
    if (inputs) {
      std::string types;
      for (const std::string& t : k.input_types) types += (types.empty() ? "" : ", ") + t;
      row += (types.empty() ? "all" : types) + " | ";
    }
    row += TypeName(k) + " | " + def + " | " + Allowed(k) + " | ";
    std::string desc = k.description;
    if (!k.librdkafka.empty()) {
      desc += " Sets librdkafka's";
      for (size_t i = 0; i < k.librdkafka.size(); ++i) {
        desc += (i ? ", `" : " `") + k.librdkafka[i] + "`";
      }
      desc += ".";
    }
    row += Cell(desc) + " |\n";
    *out += row;
  }
  *out += "\n";
  for (const Key& k : sec.keys) {
    if (k.section != nullptr) SectionMarkdown(*k.section, out);
  }
}

}  // namespace

std::string JsonSchema() {
  Json s = Json::object();
  s["$schema"] = "http://json-schema.org/draft-07/schema#";
  s["title"] = "edgeferry configuration";
  Json root = SectionSchema(schema::Root());
  for (auto& [k, v] : root.items()) s[k] = v;
  s["description"] =
      "Configuration of the edgeferry agent. Strings may hold ${VAR} or ${VAR:-default}; "
      "those are substituted from the environment before edgeferry checks them.";
  return s.dump(2) + "\n";
}

std::string KeyReferenceMarkdown() {
  std::string out;
  SectionMarkdown(schema::Root(), &out);
  while (out.ends_with("\n\n")) out.pop_back();
  return out;
}

}  // namespace edgeferry::config
