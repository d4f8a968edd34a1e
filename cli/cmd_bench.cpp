// bench: prefill and decode speed of a model, and decode's effective memory bandwidth.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <random>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/bench.h"

namespace rwkv::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  ArgParser p("rwkv-edge bench",
              "Measure a model: prefill tokens/s (one sequence, chunked), decode tokens/s (one token per\n"
              "step) and decode's effective bandwidth = bytes of weights read per token x tokens/s.\n"
              "Figures are medians over --runs runs. Token ids are random (any model works).");
  std::string model;
  int64_t threads = 0, prompt = 128, decode = 64, runs = 5, chunk = 64, seed = 1, bw_mb = 1024;
  p.add_string("--model", "M", "model file (default: the embedded default model)", &model);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  p.add_int("--prompt-tokens", "N", "prefill length", &prompt, 1, 1 << 20);
  p.add_int("--decode-tokens", "N", "decode steps per run", &decode, 1, 1 << 20);
  p.add_int("--chunk", "N", "prefill chunk rows", &chunk, 1, 4096);
  p.add_int("--runs", "N", "runs (median reported)", &runs, 1, 1000);
  p.add_int("--seed", "S", "seed of the random token ids", &seed, 0, INT64_MAX);
  p.add_int("--bandwidth-mb", "N", "buffer for the read-bandwidth measurement, MiB (0 = skip)", &bw_mb, 0, 1 << 20);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  apply_threads(threads);
  Result<std::string> path = resolve_model_path(model);
  if (!path.ok()) return fail("bench", path.status());
  Result<std::shared_ptr<Model>> m = load_model(path.value());
  if (!m.ok()) return fail("bench", m.status());
  Model& mod = *m.value();
  mod.max_chunk_rows = chunk;
  const Hparams& hp = mod.hparams();
  std::mt19937_64 rng((uint64_t)seed);
  std::vector<int32_t> toks((size_t)prompt);
  for (int32_t& t : toks) t = (int32_t)(rng() % (uint64_t)hp.n_vocab);
  std::vector<float> logits((size_t)hp.n_vocab);

  using clock = std::chrono::steady_clock;
  std::vector<double> pre, dec;
  // One warm-up run pages the weights in.
  for (int64_t r = 0; r < runs + 1; ++r) {
    State st = mod.new_state();
    const auto t0 = clock::now();
    Status s = mod.eval(st, toks.data(), toks.size(), logits.data());
    if (!s.ok()) return fail("bench", s);
    const auto t1 = clock::now();
    int32_t next = toks[0];
    for (int64_t i = 0; i < decode; ++i) {
      s = mod.eval(st, &next, 1, logits.data());
      if (!s.ok()) return fail("bench", s);
      next = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    const auto t2 = clock::now();
    if (r == 0) continue;
    pre.push_back((double)prompt / std::chrono::duration<double>(t1 - t0).count());
    dec.push_back((double)decode / std::chrono::duration<double>(t2 - t1).count());
  }
  const double bytes = (double)mod.weight_bytes_per_token();
  // The machine's read bandwidth, measured in this run, is the limit decode is judged by.
  const double read_bw = bw_mb > 0 ? kern::measure_read_bandwidth_gbs((size_t)bw_mb << 20, kern::num_threads()) : 0.0;
  const double dec_tps = median(dec);
  std::printf("model:            %s (RWKV v%s, %" PRId64 " layers, n_embd %" PRId64 ", vocab %" PRId64 ")\n",
              path.value().c_str(), version_name(hp.version), hp.n_layer, hp.n_embd, hp.n_vocab);
  std::printf("kernels:          %s, %d threads\n", kern::kernels().name, kern::num_threads());
  std::printf("prefill:          %.1f tokens/s (%" PRId64 " tokens, chunk %" PRId64 ", median of %" PRId64 ")\n",
              median(pre), prompt, chunk, runs);
  std::printf("decode:           %.2f tokens/s (median of %" PRId64 " runs of %" PRId64 " tokens)\n", dec_tps, runs, decode);
  std::printf("weights/token:    %.1f MB\n", bytes / 1e6);
  std::printf("decode bandwidth: %.2f GB/s effective\n", bytes * dec_tps / 1e9);
  if (read_bw > 0) {
    std::printf("read bandwidth:   %.2f GB/s (STREAM-like read, %" PRId64 " MiB, same threads)\n", read_bw, bw_mb);
    std::printf("decode / read:    %.0f%%\n", 100.0 * bytes * dec_tps / 1e9 / read_bw);
  }
  return 0;
}

}  // namespace rwkv::cli
