#include <string_view>
#include <vector>

#include "sensors/sensors.h"

namespace edgeferry::sensors {
namespace {

std::vector<std::string_view> SplitLevels(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

}  // namespace

bool MatchTopicPattern(const std::string& pattern, const std::string& topic,
                       std::map<std::string, std::string>* captures) {
  std::vector<std::string_view> p = SplitLevels(pattern);
  std::vector<std::string_view> t = SplitLevels(topic);
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == "#") {
      if (i + 1 != p.size()) return false;  // '#' only as the last level
      break;
    }
    if (i >= t.size()) return false;
    if (p[i] == "+") continue;
    if (p[i].size() >= 2 && p[i].front() == '{' && p[i].back() == '}') {
      if (t[i].empty()) return false;  // a capture names something; "a//b" gives nothing
      found[std::string(p[i].substr(1, p[i].size() - 2))] = std::string(t[i]);
      continue;
    }
    if (p[i] != t[i]) return false;
    if (i + 1 == p.size() && t.size() != p.size()) return false;
  }
  if (p.back() != "#" && t.size() != p.size()) return false;
  if (captures) *captures = std::move(found);
  return true;
}

}  // namespace edgeferry::sensors
