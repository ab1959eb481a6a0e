#include "agent/dead_letters.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace edgeferry::agent {

using nlohmann::json;

namespace {

constexpr size_t kPayloadPreview = 1024;

json EntryJson(const buffer::DeadLetterEntry& e) {
  const Record& r = e.record.record;
  json headers = json::array();
  for (const auto& h : r.headers) headers.push_back({{"name", h.name}, {"value", h.value}});
  return {{"id", e.id},
          {"reason", e.reason},
          {"dead_lettered_unix_ms", e.dead_lettered_unix_ms},
          {"seq", e.record.seq},
          {"source", r.source},
          {"topic", r.topic},
          {"key", r.key},
          {"event_time_ms", r.event_time_ms},
          {"payload_bytes", r.payload.size()},
          {"payload", r.payload.substr(0, kPayloadPreview)},
          {"headers", headers}};
}

}  // namespace

std::string RequestPath(const config::BufferConfig& cfg) { return cfg.path + "-request.json"; }
std::string ResponsePath(const config::BufferConfig& cfg) { return cfg.path + "-response.json"; }

json ServeRequest(buffer::Buffer& buffer, const json& request) {
  json resp = {{"id", request.value("id", std::string())}, {"ok", false}};
  try {
    std::string op = request.value("op", std::string());
    if (op == "list") {
      size_t limit = request.value("limit", static_cast<size_t>(1000));
      auto entries = buffer.ListDeadLetters(limit);
      if (!entries.ok()) {
        resp["error"] = entries.status().ToString();
        return resp;
      }
      json list = json::array();
      for (const auto& e : *entries) list.push_back(EntryJson(e));
      resp["dead_letters"] = list;
      resp["ok"] = true;
    } else if (op == "requeue") {
      std::optional<std::vector<int64_t>> ids;
      if (!request.value("all", false)) ids = request.at("ids").get<std::vector<int64_t>>();
      auto n = buffer.RequeueDeadLetters(ids);
      if (!n.ok()) {
        resp["error"] = n.status().ToString();
        return resp;
      }
      resp["requeued"] = *n;
      resp["ok"] = true;
    } else {
      resp["error"] = fmt::format("unknown op \"{}\"", op);
    }
  } catch (const json::exception& e) {
    resp["error"] = std::string("malformed request: ") + e.what();
  }
  return resp;
}

std::string FormatDeadLetters(const json& response) {
  const json& list = response.at("dead_letters");
  if (list.empty()) return "no dead letters\n";
  std::string out =
      fmt::format("{:>8}  {:>10}  {:<16} {:<24} {}\n", "ID", "SEQ", "SOURCE", "REASON", "PAYLOAD");
  for (const auto& e : list) {
    std::string payload = e.value("payload", std::string());
    if (payload.size() > 40) payload = payload.substr(0, 37) + "...";
    for (char& c : payload) {
      if (static_cast<unsigned char>(c) < 0x20) c = '.';
    }
    out += fmt::format("{:>8}  {:>10}  {:<16} {:<24} {}\n", e.value("id", int64_t{0}),
                       e.value("seq", uint64_t{0}), e.value("source", std::string()),
                       e.value("reason", std::string()), payload);
  }
  out += fmt::format(
      "{} dead letter(s); re-queue with: edgeferry dead-letters requeue ID... | --all\n",
      list.size());
  return out;
}

}  // namespace edgeferry::agent
