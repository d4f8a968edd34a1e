// The workers: one Asio state machine per concurrent client.
//
//   [create session] -> claim a request slot -> send -> (stream: parse SSE events) -> tally
//        ^                                                                             |
//        +------------------------- (backoff after 429/503/transport errors) ---------+
//   ... no slot left / time up -> [delete session] -> done
#include "tools/loadgen/loadgen.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tools/loadgen/http_client.h"
#include "tools/loadgen/http_parse.h"

namespace rwkv::loadgen {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Bodies of non-streamed responses are kept up to this size (a completion of a few thousand
// tokens is far below it); beyond it the request is a protocol error.
constexpr size_t kMaxBodyBytes = 8u << 20;
constexpr size_t kMaxErrorSamples = 8;
// Pauses so a worker facing a down or overloaded server does not spin.
constexpr double kTransportBackoffS = 0.1;
constexpr double kOverloadBackoffS = 0.5;
// After a client disconnect the server needs a moment (until its next token write fails) to
// release the session; a request in it meanwhile gets 409 "busy".
constexpr double kBusyBackoffS = 0.05;
constexpr int kDeleteAttempts = 100;  // x kBusyBackoffS: how long a busy session delete is retried
constexpr double kMaxRetryAfterS = 10.0;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// What every worker adds to; merged after the run (each worker owns its own).
struct Tally {
  int64_t requests = 0, ok = 0, http_errors = 0, transport = 0, protocol = 0, disconnected = 0;
  std::map<int, int64_t> by_status;
  int64_t sessions_created = 0, sessions_deleted = 0, session_errors = 0;
  int64_t tokens = 0, n_usage = 0, n_events = 0;
  std::vector<double> ttft, itl, latency;
  // Streaming ok requests: tokens after the first, and the span from first to last content.
  int64_t decode_tokens = 0;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> decode_spans;
  std::map<std::string, int64_t> errors;
  bool any_request = false;
  Clock::time_point first_start, last_end;

  void error(const std::string& what) {
    auto it = errors.find(what);
    if (it != errors.end() || errors.size() < 64) ++errors[what];
  }
};

// Settings shared by all workers; constant during the run.
struct Plan {
  LoadgenOptions opt;
  Url url;
  Endpoints endpoints;
  std::string root;  // path prefix before "/v1"
  std::string model;
  json extra;  // object merged into each body
  Clock::time_point deadline;  // when duration_s > 0
  std::chrono::milliseconds timeout{0};
};

// The message of an OpenAI error body, or the start of the body when it is not one.
std::string error_message(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    auto e = j.find("error");
    if (e != j.end() && e->is_object()) {
      auto m = e->find("message");
      if (m != e->end() && m->is_string()) return m->get<std::string>();
    }
  }
  // Not JSON (a proxy's HTML page, say): its start, with whitespace runs collapsed.
  std::string s;
  for (const char c : body) {
    const bool space = c == ' ' || c == '\n' || c == '\r' || c == '\t';
    if (space && (s.empty() || s.back() == ' ')) continue;
    s += space ? ' ' : c;
    if (s.size() >= 120) break;
  }
  return s;
}

// The generated text of a completion / chat chunk or response (choices[0]), "" if none.
std::string choice_text(const json& j) {
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) return "";
  const json& c = (*choices)[0];
  if (!c.is_object()) return "";
  auto text = c.find("text");
  if (text != c.end() && text->is_string()) return text->get<std::string>();
  for (const char* obj : {"delta", "message"}) {
    auto d = c.find(obj);
    if (d == c.end() || !d->is_object()) continue;
    auto t = d->find("content");
    if (t != d->end() && t->is_string()) return t->get<std::string>();
  }
  return "";
}

// usage.completion_tokens, or -1.
int64_t usage_tokens(const json& j) {
  auto u = j.find("usage");
  if (u == j.end() || !u->is_object()) return -1;
  auto c = u->find("completion_tokens");
  if (c == u->end() || !c->is_number_integer()) return -1;
  return c->get<int64_t>();
}

class Worker {
 public:
  Worker(asio::io_context& io, const Plan& plan, std::atomic<int64_t>& issued, int index)
      : plan_(plan),
        issued_(issued),
        strand_(asio::make_strand(io)),
        call_(strand_, plan.endpoints, plan.url),
        pause_(strand_),
        rng_(plan.opt.seed * 1000003u + (uint64_t)index) {}

  void start() {
    asio::post(strand_, [this] {
      if (plan_.opt.sessions) {
        create_session();
      } else {
        next();
      }
    });
  }

  Tally& tally() { return tally_; }

 private:
  // Per-request bookkeeping.
  struct Current {
    Clock::time_point t0, first_content, last_content;
    bool head_seen = false, sse = false;
    int status = 0;
    std::string content_type, body;
    bool body_overflow = false;
    bool done_seen = false;
    std::string stream_error;  // first problem with the event stream
    int64_t content_events = 0, usage = -1;
    int64_t disconnect_after = -1;  // < 0: never
    double ttft = -1;
    std::vector<double> itl;
    double retry_after = -1;
  };

  // Records a failure description with this worker's session id replaced by "{session}", so
  // the same failure in different sessions counts as one kind.
  void record_error(std::string what) {
    if (!session_id_.empty()) {
      for (size_t pos = what.find(session_id_); pos != std::string::npos; pos = what.find(session_id_, pos)) {
        what.replace(pos, session_id_.size(), "{session}");
      }
    }
    tally_.error(what);
  }

  std::vector<std::pair<std::string, std::string>> auth_headers() const {
    std::vector<std::pair<std::string, std::string>> h;
    if (!plan_.opt.api_key.empty()) h.emplace_back("Authorization", "Bearer " + plan_.opt.api_key);
    return h;
  }

  // ---- sessions ----------------------------------------------------------------------------

  void create_session() {
    HttpRequest req;
    req.method = "POST";
    req.path = plan_.root + "/v1/sessions";
    req.headers = auth_headers();
    req.body = "{}";
    auto body = std::make_shared<std::string>();
    HttpCall::Callbacks cb;
    cb.on_body = [body](std::string_view piece) {
      if (body->size() < kMaxBodyBytes) body->append(piece);
      return true;
    };
    cb.on_done = [this, body](const CallResult& r, const ResponseParser& p) {
      if (r.end != CallEnd::kComplete) {
        ++tally_.session_errors;
        record_error("session create: " + r.error);
        return;  // this worker sends nothing; the others take its share of --requests
      }
      if (p.status() / 100 != 2) {
        ++tally_.session_errors;
        record_error("session create: HTTP " + std::to_string(p.status()) + ": " + error_message(*body));
        return;
      }
      const json j = json::parse(*body, nullptr, false);
      auto id = j.is_object() ? j.find("id") : j.end();
      if (!j.is_object() || id == j.end() || !id->is_string() || id->get<std::string>().empty()) {
        ++tally_.session_errors;
        record_error("session create: response without a string \"id\"");
        return;
      }
      session_id_ = id->get<std::string>();
      ++tally_.sessions_created;
      next();
    };
    call_.start(req, plan_.timeout, std::move(cb));
  }

  void delete_session(int attempt = 1) {
    HttpRequest req;
    req.method = "DELETE";
    req.path = plan_.root + "/v1/sessions/" + session_id_;
    req.headers = auth_headers();
    auto body = std::make_shared<std::string>();
    HttpCall::Callbacks cb;
    cb.on_body = [body](std::string_view piece) {
      if (body->size() < 4096) body->append(piece);
      return true;
    };
    cb.on_done = [this, body, attempt](const CallResult& r, const ResponseParser& p) {
      if (r.end == CallEnd::kComplete && p.status() == 409 && attempt < kDeleteAttempts) {
        // Still busy with the request this worker just closed: try again shortly.
        pause_.expires_after(std::chrono::milliseconds((int)(kBusyBackoffS * 1000)));
        pause_.async_wait([this, attempt](const asio::error_code&) { delete_session(attempt + 1); });
        return;
      }
      if (r.end != CallEnd::kComplete) {
        ++tally_.session_errors;
        record_error("session delete: " + r.error);
      } else if (p.status() / 100 != 2) {
        ++tally_.session_errors;
        record_error("session delete: HTTP " + std::to_string(p.status()) + ": " + error_message(*body));
      } else {
        ++tally_.sessions_deleted;
      }
    };
    call_.start(req, plan_.timeout, std::move(cb));
  }

  // ---- the request loop --------------------------------------------------------------------

  // Claims the next request slot, or ends the worker.
  void next() {
    bool go = false;
    if (plan_.opt.duration_s > 0) {
      go = Clock::now() < plan_.deadline;
    } else {
      go = issued_.fetch_add(1) < plan_.opt.requests;
    }
    if (!go) {
      if (!session_id_.empty()) delete_session();
      return;
    }
    send_generate();
  }

  void next_after(double seconds) {
    if (seconds <= 0) return next();
    if (plan_.opt.duration_s > 0) {
      const double left = std::chrono::duration<double>(plan_.deadline - Clock::now()).count();
      seconds = std::min(seconds, std::max(left, 0.0));
    }
    pause_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
    pause_.async_wait([this](const asio::error_code&) { next(); });
  }

  std::string request_body() {
    json b = json::object();
    b["model"] = plan_.model;
    if (plan_.opt.chat) {
      b["messages"] = json::array({json{{"role", "user"}, {"content", plan_.opt.prompt}}});
    } else {
      b["prompt"] = plan_.opt.prompt;
    }
    b["max_tokens"] = plan_.opt.max_tokens;
    b["stream"] = plan_.opt.stream;
    if (plan_.opt.stream) b["stream_options"] = json{{"include_usage", true}};
    if (!session_id_.empty()) b["session_id"] = session_id_;
    for (auto it = plan_.extra.begin(); it != plan_.extra.end(); ++it) b[it.key()] = it.value();
    return b.dump();
  }

  void send_generate() {
    cur_ = Current();
    const LoadgenOptions& o = plan_.opt;
    if (o.stream && o.disconnect_rate > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < o.disconnect_rate) {
      cur_.disconnect_after = std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(o.max_tokens - 1, 0))(rng_);
    }
    HttpRequest req;
    req.method = "POST";
    req.path = plan_.root + (o.chat ? "/v1/chat/completions" : "/v1/completions");
    req.headers = auth_headers();
    req.headers.emplace_back("Accept", o.stream ? "text/event-stream" : "application/json");
    if (!session_id_.empty()) req.headers.emplace_back("X-Session-Id", session_id_);
    req.body = request_body();

    HttpCall::Callbacks cb;
    cb.on_head = [this](const ResponseParser& p) { on_head(p); };
    cb.on_body = [this](std::string_view piece) { return on_body(piece); };
    cb.on_done = [this](const CallResult& r, const ResponseParser& p) { on_done(r, p); };
    cur_.t0 = Clock::now();
    if (!tally_.any_request) {
      tally_.any_request = true;
      tally_.first_start = cur_.t0;
    }
    call_.start(req, plan_.timeout, std::move(cb));
  }

  void on_head(const ResponseParser& p) {
    cur_.head_seen = true;
    cur_.status = p.status();
    cur_.content_type = p.header("content-type");
    cur_.retry_after = retry_after_seconds(p.headers());
    cur_.sse = plan_.opt.stream && p.status() / 100 == 2 &&
               cur_.content_type.find("text/event-stream") != std::string::npos;
  }

  bool on_body(std::string_view piece) {
    if (!cur_.sse) {
      if (cur_.body.size() + piece.size() > kMaxBodyBytes) {
        cur_.body_overflow = true;
      } else {
        cur_.body.append(piece);
      }
      return true;
    }
    // A disconnect planned after 0 events closes as soon as the first bytes arrive.
    if (cur_.disconnect_after == 0) return false;
    return sse_.feed(piece, [this](const std::string& data) { return on_event(data); });
  }

  // One SSE event; false closes the connection (planned disconnect).
  bool on_event(const std::string& data) {
    if (data == "[DONE]") {
      cur_.done_seen = true;
      return true;
    }
    if (cur_.done_seen && cur_.stream_error.empty()) cur_.stream_error = "event after [DONE]";
    const json j = json::parse(data, nullptr, false);
    if (!j.is_object()) {
      if (cur_.stream_error.empty()) cur_.stream_error = "SSE event is not a JSON object: " + data.substr(0, 80);
      return true;
    }
    auto err = j.find("error");
    if (err != j.end() && !err->is_null()) {
      if (cur_.stream_error.empty()) cur_.stream_error = "SSE error event: " + error_message(data);
      return true;
    }
    const int64_t u = usage_tokens(j);
    if (u >= 0) cur_.usage = u;
    if (!choice_text(j).empty()) {
      const Clock::time_point now = Clock::now();
      if (cur_.content_events == 0) {
        cur_.ttft = ms_between(cur_.t0, now);
        cur_.first_content = now;
      } else {
        cur_.itl.push_back(ms_between(cur_.last_content, now));
      }
      cur_.last_content = now;
      ++cur_.content_events;
      if (cur_.disconnect_after > 0 && cur_.content_events >= cur_.disconnect_after) return false;
    }
    return true;
  }

  // Adds the streaming measurements and generated tokens of the current request.
  void commit_stream_samples() {
    if (cur_.ttft >= 0) tally_.ttft.push_back(cur_.ttft);
    tally_.itl.insert(tally_.itl.end(), cur_.itl.begin(), cur_.itl.end());
  }

  // The decode phase of a completed stream: its tokens after the first content event, and when
  // it ran. (With a usage count, the first event is taken to carry one token.)
  void commit_decode_span() {
    if (cur_.content_events == 0) return;
    const int64_t tokens = cur_.usage >= 0 ? cur_.usage : cur_.content_events;
    if (tokens < 2) return;
    tally_.decode_tokens += tokens - 1;
    tally_.decode_spans.emplace_back(cur_.first_content, cur_.last_content);
  }

  void commit_tokens(int64_t usage, int64_t events) {
    if (usage >= 0) {
      tally_.tokens += usage;
      ++tally_.n_usage;
    } else if (events >= 0) {
      tally_.tokens += events;
      ++tally_.n_events;
    }
  }

  void on_done(const CallResult& r, const ResponseParser& p) {
    const Clock::time_point t1 = Clock::now();
    tally_.last_end = std::max(tally_.last_end, t1);
    ++tally_.requests;
    sse_ = SseParser();
    double pause_s = 0;
    if (cur_.head_seen) ++tally_.by_status[cur_.status];

    if (cur_.head_seen && cur_.status / 100 != 2) {
      ++tally_.http_errors;
      record_error("HTTP " + std::to_string(cur_.status) + ": " + error_message(cur_.body));
      if (cur_.status == 429 || cur_.status == 503) {
        pause_s = cur_.retry_after >= 0 ? std::min(cur_.retry_after, kMaxRetryAfterS) : kOverloadBackoffS;
      } else if (cur_.status == 409) {
        pause_s = cur_.retry_after >= 0 ? std::min(cur_.retry_after, kMaxRetryAfterS) : kBusyBackoffS;
      }
    } else if (r.end == CallEnd::kAborted) {
      ++tally_.disconnected;
      commit_stream_samples();
      commit_tokens(-1, cur_.content_events);
    } else if (r.end != CallEnd::kComplete) {
      ++tally_.transport;
      record_error(r.end == CallEnd::kTimeout ? "timeout (" + r.error + ")" : r.error);
      pause_s = kTransportBackoffS;
    } else if (plan_.opt.stream) {
      std::string problem = cur_.stream_error;
      if (problem.empty() && !cur_.sse) problem = "expected text/event-stream, got '" + cur_.content_type + "'";
      if (problem.empty() && !cur_.done_seen) problem = "stream ended without data: [DONE]";
      if (!problem.empty()) {
        ++tally_.protocol;
        record_error(problem);
      } else {
        ++tally_.ok;
        commit_stream_samples();
        commit_tokens(cur_.usage, cur_.content_events);
        commit_decode_span();
        tally_.latency.push_back(ms_between(cur_.t0, t1));
      }
    } else {
      const json j = cur_.body_overflow ? json() : json::parse(cur_.body, nullptr, false);
      auto choices = j.is_object() ? j.find("choices") : j.end();
      if (cur_.body_overflow) {
        ++tally_.protocol;
        record_error("response body over 8 MiB");
      } else if (!j.is_object() || choices == j.end() || !choices->is_array() || choices->empty()) {
        ++tally_.protocol;
        record_error("response is not a completion object: " + cur_.body.substr(0, 80));
      } else {
        ++tally_.ok;
        commit_tokens(usage_tokens(j), -1);
        tally_.latency.push_back(ms_between(cur_.t0, t1));
      }
    }
    next_after(pause_s);
  }

  // Constant after construction.
  const Plan& plan_;
  std::atomic<int64_t>& issued_;
  Strand strand_;

  // Touched only on strand_.
  HttpCall call_;
  asio::steady_timer pause_;
  std::mt19937_64 rng_;
  std::string session_id_;
  Current cur_;
  SseParser sse_;
  Tally tally_;
};

LatencyStats stats_of(std::vector<double> v) {
  LatencyStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = (int64_t)v.size();
  s.p50 = quantile_sorted(v, 0.50);
  s.p95 = quantile_sorted(v, 0.95);
  s.p99 = quantile_sorted(v, 0.99);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / (double)v.size();
  s.max = v.back();
  return s;
}

// The first model id from GET /v1/models, or "" when the server does not say.
std::string discover_model(const Plan& plan) {
  HttpRequest req;
  req.path = plan.root + "/v1/models";
  if (!plan.opt.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + plan.opt.api_key);
  Result<FetchResult> r = http_fetch(plan.url, req, std::chrono::seconds(10));
  if (!r.ok() || r->status != 200) return "";
  const json j = json::parse(r->body, nullptr, false);
  if (!j.is_object()) return "";
  auto data = j.find("data");
  if (data == j.end() || !data->is_array() || data->empty() || !(*data)[0].is_object()) return "";
  auto id = (*data)[0].find("id");
  return id != (*data)[0].end() && id->is_string() ? id->get<std::string>() : "";
}

}  // namespace

int64_t LoadgenReport::server_errors() const {
  int64_t n = 0;
  for (const auto& [status, count] : by_status) {
    if (status >= 500) n += count;
  }
  return n;
}

bool LoadgenReport::passed() const {
  const bool nothing_worked = ok + disconnected == 0;  // e.g. every request got 401 or 404
  return server_errors() == 0 && transport_errors == 0 && protocol_errors == 0 && session_errors == 0 &&
         !nothing_worked;
}

Result<LoadgenReport> run_loadgen(const LoadgenOptions& opt) {
  if (opt.concurrency < 1) return Status::InvalidArgument("concurrency must be at least 1");
  if (opt.duration_s <= 0 && opt.requests < 1) return Status::InvalidArgument("requests must be at least 1");
  if (opt.max_tokens < 1) return Status::InvalidArgument("max_tokens must be at least 1");
  if (opt.disconnect_rate < 0 || opt.disconnect_rate > 1) {
    return Status::InvalidArgument("disconnect rate must be in [0, 1]");
  }
  Plan plan;
  plan.opt = opt;
  Result<Url> url = parse_url(opt.url);
  if (!url.ok()) return url.status();
  plan.url = url.value();
  plan.root = api_root(plan.url);
  Result<Endpoints> eps = resolve_endpoints(plan.url);
  if (!eps.ok()) return eps.status();
  plan.endpoints = eps.value();
  plan.extra = json::object();
  if (!opt.extra_body.empty()) {
    plan.extra = json::parse(opt.extra_body, nullptr, false);
    if (!plan.extra.is_object()) return Status::InvalidArgument("extra body is not a JSON object: " + opt.extra_body);
  }
  plan.timeout = std::chrono::milliseconds((int64_t)(opt.timeout_s * 1000.0));
  plan.model = opt.model.empty() ? discover_model(plan) : opt.model;
  if (plan.model.empty()) plan.model = "default";

  asio::io_context io;
  std::atomic<int64_t> issued{0};
  std::vector<std::unique_ptr<Worker>> workers;
  for (int64_t i = 0; i < opt.concurrency; ++i) {
    workers.push_back(std::make_unique<Worker>(io, plan, issued, (int)i));
  }
  plan.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.duration_s));
  for (auto& w : workers) w->start();
  // Workers stop by themselves; run() returns when the last handler has run.
  const int n_threads = (int)std::max<int64_t>(1, opt.io_threads);
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) {
    threads.emplace_back([&io] {
      asio::error_code ec;
      io.run(ec);
    });
  }
  asio::error_code ec;
  io.run(ec);
  for (std::thread& t : threads) t.join();

  // Merge.
  Tally all;
  for (auto& w : workers) {
    Tally& t = w->tally();
    all.requests += t.requests;
    all.ok += t.ok;
    all.http_errors += t.http_errors;
    all.transport += t.transport;
    all.protocol += t.protocol;
    all.disconnected += t.disconnected;
    for (const auto& [s, n] : t.by_status) all.by_status[s] += n;
    all.sessions_created += t.sessions_created;
    all.sessions_deleted += t.sessions_deleted;
    all.session_errors += t.session_errors;
    all.tokens += t.tokens;
    all.n_usage += t.n_usage;
    all.n_events += t.n_events;
    all.ttft.insert(all.ttft.end(), t.ttft.begin(), t.ttft.end());
    all.itl.insert(all.itl.end(), t.itl.begin(), t.itl.end());
    all.latency.insert(all.latency.end(), t.latency.begin(), t.latency.end());
    all.decode_tokens += t.decode_tokens;
    all.decode_spans.insert(all.decode_spans.end(), t.decode_spans.begin(), t.decode_spans.end());
    for (const auto& [e, n] : t.errors) all.errors[e] += n;
    if (t.any_request) {
      all.first_start = all.any_request ? std::min(all.first_start, t.first_start) : t.first_start;
      all.last_end = all.any_request ? std::max(all.last_end, t.last_end) : t.last_end;
      all.any_request = true;
    }
  }

  LoadgenReport r;
  r.endpoint = "http://" + plan.url.host_header() + plan.root + (opt.chat ? "/v1/chat/completions" : "/v1/completions");
  r.model = plan.model;
  r.concurrency = opt.concurrency;
  r.stream = opt.stream;
  r.sessions = opt.sessions;
  r.chat = opt.chat;
  r.max_tokens = opt.max_tokens;
  r.duration_s = opt.duration_s;
  r.disconnect_rate = opt.disconnect_rate;
  r.requests = all.requests;
  r.ok = all.ok;
  r.http_errors = all.http_errors;
  r.transport_errors = all.transport;
  r.protocol_errors = all.protocol;
  r.disconnected = all.disconnected;
  r.by_status = all.by_status;
  r.sessions_created = all.sessions_created;
  r.sessions_deleted = all.sessions_deleted;
  r.session_errors = all.session_errors;
  r.wall_s = all.any_request ? std::chrono::duration<double>(all.last_end - all.first_start).count() : 0.0;
  r.generated_tokens = all.tokens;
  r.token_source = all.n_usage && all.n_events ? "usage+events" : all.n_usage ? "usage" : all.n_events ? "events" : "none";
  if (r.wall_s > 0) {
    r.requests_per_s = (double)r.ok / r.wall_s;
    r.tokens_per_s = (double)r.generated_tokens / r.wall_s;
  }
  // Aggregate decode rate: decode tokens over the time during which at least one stream was
  // between its first and last token (the union of the spans), so prompt processing before a
  // request's first token counts only while another stream is decoding.
  {
    std::vector<std::pair<double, double>> spans;
    for (const auto& [b, e] : all.decode_spans) {
      spans.emplace_back(std::chrono::duration<double>(b - all.first_start).count(),
                         std::chrono::duration<double>(e - all.first_start).count());
    }
    const double busy = union_length(std::move(spans));
    r.decode_tokens = all.decode_tokens;
    r.decode_s = busy;
    if (busy > 0) r.decode_tokens_per_s = (double)all.decode_tokens / busy;
  }
  r.ttft_ms = stats_of(std::move(all.ttft));
  r.itl_ms = stats_of(std::move(all.itl));
  r.latency_ms = stats_of(std::move(all.latency));
  std::vector<std::pair<std::string, int64_t>> errs(all.errors.begin(), all.errors.end());
  std::stable_sort(errs.begin(), errs.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (errs.size() > kMaxErrorSamples) errs.resize(kMaxErrorSamples);
  r.error_samples = std::move(errs);
  return r;
}

Status check_health(const std::string& url_text, double timeout_s) {
  Result<Url> url = parse_url(url_text);
  if (!url.ok()) return url.status();
  HttpRequest req;
  req.path = url->path;
  Result<FetchResult> r = http_fetch(url.value(), req, std::chrono::milliseconds((int64_t)(timeout_s * 1000.0)));
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return Status::Unavailable(url_text + ": HTTP " + std::to_string(r->status) + " " + error_message(r->body));
  }
  return Status::OK();
}

}  // namespace rwkv::loadgen
