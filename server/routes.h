// The HTTP API: named handlers for every endpoint, wired onto an HttpServer.
//
// Thread-safety: handlers run concurrently on the HTTP workers; ServerContext fields are set
// once (model load) and read through atomics / the scheduler's own locking.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/openai.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/http.h"
#include "server/scheduler.h"
#include "server/session_store.h"

namespace rwkv::server {

struct ServerContext {
  std::vector<std::string> api_keys;  // empty: no authentication
  std::string model_id;
  int64_t created = 0;
  api::Limits limits;
  // Set once loading has finished; until then generation endpoints and /health answer 503.
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  // Generation requests whose handler has not returned (streams still writing).
  std::atomic<int64_t> in_flight{0};
  std::shared_ptr<const Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::unique_ptr<SessionStore> sessions;
  std::unique_ptr<Scheduler> scheduler;
  std::string load_error;  // non-empty when loading failed

  // Request counters for /metrics, by endpoint and status.
  std::mutex counters_mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;
  void count(const std::string& endpoint, int status);
};

void register_routes(HttpServer& http, ServerContext& ctx);

}  // namespace rwkv::server
