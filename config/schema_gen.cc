// edgeferry_schema_gen: writes the generated parts of config/ from the key table.
//   edgeferry_schema_gen schema [FILE]   the JSON Schema (to FILE or stdout)
//   edgeferry_schema_gen readme FILE     replaces the key reference between the markers in FILE
//   edgeferry_schema_gen check FILE      loads FILE: its errors (exit 2) or its summary
// (the agent's `check-config` is the operator's command; `check` here serves config/ work.)
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "config/config.h"

namespace {

constexpr const char* kBegin = "<!-- BEGIN GENERATED KEY REFERENCE (edgeferry_schema_gen) -->";
constexpr const char* kEnd = "<!-- END GENERATED KEY REFERENCE -->";

int Usage() {
  std::cerr << "usage: edgeferry_schema_gen schema [FILE] | readme FILE | check FILE\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string what = argv[1];
  if (what == "schema") {
    std::string schema = edgeferry::config::JsonSchema();
    if (argc < 3) {
      std::cout << schema;
      return 0;
    }
    std::ofstream out(argv[2], std::ios::binary | std::ios::trunc);
    out << schema;
    return out.good() ? 0 : 1;
  }
  if (what == "check" && argc == 3) {
    edgeferry::config::LoadResult r = edgeferry::config::LoadFile(argv[2]);
    for (const auto& e : r.errors) std::cout << e.ToString() << "\n";
    if (r.config) std::cout << edgeferry::config::Describe(*r.config);
    return r.errors.empty() ? 0 : 2;
  }
  if (what == "readme" && argc == 3) {
    std::ifstream in(argv[2], std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    std::string text = buf.str();
    size_t begin = text.find(kBegin);
    size_t end = text.find(kEnd);
    if (!in || begin == std::string::npos || end == std::string::npos || end < begin) {
      std::cerr << argv[2] << ": markers not found\n";
      return 1;
    }
    begin += std::string(kBegin).size();
    text.replace(begin, end - begin, "\n" + edgeferry::config::KeyReferenceMarkdown() + "\n");
    std::ofstream out(argv[2], std::ios::binary | std::ios::trunc);
    out << text;
    return out.good() ? 0 : 1;
  }
  return Usage();
}
