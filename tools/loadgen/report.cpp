// Formatting of a LoadgenReport: human-readable text and one-line JSON.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "tools/loadgen/loadgen.h"

namespace rwkv::loadgen {
namespace {

std::string printf_string(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string printf_string(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

std::string latency_line(const char* label, const LatencyStats& s) {
  if (s.n == 0) return printf_string("%-13s -\n", label);
  return printf_string("%-13s p50 %.1f  p95 %.1f  p99 %.1f  (mean %.1f, max %.1f, n=%" PRId64 ")\n", label, s.p50,
                       s.p95, s.p99, s.mean, s.max, s.n);
}

void put_latency(nlohmann::ordered_json& j, const std::string& prefix, const LatencyStats& s) {
  j[prefix + "_n"] = s.n;
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"p50", s.p50}, {"p95", s.p95}, {"p99", s.p99}, {"mean", s.mean}, {"max", s.max}}) {
    if (s.n == 0) {
      j[prefix + "_" + name] = nullptr;
    } else {
      j[prefix + "_" + name] = value;
    }
  }
}

}  // namespace

std::string format_report_text(const LoadgenReport& r) {
  std::string out;
  out += "endpoint:     " + r.endpoint + " (model " + r.model + ")\n";
  std::string mode = printf_string("concurrency %" PRId64 ", max_tokens %" PRId64, r.concurrency, r.max_tokens);
  if (r.stream) mode += ", stream";
  if (r.sessions) mode += ", sessions";
  if (r.chat) mode += ", chat";
  if (r.duration_s > 0) mode += printf_string(", for %.0f s", r.duration_s);
  if (r.disconnect_rate > 0) mode += printf_string(", disconnect rate %.2f", r.disconnect_rate);
  out += "run:          " + mode + "\n";
  out += printf_string("requests:     %" PRId64 ": %" PRId64 " ok, %" PRId64 " HTTP errors, %" PRId64
                       " transport errors, %" PRId64 " protocol errors, %" PRId64 " disconnected\n",
                       r.requests, r.ok, r.http_errors, r.transport_errors, r.protocol_errors, r.disconnected);
  std::string statuses;
  for (const auto& [status, n] : r.by_status) {
    statuses += (statuses.empty() ? "" : ", ") + printf_string("%d x %" PRId64, status, n);
  }
  out += "HTTP status:  " + (statuses.empty() ? std::string("-") : statuses) + "\n";
  if (r.sessions) {
    out += printf_string("sessions:     %" PRId64 " created, %" PRId64 " deleted, %" PRId64 " errors\n",
                         r.sessions_created, r.sessions_deleted, r.session_errors);
  }
  out += printf_string("wall time:    %.3f s\n", r.wall_s);
  out += printf_string("requests/s:   %.2f (ok requests)\n", r.requests_per_s);
  out += printf_string("tokens:       %" PRId64 " generated (from %s), %.1f tokens/s aggregate\n", r.generated_tokens,
                       r.token_source.c_str(), r.tokens_per_s);
  if (r.stream) {
    out += printf_string("decode:       %" PRId64 " tokens after the first of each request, in %.3f s with a stream "
                         "decoding: %.1f tokens/s aggregate\n",
                         r.decode_tokens, r.decode_s, r.decode_tokens_per_s);
    out += latency_line("TTFT ms:", r.ttft_ms);
    out += latency_line("ITL ms:", r.itl_ms);
  }
  out += latency_line("latency ms:", r.latency_ms);
  if (!r.error_samples.empty()) {
    out += "errors:\n";
    for (const auto& [what, n] : r.error_samples) out += printf_string("  %" PRId64 " x ", n) + what + "\n";
  }
  if (r.passed()) {
    out += "result:       PASS (no 5xx, no transport, protocol or session errors)\n";
  } else {
    out += printf_string("result:       FAIL (%" PRId64 " 5xx, %" PRId64 " transport, %" PRId64 " protocol, %" PRId64
                         " session errors%s)\n",
                         r.server_errors(), r.transport_errors, r.protocol_errors, r.session_errors,
                         r.ok + r.disconnected == 0 ? "; no request succeeded" : "");
  }
  return out;
}

std::string format_report_json(const LoadgenReport& r) {
  nlohmann::ordered_json j;
  j["endpoint"] = r.endpoint;
  j["model"] = r.model;
  j["concurrency"] = r.concurrency;
  j["stream"] = r.stream;
  j["sessions"] = r.sessions;
  j["chat"] = r.chat;
  j["max_tokens"] = r.max_tokens;
  j["duration_s"] = r.duration_s;
  j["disconnect_rate"] = r.disconnect_rate;
  j["requests"] = r.requests;
  j["ok"] = r.ok;
  j["http_errors"] = r.http_errors;
  j["server_errors"] = r.server_errors();
  j["transport_errors"] = r.transport_errors;
  j["protocol_errors"] = r.protocol_errors;
  j["disconnected"] = r.disconnected;
  nlohmann::ordered_json statuses = nlohmann::ordered_json::object();
  for (const auto& [status, n] : r.by_status) statuses[std::to_string(status)] = n;
  j["by_status"] = statuses;
  j["sessions_created"] = r.sessions_created;
  j["sessions_deleted"] = r.sessions_deleted;
  j["session_errors"] = r.session_errors;
  j["wall_s"] = r.wall_s;
  j["requests_per_s"] = r.requests_per_s;
  j["generated_tokens"] = r.generated_tokens;
  j["token_source"] = r.token_source;
  j["tokens_per_s"] = r.tokens_per_s;
  j["decode_tokens"] = r.decode_tokens;
  j["decode_s"] = r.decode_s;
  j["decode_tokens_per_s"] = r.decode_tokens_per_s;
  put_latency(j, "ttft_ms", r.ttft_ms);
  put_latency(j, "itl_ms", r.itl_ms);
  put_latency(j, "latency_ms", r.latency_ms);
  nlohmann::ordered_json errs = nlohmann::ordered_json::array();
  for (const auto& [what, n] : r.error_samples) errs.push_back({{"error", what}, {"count", n}});
  j["errors"] = errs;
  j["pass"] = r.passed();
  // Error samples quote server text; replace invalid UTF-8 rather than fail to print.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace rwkv::loadgen
