// Where a record goes and with which key: templates with {device}, {input} and {topic}
// placeholders ({topic} is the record's own topic, empty if it has none, so only key templates
// use it; the config refuses it in topic templates), and Kafka's topic name rules. Pure
// functions, thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace edgeferry::forwarder {

// Expands a template (the config loader checks templates). Unknown placeholders are kept
// verbatim.
std::string ExpandTemplate(std::string_view tmpl, std::string_view device, std::string_view input,
                           std::string_view topic);

// Kafka's rule: 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
bool IsValidTopicName(std::string_view name);

}  // namespace edgeferry::forwarder
