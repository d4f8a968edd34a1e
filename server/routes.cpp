#include "server/routes.h"

#include <chrono>
#include <random>
#include <thread>
#include <cstdio>
#include <sstream>

#include "server/chat_template.h"
#include "server/log.h"

namespace rwkv::server {
namespace {

using std::chrono::milliseconds;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void reply_error(HttpResponse& res, const api::ApiError& e) {
  res.status = e.status;
  res.body = api::error_json(e);
  res.content_type = "application/json";
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

// Checks the bearer key. On success sets *owner to the key's session tag.
bool authorize(const ServerContext& ctx, const HttpRequest& req, HttpResponse& res, std::string* owner) {
  if (ctx.api_keys.empty()) {
    owner->clear();
    return true;
  }
  const std::string auth = req.header("authorization");
  const std::string prefix = "Bearer ";
  if (auth.size() > prefix.size() && auth.compare(0, prefix.size(), prefix) == 0) {
    const std::string key = auth.substr(prefix.size());
    bool ok = false;
    for (const std::string& k : ctx.api_keys) ok |= constant_time_equal(k, key);
    if (ok) {
      *owner = SessionStore::owner_tag(key);
      return true;
    }
    reply_error(res, api::make_error(401, "authentication_error", "Incorrect API key provided", "", "invalid_api_key"));
    return false;
  }
  reply_error(res, api::make_error(401, "authentication_error",
                                   "Missing API key: send it as 'Authorization: Bearer <key>'", "", "invalid_api_key"));
  return false;
}

bool check_ready(const ServerContext& ctx, HttpResponse& res) {
  if (ctx.draining.load()) {
    reply_error(res, api::make_error(503, "unavailable_error", "the server is shutting down"));
    res.headers.emplace_back("Retry-After", "5");
    return false;
  }
  if (!ctx.ready.load()) {
    reply_error(res, api::make_error(503, "unavailable_error",
                                     ctx.load_error.empty() ? "Loading model" : "model failed to load: " + ctx.load_error));
    res.headers.emplace_back("Retry-After", "2");
    return false;
  }
  return true;
}

void handle_health(ServerContext& ctx, const HttpRequest&, HttpResponse& res) {
  if (ctx.ready.load() && !ctx.draining.load()) {
    res.body = "{\"status\":\"ok\"}";
    return;
  }
  if (ctx.draining.load()) {
    reply_error(res, api::make_error(503, "unavailable_error", "Shutting down"));
  } else if (!ctx.load_error.empty()) {
    reply_error(res, api::make_error(503, "unavailable_error", "Model failed to load: " + ctx.load_error));
  } else {
    reply_error(res, api::make_error(503, "unavailable_error", "Loading model"));
  }
}

void handle_models(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  res.body = api::models_response(ctx.model_id, ctx.created);
}

std::string metric(const char* name, const char* type, const char* help, double value) {
  std::ostringstream os;
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
  return os.str();
}

void handle_metrics(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  std::ostringstream os;
  os << "# HELP rwkv_edge_requests_total HTTP requests by endpoint and status.\n# TYPE rwkv_edge_requests_total counter\n";
  {
    std::lock_guard<std::mutex> lock(ctx.counters_mu);
    for (const auto& [key, n] : ctx.requests) {
      os << "rwkv_edge_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
    }
  }
  if (ctx.scheduler) {
    const SchedulerStats s = ctx.scheduler->stats();
    os << metric("rwkv_edge_prompt_tokens_total", "counter", "Prompt tokens fed (prefill).", (double)s.prompt_tokens);
    os << metric("rwkv_edge_generated_tokens_total", "counter", "Tokens generated.", (double)s.generated_tokens);
    os << metric("rwkv_edge_prefill_seconds_total", "counter", "Compute time spent on prompt rows.", s.prefill_seconds);
    os << metric("rwkv_edge_decode_seconds_total", "counter", "Compute time spent on decode rows.", s.decode_seconds);
    os << metric("rwkv_edge_prefill_tokens_per_second", "gauge", "Prompt tokens per compute second, since start.",
                 s.prefill_seconds > 0 ? (double)s.prompt_tokens / s.prefill_seconds : 0.0);
    os << metric("rwkv_edge_decode_tokens_per_second", "gauge", "Generated tokens per compute second, since start.",
                 s.decode_seconds > 0 ? (double)s.generated_tokens / s.decode_seconds : 0.0);
    os << metric("rwkv_edge_batch_steps_total", "counter", "Forward passes run by the scheduler.", (double)s.steps);
    os << metric("rwkv_edge_requests_in_flight", "gauge", "Sequences being prefilled or decoded.", (double)s.active);
    os << metric("rwkv_edge_queue_depth", "gauge", "Requests waiting for a batch slot.", (double)s.queued);
    os << metric("rwkv_edge_requests_cancelled_total", "counter", "Requests whose client went away.", (double)s.jobs_cancelled);
    os << metric("rwkv_edge_prefix_cache_hits_total", "counter", "Prompts that reused a cached prefix state.", (double)s.prefix_cache_hits);
    os << metric("rwkv_edge_prefix_cache_misses_total", "counter", "Prompts with no cached prefix.", (double)s.prefix_cache_misses);
    os << metric("rwkv_edge_prefix_cache_tokens_reused_total", "counter", "Prompt tokens skipped thanks to the prefix cache.", (double)s.prefix_tokens_reused);
    os << metric("rwkv_edge_prefix_cache_bytes", "gauge", "Bytes of states held by the prefix cache.", (double)s.prefix_cache_bytes);
  }
  if (ctx.sessions) {
    os << metric("rwkv_edge_sessions_active", "gauge", "Sessions held in memory.", (double)ctx.sessions->in_memory());
    os << metric("rwkv_edge_session_state_bytes", "gauge", "Bytes of session states in memory.", (double)ctx.sessions->memory_bytes());
    os << metric("rwkv_edge_session_evictions_total", "counter", "Sessions written to the state directory.", (double)ctx.sessions->evictions());
    os << metric("rwkv_edge_sessions_expired_total", "counter", "Sessions deleted after --session-ttl-hours idle.", (double)ctx.sessions->expired());
    os << metric("rwkv_edge_session_restores_total", "counter", "Sessions read back from the state directory.", (double)ctx.sessions->restores());
  }
  if (ctx.model) {
    os << metric("rwkv_edge_weight_bytes_per_token", "gauge", "Bytes of weights one decode step reads.", (double)ctx.model->weight_bytes_per_token());
    // Weight store (issue 7): only under --mem-budget.
    const store::StoreStats ws = ctx.model->store_stats();
    if (ws.enabled) {
      os << metric("rwkv_edge_weight_budget_bytes", "gauge", "The --mem-budget the weight store plans with.", (double)ws.budget);
      os << metric("rwkv_edge_weight_resident_bytes", "gauge", "Weights read whole into memory at load.", (double)ws.resident_bytes);
      os << metric("rwkv_edge_weight_file_bytes_read_total", "counter", "Bytes the weight caches read from the model file.",
                   (double)ws.bytes_read());
      os << "# HELP rwkv_edge_weight_cache_hits_total Weight cache look-ups served from memory, by cache.\n"
            "# TYPE rwkv_edge_weight_cache_hits_total counter\n";
      const std::pair<const char*, const store::CacheStats*> caches[] = {{"embedding", &ws.emb}, {"ffn", &ws.ffn}, {"head", &ws.head}};
      for (const auto& [name, c] : caches) os << "rwkv_edge_weight_cache_hits_total{cache=\"" << name << "\"} " << c->hits << "\n";
      os << "# HELP rwkv_edge_weight_cache_misses_total Weight cache look-ups read from the file, by cache.\n"
            "# TYPE rwkv_edge_weight_cache_misses_total counter\n";
      for (const auto& [name, c] : caches) os << "rwkv_edge_weight_cache_misses_total{cache=\"" << name << "\"} " << c->misses << "\n";
      os << "# HELP rwkv_edge_weight_cache_hit_rate Hits over look-ups since start, by cache.\n"
            "# TYPE rwkv_edge_weight_cache_hit_rate gauge\n";
      for (const auto& [name, c] : caches) os << "rwkv_edge_weight_cache_hit_rate{cache=\"" << name << "\"} " << c->hit_rate() << "\n";
      os << "# HELP rwkv_edge_weight_cache_bytes Memory each weight cache may hold.\n"
            "# TYPE rwkv_edge_weight_cache_bytes gauge\n";
      for (const auto& [name, c] : caches) os << "rwkv_edge_weight_cache_bytes{cache=\"" << name << "\"} " << c->capacity_bytes << "\n";
    }
  }
  res.body = os.str();
  res.content_type = "text/plain; version=0.0.4";
}

// Resolves the session named by the body field or the X-Session-Id header.
bool resolve_session_id(const HttpRequest& req, std::string* id, HttpResponse& res) {
  const std::string header = req.header("x-session-id");
  if (!header.empty() && !id->empty() && header != *id) {
    reply_error(res, api::make_error(400, "invalid_request_error", "the X-Session-Id header and the body's session_id differ",
                                     "session_id"));
    return false;
  }
  if (id->empty()) *id = header;
  return true;
}

void write_sse(StreamWriter& w, const std::string& json, bool* ok) {
  if (*ok) *ok = w.write("data: " + json + "\n\n");
}

void handle_generation(ServerContext& ctx, bool chat, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  if (!check_ready(ctx, res)) return;
  api::GenerationRequest g;
  api::ApiError err;
  if (!api::parse_generation_request(req.body, chat, ctx.limits, &g, &err)) return reply_error(res, err);
  if (!resolve_session_id(req, &g.session_id, res)) return;
  if (!g.session_id.empty()) {
    Result<SessionInfo> si = ctx.sessions->info(g.session_id, owner);
    // A session whose previous client just hung up is released at the scheduler's next step:
    // wait a little before calling it busy.
    for (int i = 0; i < 200 && si.ok() && si->busy; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
      si = ctx.sessions->info(g.session_id, owner);
    }
    if (!si.ok()) return reply_error(res, api::error_from_status(si.status(), "session_id"));
    if (si->busy) {
      return reply_error(res, api::error_from_status(Status::Conflict("session '" + g.session_id + "' is in use by another request"),
                                                     "session_id"));
    }
  }
  if (!g.seed_given) {
    // Without a seed every request samples differently, as clients expect.
    static std::mutex seed_mu;
    static std::mt19937_64 seeder(std::random_device{}());
    std::lock_guard<std::mutex> lock(seed_mu);
    g.sampling.seed = seeder();
  }
  JobSpec spec;
  spec.chat = chat;
  spec.messages = g.messages;
  spec.max_tokens = g.max_tokens;
  spec.sampling = g.sampling;
  spec.stop = g.stop;
  spec.session_id = g.session_id;
  spec.owner = owner;
  if (!chat) {
    // Tokenize here (off the compute thread) and check the length before anything starts.
    spec.prompt_is_tokens = true;
    spec.prompt_tokens = g.prompt_is_tokens ? g.prompt_tokens : ctx.tokenizer->encode(g.prompt);
    if ((int64_t)spec.prompt_tokens.size() > ctx.limits.max_prompt_tokens) {
      return reply_error(res, api::make_error(400, "invalid_request_error",
                                              "the prompt has " + std::to_string(spec.prompt_tokens.size()) +
                                                  " tokens; the limit is " + std::to_string(ctx.limits.max_prompt_tokens),
                                              "prompt", "context_length_exceeded"));
    }
  }
  auto job = std::make_shared<Job>(std::move(spec));
  job->streaming = g.stream;
  Status st = ctx.scheduler->submit(job);
  if (!st.ok()) {
    api::ApiError e = api::error_from_status(st);
    if (st.code() == StatusCode::kResourceExhausted) res.headers.emplace_back("Retry-After", "1");
    return reply_error(res, e);
  }
  const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(unix_now()) + "-" +
                         std::to_string(reinterpret_cast<uintptr_t>(job.get()) & 0xffffff);
  const int64_t created = unix_now();
  const std::string model = ctx.model_id;
  const std::string session_id = g.session_id;
  if (!session_id.empty()) res.headers.emplace_back("X-Session-Id", session_id);

  if (!g.stream) {
    std::string text;
    JobEvent ev;
    for (;;) {
      if (!job->pop(&ev, milliseconds(1000))) continue;
      if (ev.kind == JobEvent::Kind::kText) {
        text += ev.text;
        continue;
      }
      if (ev.kind == JobEvent::Kind::kError) return reply_error(res, ev.error);
      break;
    }
    res.body = chat ? api::chat_response(id, created, model, text, ev.finish_reason, ev.usage, session_id)
                    : api::completion_response(id, created, model, text, ev.finish_reason, ev.usage, session_id);
    return;
  }

  // Streaming: wait for the first event so admission errors (busy session, prompt too long)
  // still get their HTTP status; prefill keeps running meanwhile.
  JobEvent first;
  while (!job->pop(&first, milliseconds(1000))) {
  }
  if (first.kind == JobEvent::Kind::kError) return reply_error(res, first.error);
  const bool include_usage = g.include_usage;
  res.content_type = "text/event-stream";
  res.stream = [job, first, chat, id, created, model, include_usage](StreamWriter& w) mutable {
    bool ok = true;
    bool first_chunk = true;
    auto send_text = [&](const JobEvent& ev) {
      if (ev.text.empty() && !(chat && first_chunk)) return;
      write_sse(w, chat ? api::chat_chunk(id, created, model, ev.text, first_chunk, "")
                        : api::completion_chunk(id, created, model, ev.text, ""),
                &ok);
      first_chunk = false;
      if (ok) job->set_delivered(ev.tokens_covered);
    };
    JobEvent ev = first;
    auto last_write = std::chrono::steady_clock::now();
    for (;;) {
      if (ev.kind == JobEvent::Kind::kText) {
        send_text(ev);
        last_write = std::chrono::steady_clock::now();
      } else if (ev.kind == JobEvent::Kind::kError) {
        if (ok) ok = w.write("data: " + api::error_json(ev.error) + "\n\n");
        return;
      } else {  // kDone
        if (chat && first_chunk) send_text(JobEvent{});
        write_sse(w, chat ? api::chat_chunk(id, created, model, "", false, ev.finish_reason)
                          : api::completion_chunk(id, created, model, "", ev.finish_reason),
                  &ok);
        if (include_usage) write_sse(w, api::usage_chunk(id, created, model, chat, ev.usage), &ok);
        if (ok) w.write("data: [DONE]\n\n");
        return;
      }
      if (!ok) {
        job->cancel();
        return;
      }
      // Next event; ping every 15 s so proxies and clients keep the stream open.
      while (!job->pop(&ev, milliseconds(500))) {
        if (std::chrono::steady_clock::now() - last_write > std::chrono::seconds(15)) {
          if (!w.write(": ping\n\n")) {
            job->cancel();
            return;
          }
          last_write = std::chrono::steady_clock::now();
        }
      }
    }
  };
}

void handle_create_session(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  if (!check_ready(ctx, res)) return;
  Result<std::string> id = ctx.sessions->create(owner);
  if (!id.ok()) return reply_error(res, api::error_from_status(id.status()));
  res.status = 201;
  res.body = "{\"id\":\"" + id.value() + "\",\"object\":\"session\",\"created\":" + std::to_string(unix_now()) + "}";
}

void handle_get_session(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  if (!check_ready(ctx, res)) return;
  Result<SessionInfo> si = ctx.sessions->info(req.matches.at(0), owner);
  if (!si.ok()) return reply_error(res, api::error_from_status(si.status(), "session_id"));
  std::ostringstream os;
  os << "{\"id\":\"" << si->id << "\",\"object\":\"session\",\"created\":" << si->created
     << ",\"last_used\":" << si->last_used << ",\"tokens\":" << si->n_tokens
     << ",\"in_memory\":" << (si->in_memory ? "true" : "false") << ",\"busy\":" << (si->busy ? "true" : "false")
     << ",\"state_bytes\":" << si->state_bytes << "}";
  res.body = os.str();
}

void handle_delete_session(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) {
  std::string owner;
  if (!authorize(ctx, req, res, &owner)) return;
  if (!check_ready(ctx, res)) return;
  Status st = ctx.sessions->remove(req.matches.at(0), owner);
  if (!st.ok()) return reply_error(res, api::error_from_status(st, "session_id"));
  res.body = "{\"id\":\"" + req.matches.at(0) + "\",\"object\":\"session.deleted\",\"deleted\":true}";
}

// Wraps a handler with the request counter.
HttpHandler counted(ServerContext& ctx, const std::string& endpoint,
                    void (*h)(ServerContext&, const HttpRequest&, HttpResponse&)) {
  return [&ctx, endpoint, h](const HttpRequest& req, HttpResponse& res) {
    h(ctx, req, res);
    ctx.count(endpoint, res.status);
  };
}

// Counts a generation request as in flight until its response, or its stream, has ended.
void generation(ServerContext& ctx, bool chat, const HttpRequest& req, HttpResponse& res) {
  ++ctx.in_flight;
  handle_generation(ctx, chat, req, res);
  if (!res.stream) {
    --ctx.in_flight;
    return;
  }
  res.stream = [&ctx, inner = std::move(res.stream)](StreamWriter& w) {
    inner(w);
    --ctx.in_flight;
  };
}

void completions(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) { generation(ctx, false, req, res); }
void chat_completions(ServerContext& ctx, const HttpRequest& req, HttpResponse& res) { generation(ctx, true, req, res); }

}  // namespace

void ServerContext::count(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(counters_mu);
  ++requests[{endpoint, status}];
}

void register_routes(HttpServer& http, ServerContext& ctx) {
  http.route("GET", "/health", counted(ctx, "/health", handle_health));
  http.route("GET", "/metrics", counted(ctx, "/metrics", handle_metrics));
  http.route("GET", "/v1/models", counted(ctx, "/v1/models", handle_models));
  http.route("POST", "/v1/completions", counted(ctx, "/v1/completions", completions));
  http.route("POST", "/v1/chat/completions", counted(ctx, "/v1/chat/completions", chat_completions));
  http.route("POST", "/v1/sessions", counted(ctx, "/v1/sessions", handle_create_session));
  http.route("GET", R"(/v1/sessions/([A-Za-z0-9_\-]+))", counted(ctx, "/v1/sessions/{id}", handle_get_session));
  http.route("DELETE", R"(/v1/sessions/([A-Za-z0-9_\-]+))", counted(ctx, "/v1/sessions/{id}", handle_delete_session));
  http.set_error_body([](int status) {
    switch (status) {
      case 404: return api::error_json(api::make_error(404, "not_found_error", "no such endpoint"));
      case 413: return api::error_json(api::make_error(413, "invalid_request_error", "the request body is too large"));
      case 405: return api::error_json(api::make_error(405, "invalid_request_error", "method not allowed"));
      default: return api::error_json(api::make_error(status, status >= 500 ? "server_error" : "invalid_request_error",
                                                      "HTTP error " + std::to_string(status)));
    }
  });
}

}  // namespace rwkv::server
