// generate: prompt -> streamed text on stdout.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/sampler/sampler.h"
#include "engine/store/planner.h"
#include "engine/store/process_memory.h"
#include "engine/tokenizer/stream_decoder.h"

namespace rwkv::cli {

int cmd_generate(int argc, char** argv) {
  ArgParser p("rwkv-edge generate", "Generate text from a prompt; the text streams to stdout, statistics to stderr.");
  std::string model, prompt;
  int64_t max_tokens = 200, top_k = 0, threads = 0, seed = 0;
  double temperature = 1.0, top_p = 0.85, min_p = 0.0, presence = 0.0, frequency = 0.0, decay = 0.996;
  std::vector<std::string> stops;
  bool quiet = false;
  p.add_string("--model", "M", "model file (default: the embedded default model)", &model);
  p.add_string("--prompt", "TEXT", "the prompt", &prompt, true);
  p.add_int("--max-tokens", "N", "tokens to generate", &max_tokens, 1, 1 << 20);
  p.add_float("--temperature", "T", "sampling temperature; 0 = greedy", &temperature, 0.0, 100.0);
  p.add_float("--top-p", "P", "nucleus sampling mass, in (0, 1]", &top_p, 1e-9, 1.0);
  p.add_int("--top-k", "K", "keep the K most likely tokens (0 = off)", &top_k, 0, 1 << 24);
  p.add_float("--min-p", "P", "drop tokens below P x the top probability", &min_p, 0.0, 0.999999);
  p.add_float("--presence-penalty", "X", "RWKV-style presence penalty", &presence, -2.0, 2.0);
  p.add_float("--frequency-penalty", "X", "RWKV-style frequency penalty", &frequency, -2.0, 2.0);
  p.add_float("--penalty-decay", "X", "decay of the occurrence counts per token", &decay, 0.0, 1.0);
  p.add_int("--seed", "S", "random seed (same seed, same text)", &seed, 0, INT64_MAX);
  p.add_list("--stop", "TEXT", "stop when TEXT appears (repeatable; not printed)", &stops);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  p.add_flag("--quiet", "no statistics on stderr", &quiet);
  std::string budget_text;
  p.add_string("--mem-budget", "BYTES",
               "serve the weights from a store with this memory budget (e.g. 64M, 1G; default: all mapped)",
               &budget_text);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  apply_threads(threads);
  LoadOptions lo;
  if (!budget_text.empty()) {
    Result<size_t> b = store::parse_byte_size(budget_text);
    if (!b.ok()) return fail("generate", b.status().with_context("--mem-budget"));
    lo.mem_budget = b.value();
  }

  Result<std::string> path = resolve_model_path(model);
  if (!path.ok()) return fail("generate", path.status());
  Result<std::shared_ptr<Model>> m = load_model(path.value(), lo);
  if (!m.ok()) return fail("generate", m.status());
  Result<std::unique_ptr<Tokenizer>> tok = model_tokenizer(**m);
  if (!tok.ok()) return fail("generate", tok.status());
  const Model& mod = **m;
  const int32_t V = (int32_t)mod.hparams().n_vocab;

  SamplerParams sp;
  sp.temperature = (float)temperature;
  sp.top_p = (float)top_p;
  sp.top_k = (int32_t)top_k;
  sp.min_p = (float)min_p;
  sp.presence_penalty = (float)presence;
  sp.frequency_penalty = (float)frequency;
  sp.penalty_decay = (float)decay;
  sp.seed = (uint64_t)seed;
  Result<Sampler> sampler = Sampler::create(sp, V);
  if (!sampler.ok()) return fail("generate", sampler.status());

  const std::vector<int32_t> ids = (*tok)->encode(prompt);
  if (ids.empty()) return fail("generate", Status::InvalidArgument("the prompt is empty"));
  State st = mod.new_state();
  std::vector<float> logits((size_t)V);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  Status s = mod.eval(st, ids.data(), ids.size(), logits.data());
  if (!s.ok()) return fail("generate", s);
  const auto t1 = clock::now();

  StreamDecoder dec(**tok, stops);
  const int32_t eos = (*tok)->eos_id();
  int64_t generated = 0;
  const char* reason = "length";
  for (; generated < max_tokens; ++generated) {
    const int32_t next = sampler->sample(logits.data());
    if (next == eos) {
      reason = "stop";
      break;
    }
    sampler->accept(next);
    const std::string text = dec.push(next);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    if (dec.stopped()) {
      reason = "stop";
      ++generated;
      break;
    }
    s = mod.eval(st, &next, 1, logits.data());
    if (!s.ok()) return fail("generate", s);
  }
  const std::string rest = dec.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const auto t2 = clock::now();
  if (!quiet) {
    const double pre = std::chrono::duration<double>(t1 - t0).count();
    const double dec_s = std::chrono::duration<double>(t2 - t1).count();
    const store::ProcessMemory mem = store::read_process_memory();
    std::fprintf(stderr,
                 "[prompt %zu tokens, %.1f tok/s; generated %" PRId64 " tokens, %.1f tok/s; finish: %s; peak RSS %s]\n",
                 ids.size(), ids.size() / std::max(pre, 1e-9), generated, generated / std::max(dec_s, 1e-9), reason,
                 mem.peak_rss_bytes < 0 ? "unknown" : store::format_bytes((double)mem.peak_rss_bytes).c_str());
    const store::StoreStats ws = mod.store_stats();
    if (ws.enabled) {
      std::fprintf(stderr, "[weight store: %.1f KB read from the file; hit rates embedding %.1f%%, FFN %.1f%%, head %.1f%%]\n",
                   (double)ws.bytes_read() / 1e3, 100 * ws.emb.hit_rate(), 100 * ws.ffn.hit_rate(),
                   100 * ws.head.hit_rate());
    }
  }
  return 0;
}

}  // namespace rwkv::cli
