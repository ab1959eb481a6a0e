#include "forwarder/routing.h"

namespace edgeferry::forwarder {
std::string ExpandTemplate(std::string_view tmpl, std::string_view device, std::string_view input,
                           std::string_view topic) {
  std::string out;
  out.reserve(tmpl.size() + device.size() + input.size());
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] == '{') {
      size_t close = tmpl.find('}', i + 1);
      if (close != std::string_view::npos) {
        std::string_view name = tmpl.substr(i + 1, close - i - 1);
        if (name == "device") {
          out += device;
          i = close + 1;
          continue;
        }
        if (name == "input") {
          out += input;
          i = close + 1;
          continue;
        }
        if (name == "topic") {
          out += topic;
          i = close + 1;
          continue;
        }
      }
    }
    out += tmpl[i++];
  }
  return out;
}

bool IsValidTopicName(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace edgeferry::forwarder
