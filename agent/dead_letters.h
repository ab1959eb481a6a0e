// Dead-letter listing and re-queueing for `edgeferry dead-letters`. While the daemon runs, only
// it may write the buffer (it alone assigns sequence numbers), so the CLI hands the request to
// the daemon: it writes <buffer path>-request.json atomically and sends SIGUSR1; the daemon
// serves it with ServeRequest and writes <buffer path>-response.json, which the CLI waits for.
// When no daemon runs, the CLI opens the buffer itself and calls ServeRequest directly.
//
// Request:  {"id": "...", "op": "list" | "requeue", "limit": N, "all": bool, "ids": [1, 2]}
// Response: {"id": "...", "ok": bool, "error": "...", "dead_letters": [...], "requeued": N}
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>

#include "buffer/buffer.h"
#include "config/config.h"

namespace edgeferry::agent {

std::string RequestPath(const config::BufferConfig& cfg);
std::string ResponsePath(const config::BufferConfig& cfg);

// Never throws; a malformed request gets {"ok": false, "error": ...}.
nlohmann::json ServeRequest(buffer::Buffer& buffer, const nlohmann::json& request);

// Human-readable table of a "list" response.
std::string FormatDeadLetters(const nlohmann::json& response);

}  // namespace edgeferry::agent
