// loadgen: concurrent OpenAI-style requests against a running server, with latency percentiles.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "tools/loadgen/loadgen.h"

namespace rwkv::cli {

int cmd_loadgen(int argc, char** argv) {
  ArgParser p("rwkv-edge loadgen",
              "Send concurrent /v1/completions (or --chat /v1/chat/completions) requests to a running server\n"
              "and report requests by outcome, throughput, and TTFT / inter-token / total latency\n"
              "percentiles. One TCP connection per request. Exit code 0 when there was no 5xx, transport,\n"
              "protocol (bad body, SSE error event, missing [DONE]) or session error and at least one\n"
              "request succeeded, else 1.\n"
              "--health URL only checks that GET URL answers 200 (for container health checks).");
  loadgen::LoadgenOptions o;
  std::string prompt_file, health, json_file;
  bool as_json = false;
  double health_timeout = 5;
  int64_t seed = (int64_t)o.seed;
  p.add_string("--url", "URL", "server base URL, e.g. http://127.0.0.1:8080 (a /v1 suffix is fine)", &o.url);
  p.add_int("--concurrency", "N", "concurrent workers", &o.concurrency, 1, 4096);
  p.add_int("--requests", "M", "requests in total (ignored with --duration)", &o.requests, 1, INT64_MAX);
  p.add_float("--duration", "SECONDS", "keep sending until this much time has passed (0 = use --requests)",
              &o.duration_s, 0.0, 7 * 86400.0);
  p.add_flag("--stream", "stream (SSE) and measure time to first token and inter-token latency", &o.stream);
  p.add_flag("--sessions", "each worker creates a session and sends its requests in it", &o.sessions);
  p.add_flag("--chat", "use /v1/chat/completions with the prompt as one user message", &o.chat);
  p.add_int("--max-tokens", "T", "max_tokens of every request", &o.max_tokens, 1, 1 << 20);
  p.add_string("--prompt", "TEXT", "the prompt", &o.prompt);
  p.add_string("--prompt-file", "F", "read the prompt from a file (overrides --prompt)", &prompt_file);
  p.add_string("--model", "NAME", "model field (default: first id of GET /v1/models)", &o.model);
  p.add_string("--api-key", "K", "send Authorization: Bearer K", &o.api_key);
  p.add_string("--extra", "JSON", "JSON object merged into every request body, e.g. '{\"temperature\":0}'",
               &o.extra_body);
  p.add_float("--disconnect-rate", "P", "probability that a streamed request is closed early by the client",
              &o.disconnect_rate, 0.0, 1.0);
  p.add_float("--timeout", "SECONDS", "per-request time limit (then a transport error)", &o.timeout_s, 0.001, 86400.0);
  p.add_int("--io-threads", "N", "threads running the network event loop", &o.io_threads, 1, 64);
  p.add_int("--seed", "S", "seed of the random disconnect decisions", &seed, 0, INT64_MAX);
  p.add_flag("--json", "print the report as one JSON object", &as_json);
  p.add_string("--json-file", "F", "also write the JSON report to F (for scripts)", &json_file);
  p.add_string("--health", "URL", "only GET URL; exit 0 when it answers 200, else 1", &health);
  p.add_float("--health-timeout", "SECONDS", "time limit of --health", &health_timeout, 0.001, 3600.0);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;

  if (!health.empty()) {
    Status st = loadgen::check_health(health, health_timeout);
    if (!st.ok()) return fail("loadgen", st);
    std::printf("%s: ok\n", health.c_str());
    return 0;
  }
  if (o.url.empty()) {
    std::fprintf(stderr, "error: missing --url URL (see rwkv-edge loadgen --help)\n");
    return 2;
  }
  if (!prompt_file.empty()) {
    Result<std::string> text = read_text_file(prompt_file);
    if (!text.ok()) return fail("loadgen", text.status());
    o.prompt = text.value();
  }
  o.seed = (uint64_t)seed;
  if (o.disconnect_rate > 0 && !o.stream) {
    std::fprintf(stderr, "rwkv-edge loadgen: note: --disconnect-rate only applies to --stream requests\n");
  }

  Result<loadgen::LoadgenReport> r = loadgen::run_loadgen(o);
  if (!r.ok()) return fail("loadgen", r.status());
  const std::string text = as_json ? loadgen::format_report_json(*r) : loadgen::format_report_text(*r);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  if (!json_file.empty()) {
    const std::string js = loadgen::format_report_json(*r);
    std::FILE* f = std::fopen(json_file.c_str(), "w");
    bool written = f != nullptr && std::fputs(js.c_str(), f) >= 0;
    if (f != nullptr && std::fclose(f) != 0) written = false;
    if (!written) {
      return fail("loadgen", Status::IOError(json_file + ": cannot write the JSON report"));
    }
  }
  return r->passed() ? 0 : 1;
}

}  // namespace rwkv::cli
