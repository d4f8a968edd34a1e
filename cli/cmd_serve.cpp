// serve: the OpenAI-style HTTP server. Wires the model, sessions, scheduler and routes; the
// HTTP socket is up first so /health can say 503 while the model loads.
#include <algorithm>
#include <atomic>
#include <functional>
#include <fstream>
#include <thread>

#include <asio.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/store/planner.h"
#include "server/log.h"
#include "server/routes.h"

namespace rwkv::cli {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string model_id_from(const ModelFile& mf, const std::string& path) {
  auto it = mf.metadata.find("general.name");
  if (it != mf.metadata.end() && !it->second.empty()) {
    std::string id;
    for (char c : it->second) id += (std::isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_') ? c : '-';
    return id;
  }
  std::string stem = path.substr(path.find_last_of('/') + 1);
  return stem.substr(0, stem.find_last_of('.'));
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  ArgParser p("rwkv-edge serve",
              "Serve a model over an OpenAI-style HTTP API: /v1/completions, /v1/chat/completions (SSE\n"
              "streaming or not), /v1/models, /v1/sessions, /health and /metrics. Requests in a session keep\n"
              "its RNN state, so a follow-up costs only its new tokens. SIGTERM/SIGINT drain and exit 0.");
  std::string model, host = "127.0.0.1", api_key_file, state_dir = "rwkv-edge-state", model_id, port_file, log_level = "info";
  std::vector<std::string> api_keys;
  int64_t port = 8080, threads = 0, max_sessions = 64, max_batch = 16, max_queue = 64, max_tokens = 4096,
          max_prompt = 16384, prefill_chunk = 64, prefix_cache_mb = 64, http_threads = 64, max_body = 1 << 20,
          drain_seconds = 10, spin_us = 500;
  double session_ttl_hours = 0;
  p.add_string("--model", "M", "model file (default: the embedded default model)", &model);
  p.add_string("--host", "ADDR", "address to listen on", &host);
  p.add_int("--port", "N", "port (0 = any free port)", &port, 0, 65535);
  p.add_string("--port-file", "FILE", "write the port actually bound to FILE", &port_file);
  p.add_list("--api-key", "K", "accept this key (repeatable); no key = no authentication", &api_keys);
  p.add_string("--api-key-file", "F", "accept the keys in F, one per line", &api_key_file);
  p.add_int("--threads", "N", "compute threads (0 = physical cores)", &threads, 0, 1024);
  p.add_int("--spin-us", "N",
            "microseconds an idle compute thread polls for work before sleeping (longer avoids wake-ups "
            "inside batched steps; shorter leaves more CPU to other processes)",
            &spin_us, 0, 1000000);
  p.add_int("--max-sessions", "N", "sessions kept in memory; idle ones beyond are written to --state-dir", &max_sessions, 1, 1 << 20);
  p.add_string("--state-dir", "DIR", "where idle sessions are kept (created if missing)", &state_dir);
  p.add_float("--session-ttl-hours", "H",
              "delete sessions idle for more than H hours, from memory and --state-dir (0 = keep them forever; "
              "a bound on the directory's size when clients do not delete their sessions)",
              &session_ttl_hours, 0.0, 1e6);
  p.add_int("--max-batch", "N", "sequences advanced together per step", &max_batch, 1, 256);
  p.add_int("--max-queue", "N", "requests waiting for a batch slot before 429", &max_queue, 0, 1 << 20);
  p.add_int("--max-tokens-limit", "N", "largest max_tokens a request may ask for", &max_tokens, 1, 1 << 20);
  p.add_int("--max-prompt-tokens", "N", "longest prompt accepted, in tokens", &max_prompt, 1, 1 << 24);
  p.add_int("--prefill-chunk", "N", "prompt rows per scheduler step", &prefill_chunk, 1, 4096);
  p.add_int("--prefix-cache-mb", "N", "prefix cache budget in MiB (0 = off)", &prefix_cache_mb, 0, 1 << 20);
  p.add_int("--http-threads", "N", "HTTP worker threads (open connections served at once)", &http_threads, 4, 4096);
  p.add_int("--max-body-bytes", "N", "largest request body; larger gets 413", &max_body, 1024, 1 << 30);
  p.add_int("--drain-seconds", "N", "on SIGTERM, let running requests finish this long", &drain_seconds, 0, 3600);
  p.add_string("--model-id", "ID", "model name reported by /v1/models (default: from the file)", &model_id);
  p.add_string("--log-level", "L", "debug, info, warn or error", &log_level);
  std::string budget_text;
  p.add_string("--mem-budget", "BYTES",
               "memory for the weights, caches and the --max-sessions states (e.g. 64M, 1G; default: all mapped)",
               &budget_text);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  LoadOptions lo;
  if (!budget_text.empty()) {
    Result<size_t> b = store::parse_byte_size(budget_text);
    if (!b.ok()) return fail("serve", b.status().with_context("--mem-budget"));
    lo.mem_budget = b.value();
    lo.budget_states = max_sessions;
    lo.budget_chunk_rows = prefill_chunk;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  apply_threads(threads);
  kern::set_poll_us(spin_us);

  if (!api_key_file.empty()) {
    std::ifstream f(api_key_file);
    if (!f) return fail("serve", Status::NotFound(api_key_file + ": cannot read the API key file"));
    std::string line;
    while (std::getline(f, line)) {
      line = trim(line);
      if (!line.empty() && line[0] != '#') api_keys.push_back(line);
    }
    if (api_keys.empty()) return fail("serve", Status::InvalidArgument(api_key_file + ": no keys in the file"));
  }
  Result<std::string> path = resolve_model_path(model);
  if (!path.ok()) return fail("serve", path.status());

  server::ServerContext ctx;
  ctx.api_keys = api_keys;
  ctx.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  server::HttpOptions hopt;
  hopt.threads = (int)http_threads;
  hopt.max_body_bytes = (size_t)max_body;
  server::HttpServer http(hopt);
  server::register_routes(http, ctx);
  Result<int> bound = http.bind(host, (int)port);
  if (!bound.ok()) return fail("serve", bound.status());
  if (!port_file.empty()) {
    std::ofstream pf(port_file + ".tmp");
    pf << bound.value() << "\n";
    pf.close();
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  server::log_info("listening on http://{}:{} ({} API key{})", host, bound.value(), api_keys.size(),
                   api_keys.size() == 1 ? "" : "s");

  // Load in the background: /health answers 503 until this is done. A model that cannot be
  // loaded ends the process with exit code 1, so supervisors and containers see it at once.
  std::atomic<bool> load_failed{false};
  auto give_up = [&](const Status& st) {
    ctx.load_error = st.to_string();
    server::log_error("{}", ctx.load_error);
    load_failed.store(true);
    http.stop();
  };
  std::thread loader([&] {
    Result<std::shared_ptr<Model>> m = load_model(path.value(), lo);
    if (!m.ok()) return give_up(m.status());
    Result<std::unique_ptr<Tokenizer>> tok = model_tokenizer(**m);
    if (!tok.ok()) return give_up(tok.status());
    const Hparams& hp = (*m)->hparams();
    ctx.model_id = model_id.empty() ? model_id_from((*m)->file(), path.value()) : model_id;
    ctx.limits.model_id = ctx.model_id;
    ctx.limits.max_tokens_limit = max_tokens;
    ctx.limits.max_prompt_tokens = max_prompt;
    ctx.limits.n_vocab = (int32_t)hp.n_vocab;
    ctx.sessions = std::make_unique<server::SessionStore>(state_dir, (size_t)max_sessions, hp);
    Status st = ctx.sessions->open();
    if (!st.ok()) return give_up(st);
    ctx.model = m.value();
    ctx.tokenizer = std::shared_ptr<const Tokenizer>(std::move(tok).value());
    server::SchedulerOptions so;
    so.max_batch = max_batch;
    so.max_queue = max_queue;
    so.prefill_chunk = prefill_chunk;
    so.max_prompt_tokens = max_prompt;
    so.prefix_cache_bytes = (size_t)prefix_cache_mb << 20;
    ctx.scheduler = std::make_unique<server::Scheduler>(ctx.model, ctx.tokenizer, ctx.sessions.get(), so);
    ctx.scheduler->start();
    ctx.ready.store(true);
    if (const store::MemoryPlan* plan = (*m)->memory_plan()) server::log_info("weight store: {}", plan->describe());
    server::log_info("ready: model '{}' (RWKV v{}, {} layers, n_embd {}, vocab {}), kernels {} x{} threads", ctx.model_id,
                     version_name(hp.version), hp.n_layer, hp.n_embd, hp.n_vocab, kern::kernels().name, kern::num_threads());
  });

  // Signals on an Asio loop: drain, stop HTTP, persist sessions.
  asio::io_context io;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::thread shutdown;
  signals.async_wait([&](const asio::error_code& ec, int sig) {
    if (ec) return;
    server::log_info("signal {}: draining (up to {} s)", sig, drain_seconds);
    shutdown = std::thread([&] {
      ctx.draining.store(true);
      if (loader.joinable()) loader.join();
      if (ctx.scheduler) ctx.scheduler->drain(std::chrono::seconds(drain_seconds));
      // Let the handlers write the last chunks and [DONE] before the sockets close.
      for (int i = 0; i < 500 && ctx.in_flight.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      http.stop();
    });
  });
  // Idle sessions past --session-ttl-hours are deleted every tenth of the TTL (at most every
  // minute, at least every second).
  asio::steady_timer expiry(io);
  std::function<void()> schedule_expiry = [&] {
    const double ttl_s = session_ttl_hours * 3600.0;
    expiry.expires_after(std::chrono::milliseconds((int64_t)(1000.0 * std::clamp(ttl_s / 10.0, 1.0, 60.0))));
    expiry.async_wait([&](const asio::error_code& ec) {
      if (ec) return;
      if (ctx.ready.load() && ctx.sessions) {
        const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
        const size_t n = ctx.sessions->expire_idle(std::llround(ttl_s), now);
        if (n > 0) server::log_info("deleted {} session(s) idle for more than {} h", n, session_ttl_hours);
      }
      schedule_expiry();
    });
  };
  if (session_ttl_hours > 0) schedule_expiry();
  std::thread signal_thread([&] { io.run(); });

  http.run();  // returns after http.stop()
  io.stop();
  signal_thread.join();
  if (shutdown.joinable()) shutdown.join();
  if (loader.joinable()) loader.join();
  int rc = load_failed.load() ? 1 : 0;
  if (ctx.scheduler) ctx.scheduler->stop();
  if (ctx.sessions) {
    Status st = ctx.sessions->persist_all();
    if (!st.ok()) {
      server::log_error("persisting sessions failed: {}", st.to_string());
      rc = 1;
    } else {
      server::log_info("sessions persisted to {}", state_dir);
    }
  }
  server::log_info("stopped");
  return rc;
}

}  // namespace rwkv::cli
