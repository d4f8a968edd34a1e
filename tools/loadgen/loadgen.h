// A load generator for rwkv-edge's OpenAI-style API: N concurrent workers, each sending
// /v1/completions or /v1/chat/completions requests one after another (optionally streamed,
// optionally inside its own session), and a report with latency percentiles and throughput.
//
//   LoadgenOptions o;
//   o.url = "http://127.0.0.1:8080";
//   o.concurrency = 8; o.requests = 64; o.stream = true; o.sessions = true;
//   Result<LoadgenReport> r = run_loadgen(o);
//   if (r.ok()) std::fputs(format_report_text(*r).c_str(), stdout);
//   return r.ok() && r->passed() ? 0 : 1;
//
// Every request uses its own TCP connection (Connection: close). Workers are Asio state
// machines on a small thread pool; each worker's handlers run on its own strand. A worker pauses
// before its next request after a 429/503 (Retry-After, else 0.5 s), a 409 "session busy"
// (50 ms: after a client disconnect the server frees the session at its next token) and a
// transport error (0.1 s), so a failing server is not hammered in a tight loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::loadgen {

struct LoadgenOptions {
  // The server: "http://host:port", optionally with a path prefix; a trailing "/v1",
  // "/v1/completions" or "/v1/chat/completions" is accepted and ignored. Required.
  std::string url;
  // Workers sending requests in parallel. Default: 1
  int64_t concurrency = 1;
  // Generation requests over all workers. Ignored when duration_s > 0. Default: 100
  int64_t requests = 100;
  // > 0: workers keep starting requests until this many seconds have passed (requests in
  // flight then finish). Default: 0 (off)
  double duration_s = 0;
  // Ask for SSE streaming and measure time to first token and inter-token latency. Default: false
  bool stream = false;
  // Each worker creates a session (POST /v1/sessions), sends all its requests in it and deletes
  // it at the end. Default: false
  bool sessions = false;
  // /v1/chat/completions with one user message instead of /v1/completions. Default: false
  bool chat = false;
  // max_tokens of every request. Default: 64
  int64_t max_tokens = 64;
  // The prompt (or the user message with chat). Default: a short English sentence
  std::string prompt = "The quick brown fox jumps over the lazy dog. Once upon a time,";
  // The model field. Default: "" = the first id listed by GET /v1/models, else "default"
  std::string model;
  // Sent as "Authorization: Bearer KEY" when non-empty. Default: ""
  std::string api_key;
  // A JSON object whose members are merged into every request body (e.g. {"temperature":0}).
  // Default: "" (none)
  std::string extra_body;
  // Probability that a streaming request is closed by the client after a random number (0 to
  // max_tokens - 1) of content events. Such requests count as disconnected. Default: 0
  double disconnect_rate = 0;
  // Per-request limit in seconds (connect to last byte); past it the request is a transport
  // error ("timeout"). Default: 300
  double timeout_s = 300;
  // Threads running the Asio io_context. Default: 2
  int64_t io_threads = 2;
  // Seed of the disconnect decisions. Default: 1
  uint64_t seed = 1;
};

// Latency statistics in milliseconds; n = 0 means no samples (the others are then 0).
struct LatencyStats {
  int64_t n = 0;
  double p50 = 0, p95 = 0, p99 = 0, mean = 0, max = 0;
};

struct LoadgenReport {
  // What was run.
  std::string endpoint;  // full URL of the generation endpoint
  std::string model;
  int64_t concurrency = 0;
  bool stream = false, sessions = false, chat = false;
  int64_t max_tokens = 0;
  double duration_s = 0;
  double disconnect_rate = 0;

  // Generation requests: each ends as exactly one of ok / http_errors / transport_errors /
  // protocol_errors / disconnected.
  int64_t requests = 0;
  int64_t ok = 0;
  int64_t http_errors = 0;       // a non-2xx status
  int64_t transport_errors = 0;  // connect/send/receive failure, timeout, cut-short or malformed HTTP
  int64_t protocol_errors = 0;   // 2xx but a body we cannot use: bad JSON, an SSE error event, no [DONE]
  int64_t disconnected = 0;      // closed on purpose by the client (--disconnect-rate)
  std::map<int, int64_t> by_status;  // every response whose header arrived, by HTTP status

  // Session bookkeeping (with sessions): creations and deletions, and failures of either.
  int64_t sessions_created = 0, sessions_deleted = 0, session_errors = 0;

  // From the start of the first generation request to the end of the last one.
  double wall_s = 0;
  double requests_per_s = 0;  // ok requests / wall_s
  // Generated tokens: usage.completion_tokens when the server sent usage, else (streaming) the
  // number of content events; ok and disconnected requests count.
  int64_t generated_tokens = 0;
  std::string token_source;  // "usage", "events", "usage+events" or "none"
  double tokens_per_s = 0;   // generated_tokens / wall_s
  // Streaming: the decode phase. Tokens after each ok request's first content event, the time
  // during which at least one request was between its first and last content event, and their
  // ratio (the aggregate decode rate, without the prompt processing before first tokens that
  // no other stream overlapped).
  int64_t decode_tokens = 0;
  double decode_s = 0;
  double decode_tokens_per_s = 0;

  LatencyStats ttft_ms;     // request start -> first event with non-empty text (streaming)
  LatencyStats itl_ms;      // gaps between consecutive content events (streaming)
  LatencyStats latency_ms;  // request start -> end of response, ok requests

  // Up to 8 distinct failure descriptions with their counts, for diagnosis.
  std::vector<std::pair<std::string, int64_t>> error_samples;

  // Responses with a 5xx status.
  int64_t server_errors() const;
  // True when nothing failed on the server's or the wire's side: no 5xx, no transport or
  // protocol errors, no session failures, and at least one request succeeded (ok or
  // disconnected on purpose). Other 4xx (e.g. 429 under overload) do not fail a run.
  bool passed() const;
};

// Runs the load and reports. Fails (InvalidArgument / Unavailable) only when the run cannot
// start: a bad URL or options, an unresolvable host, bad extra_body JSON. Failures of
// individual requests are counted in the report.
Result<LoadgenReport> run_loadgen(const LoadgenOptions& opt);

// Human-readable report, several lines ending in '\n'.
std::string format_report_text(const LoadgenReport& r);
// The same as one JSON object on one line (keys unique, so scripts can grep them).
std::string format_report_json(const LoadgenReport& r);

// GET `url` once: OK when the status is 200, Unavailable (with status or transport error)
// otherwise. For container health checks.
Status check_health(const std::string& url, double timeout_s);

}  // namespace rwkv::loadgen
