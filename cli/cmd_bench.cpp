// bench: prefill and decode speed of a model, and decode's effective memory bandwidth;
// `bench kernels`: the gemm kernels' GB/s against the machine's read bandwidth.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/store/planner.h"
#include "engine/store/process_memory.h"
#include "kernels/bench.h"

namespace rwkv::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// --- bench kernels -------------------------------------------------------------------------------

// The largest CPU cache in bytes from sysfs (0 when unknown, e.g. under qemu).
int64_t last_level_cache_bytes() {
  int64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string size;
    if (!(in >> size) || size.empty()) continue;
    int64_t v = std::atoll(size.c_str());
    const char unit = size.back();
    if (unit == 'K') v <<= 10;
    if (unit == 'M') v <<= 20;
    best = std::max(best, v);
  }
  return best;
}

// One weight type's figures: GB/s of weights for n = 1 and n = 8 and the read bandwidth
// measured just before them.
struct KernelRow {
  DType type;
  int64_t rows, cols;
  double read_gbs, read_pf_gbs, gbs1, gbs8;
  double ms(double gbs) const { return (double)dtype_row_bytes(type, cols) * (double)rows / gbs / 1e6; }
  // Nanoseconds per weight of a matrix-vector product: comparable across types and shapes.
  double ns_per_weight1() const { return ms(gbs1) * 1e6 / ((double)rows * (double)cols); }
};

// The sparse FFN kernels per type: gemv_rows and axpy_rows over 10%, 30% and 50% of the rows of
// a `cols`-wide matrix of `bytes` bytes, GB/s of the active rows' bytes against the read
// bandwidth measured just before that type.
void bench_sparse(const std::vector<DType>& types, int64_t cols, size_t bytes, int threads, int iters) {
  std::printf("\nsparse FFN kernels: %" PRId64 " columns, %zu MiB per matrix; GB/s of the active rows' bytes\n", cols,
              bytes >> 20);
  std::printf("%-5s %9s  %8s | %7s %8s %6s | %8s %6s\n", "type", "rows", "read", "active", "gemv GB/s", "%read",
              "axpy GB/s", "%read");
  std::fflush(stdout);
  for (DType t : types) {
    const int64_t rows = std::max<int64_t>(1, (int64_t)(bytes / dtype_row_bytes(t, cols)));
    std::vector<uint8_t> buf(dtype_row_bytes(t, cols) * (size_t)rows);
    kern::fill_random_weights(t, rows, cols, buf.data(), 2);
    const kern::MatView w{t, rows, cols, buf.data()};
    const double read = kern::measure_read_bandwidth_gbs(bytes, threads);
    for (double fraction : {0.1, 0.3, 0.5}) {
      const kern::SparseGbs g = kern::bench_sparse_gbs(w, fraction, iters);
      std::printf("%-5s %9" PRId64 "  %8.2f | %6.0f%% %8.2f %5.0f%% | %8.2f %5.0f%%\n", dtype_name(t), rows, read,
                  100.0 * (double)g.active / (double)rows, g.gemv_rows, 100 * g.gemv_rows / read, g.axpy_rows,
                  100 * g.axpy_rows / read);
      std::fflush(stdout);
    }
  }
}

int bench_kernels(int argc, char** argv) {
  ArgParser p("rwkv-edge bench kernels",
              "Measure the gemm kernels on matrices larger than the last-level cache: GB/s of weights\n"
              "streamed by a matrix-vector product (n=1) and by a batch of 8 vectors (n=8), per weight\n"
              "type, each next to the read bandwidth measured just before it in the same run (a\n"
              "STREAM-like read with the same threads), so every figure is a fraction of the limit.\n"
              "Then: int8 (q8_0, i8r) vs f32 matvec speed, and the time of a batch of 8 over one vector.\n"
              "Then the sparse FFN kernels (gemv_rows, axpy_rows) on a --sparse-cols wide matrix of\n"
              "--mb MiB with 10%, 30% and 50% of its rows active, per --sparse-types type: GB/s of the\n"
              "active rows' bytes against the read bandwidth.\n"
              "Every matrix has --mb MiB of weights (rows follow from the type); times are medians.");
  int64_t threads = 0, mb = 1024, cols = 4096, iters = 9, sparse_cols = 2048;
  std::string types = "f32,f16,q8_0,q5_0,q4_0,i8r,i1r", sparse_types = "f16,q8_0,i8r";
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  p.add_int("--mb", "SIZE", "MiB of weights per matrix, and of the bandwidth buffer", &mb, 1, 1 << 20);
  p.add_int("--cols", "N", "columns of every matrix (a multiple of 32)", &cols, 32, 1 << 20);
  p.add_int("--iters", "N", "timed calls per figure, after one untimed", &iters, 1, 10000);
  p.add_string("--types", "LIST", "comma-separated weight types (empty: none)", &types);
  p.add_string("--sparse-types", "LIST", "weight types of the sparse line: f32 f16 q8_0 i8r (empty: none)",
               &sparse_types);
  p.add_int("--sparse-cols", "N", "columns of the sparse line's matrix (a multiple of 32)", &sparse_cols, 32, 1 << 20);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  if (cols % 32 != 0 || sparse_cols % 32 != 0) {
    std::fprintf(stderr, "error: --cols and --sparse-cols must be multiples of 32\n");
    return 2;
  }
  // Comma-separated type names, each one of `allowed`.
  auto parse_types = [](const char* flag, const std::string& text, std::initializer_list<DType> allowed,
                        std::vector<DType>* out) {
    std::stringstream ss(text);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (name.empty()) continue;
      bool found = false;
      for (DType t : allowed) {
        if (name == dtype_name(t)) out->push_back(t), found = true;
      }
      if (!found) {
        std::string names;
        for (DType t : allowed) names += std::string(" ") + dtype_name(t);
        std::fprintf(stderr, "error: %s: unknown weight type '%s' (%s)\n", flag, name.c_str(), names.c_str() + 1);
        return false;
      }
    }
    return true;
  };
  std::vector<DType> list, sparse_list;
  if (!parse_types("--types", types,
                   {DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ5_0, DType::kQ5_1, DType::kQ4_0, DType::kQ4_1,
                    DType::kI8R, DType::kI1R},
                   &list) ||
      !parse_types("--sparse-types", sparse_types, {DType::kF32, DType::kF16, DType::kQ8_0, DType::kI8R},
                   &sparse_list)) {
    return 2;
  }
  apply_threads(threads);
  const int nthreads = kern::num_threads();
  const size_t bytes = (size_t)mb << 20;
  const int64_t llc = last_level_cache_bytes();
  std::printf("kernels:      %s, %d threads\n", kern::kernels().name, nthreads);
  std::printf("matrices:     %" PRId64 " MiB of weights each, %" PRId64 " columns", mb, cols);
  if (llc > 0) std::printf("; last-level cache %" PRId64 " MiB", llc >> 20);
  std::printf("\n");
  if (llc > 0 && (int64_t)bytes < 2 * llc) {
    std::printf("warning:      --mb is under twice the last-level cache: figures may include cache hits\n");
  }
  std::printf("read GB/s:    STREAM-like read of %" PRId64 " MiB with the same threads, just before each type\n", mb);
  std::printf("              (the yardstick; the kernels prefetch, so they can beat it: see \"read, prefetch\")\n\n");
  std::printf("%-5s %9s  %8s | %8s %6s %8s | %8s %6s %8s | %s\n", "type", "rows", "read", "n=1 GB/s",
              "%read", "ms", "n=8 GB/s", "%read", "ms", "n=8/n=1 time");
  std::fflush(stdout);

  std::vector<KernelRow> out;
  for (DType t : list) {
    const int64_t rows = std::max<int64_t>(1, (int64_t)(bytes / dtype_row_bytes(t, cols)));
    std::vector<uint8_t> buf(dtype_row_bytes(t, cols) * (size_t)rows);
    kern::fill_random_weights(t, rows, cols, buf.data(), 1);
    const kern::MatView w{t, rows, cols, buf.data()};
    KernelRow r{t, rows, cols, 0, 0, 0, 0};
    r.read_gbs = kern::measure_read_bandwidth_gbs(bytes, nthreads);
    r.read_pf_gbs = kern::measure_read_bandwidth_gbs(bytes, nthreads, /*prefetch=*/true);
    r.gbs1 = kern::bench_gemm_gbs(w, 1, (int)iters);
    r.gbs8 = kern::bench_gemm_gbs(w, 8, (int)iters);
    std::printf("%-5s %9" PRId64 "  %8.2f | %8.2f %5.0f%% %8.2f | %8.2f %5.0f%% %8.2f | %.2fx\n", dtype_name(t), rows,
                r.read_gbs, r.gbs1, 100 * r.gbs1 / r.read_gbs, r.ms(r.gbs1), r.gbs8, 100 * r.gbs8 / r.read_gbs,
                r.ms(r.gbs8), r.ms(r.gbs8) / r.ms(r.gbs1));
    std::fflush(stdout);
    out.push_back(r);
  }
  std::vector<double> reads, reads_pf;
  for (const KernelRow& r : out) reads.push_back(r.read_gbs), reads_pf.push_back(r.read_pf_gbs);
  auto summary = [](const char* what, const std::vector<double>& v) {
    std::printf("%s median %.2f GB/s, %.2f .. %.2f over the %zu measurements\n", what, median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), v.size());
  };
  std::printf("\n");
  if (!out.empty()) {
    summary("read bandwidth:", reads);
    // The kernels ask for weights ahead of use; a read can too. %read above 100% means the plain
    // read (the yardstick) understates what the memory delivers to a prefetching reader.
    summary("read, prefetch:", reads_pf);
  }
  const KernelRow* f32 = nullptr;
  for (const KernelRow& r : out) {
    if (r.type == DType::kF32) f32 = &r;
  }
  for (const KernelRow& r : out) {
    if (f32 != nullptr && (r.type == DType::kQ8_0 || r.type == DType::kI8R || r.type == DType::kI1R)) {
      std::printf("%-15s %s matvec %.2fx faster than f32 per weight\n",
                  r.type == DType::kI1R ? "1-bit vs f32:" : "int8 vs f32:", dtype_name(r.type),
                  f32->ns_per_weight1() / r.ns_per_weight1());
    }
  }
  if (!out.empty()) {
    std::printf("batch of 8:     time of n=8 over n=1:");
    for (const KernelRow& r : out) std::printf(" %s %.2fx", dtype_name(r.type), r.ms(r.gbs8) / r.ms(r.gbs1));
    std::printf("\n");
  }
  if (!sparse_list.empty()) bench_sparse(sparse_list, sparse_cols, bytes, nthreads, (int)iters);
  return 0;
}

// Weight store counters of the decode steps only (issue 7): summed between the snapshots taken
// around each timed decode.
struct DecodeReads {
  store::StoreStats sum;
  void add(const store::StoreStats& before, const store::StoreStats& after) {
    auto delta = [](store::CacheStats& acc, const store::CacheStats& a, const store::CacheStats& b) {
      acc.hits += b.hits - a.hits;
      acc.misses += b.misses - a.misses;
      acc.bytes_read += b.bytes_read - a.bytes_read;
      acc.capacity_bytes = b.capacity_bytes;
    };
    delta(sum.emb, before.emb, after.emb);
    delta(sum.ffn, before.ffn, after.ffn);
    delta(sum.head, before.head, after.head);
  }
};

std::string mib(int64_t bytes) { return bytes < 0 ? std::string("unknown") : store::format_bytes((double)bytes); }

// Feeds `first`, then n - 1 greedy choices, one token per step (the decode loop bench times).
Status decode_greedy(const Model& mod, State& st, int32_t first, int64_t n, std::vector<float>& logits) {
  int32_t next = first;
  for (int64_t i = 0; i < n; ++i) {
    Status s = mod.eval(st, &next, 1, logits.data());
    if (!s.ok()) return s;
    next = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  return Status::OK();
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  if (argc >= 1 && std::strcmp(argv[0], "kernels") == 0) return bench_kernels(argc - 1, argv + 1);
  ArgParser p("rwkv-edge bench",
              "Measure a model: prefill tokens/s (one sequence, chunked), decode tokens/s (one token per\n"
              "step) and decode's effective bandwidth = bytes of weights read per token x tokens/s.\n"
              "Figures are medians over --runs runs. Token ids are random (any model works).\n"
              "With --batch N > 1 it also decodes N sequences per step (one pass over the weights for all,\n"
              "as the server's continuous batching does) and prints the aggregate tokens/s and its ratio\n"
              "to one sequence's, taken in the same run.\n"
              "Memory (issue 7): the baseline RSS before the model is loaded and the peak RSS (VmHWM from\n"
              "/proc/self/status, before the bandwidth measurement); with --mem-budget also the budget's\n"
              "split, the bytes read from the model file per decoded token and the cache hit rates.\n"
              "`rwkv-edge bench kernels --help`: the matrix kernels alone, GB/s against the read bandwidth.");
  std::string model;
  int64_t threads = 0, prompt = 128, decode = 64, runs = 5, chunk = 64, seed = 1, bw_mb = 1024, batch = 1;
  p.add_string("--model", "M", "model file (default: the embedded default model)", &model);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  p.add_int("--prompt-tokens", "N", "prefill length", &prompt, 1, 1 << 20);
  p.add_int("--decode-tokens", "N", "decode steps per run", &decode, 1, 1 << 20);
  p.add_int("--chunk", "N", "prefill chunk rows", &chunk, 1, 4096);
  p.add_int("--runs", "N", "runs (median reported)", &runs, 1, 1000);
  p.add_int("--seed", "S", "seed of the random token ids", &seed, 0, INT64_MAX);
  p.add_int("--bandwidth-mb", "N", "buffer for the read-bandwidth measurement, MiB (0 = skip)", &bw_mb, 0, 1 << 20);
  p.add_int("--batch", "N", "also decode N sequences per step and compare (1 = off)", &batch, 1, 256);
  std::string budget_text;
  p.add_string("--mem-budget", "BYTES",
               "serve the weights from a store with this memory budget (e.g. 64M, 1G; default: all mapped)",
               &budget_text);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  const store::ProcessMemory baseline = store::read_process_memory();
  apply_threads(threads);
  LoadOptions lo;
  if (!budget_text.empty()) {
    Result<size_t> b = store::parse_byte_size(budget_text);
    if (!b.ok()) return fail("bench", b.status().with_context("--mem-budget"));
    lo.mem_budget = b.value();
    lo.budget_states = batch > 1 ? batch + 1 : 1;
    lo.budget_chunk_rows = chunk;
  }
  Result<std::string> path = resolve_model_path(model);
  if (!path.ok()) return fail("bench", path.status());
  Result<std::shared_ptr<Model>> m = load_model(path.value(), lo);
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
  DecodeReads reads;
  // One warm-up run pages the weights in (and fills the caches).
  for (int64_t r = 0; r < runs + 1; ++r) {
    State st = mod.new_state();
    const auto t0 = clock::now();
    Status s = mod.eval(st, toks.data(), toks.size(), logits.data());
    if (!s.ok()) return fail("bench", s);
    const store::StoreStats before = mod.store_stats();
    const auto t1 = clock::now();
    s = decode_greedy(mod, st, toks[0], decode, logits);
    if (!s.ok()) return fail("bench", s);
    const auto t2 = clock::now();
    if (r == 0) continue;
    reads.add(before, mod.store_stats());
    pre.push_back((double)prompt / std::chrono::duration<double>(t1 - t0).count());
    dec.push_back((double)decode / std::chrono::duration<double>(t2 - t1).count());
  }
  // Batched decode: `batch` sequences, each prefilled with its own rotation of the prompt, then
  // advanced together one token per step; runs alternate with single-sequence ones so both see
  // the same machine.
  std::vector<double> dec1, decb;
  if (batch > 1) {
    std::vector<State> states;
    std::vector<int32_t> next((size_t)batch);
    std::vector<float> blogits((size_t)(batch * hp.n_vocab));
    for (int64_t r = 0; r < runs + 1; ++r) {
      states.clear();
      for (int64_t b = 0; b < batch; ++b) {
        states.push_back(mod.new_state());
        std::vector<int32_t> p2(toks);
        std::rotate(p2.begin(), p2.begin() + (size_t)(b % prompt), p2.end());
        Status s = mod.eval(states.back(), p2.data(), p2.size(), blogits.data() + b * hp.n_vocab);
        if (!s.ok()) return fail("bench", s);
        next[(size_t)b] = p2[0];
      }
      std::vector<Segment> segs((size_t)batch);
      const auto t0 = clock::now();
      for (int64_t i = 0; i < decode; ++i) {
        for (int64_t b = 0; b < batch; ++b) {
          segs[(size_t)b] = Segment{&states[(size_t)b], &next[(size_t)b], 1, LogitsMode::kLast,
                                    blogits.data() + b * hp.n_vocab};
        }
        Status s = mod.forward(segs.data(), segs.size());
        if (!s.ok()) return fail("bench", s);
        for (int64_t b = 0; b < batch; ++b) {
          const float* lg = blogits.data() + b * hp.n_vocab;
          next[(size_t)b] = (int32_t)(std::max_element(lg, lg + hp.n_vocab) - lg);
        }
      }
      const auto t1 = clock::now();
      State st = mod.new_state();
      Status s = mod.eval(st, toks.data(), toks.size(), logits.data());
      if (!s.ok()) return fail("bench", s);
      const auto t2 = clock::now();
      s = decode_greedy(mod, st, toks[0], decode, logits);
      if (!s.ok()) return fail("bench", s);
      const auto t3 = clock::now();
      if (r == 0) continue;
      decb.push_back((double)(decode * batch) / std::chrono::duration<double>(t1 - t0).count());
      dec1.push_back((double)decode / std::chrono::duration<double>(t3 - t2).count());
    }
  }
  const store::ProcessMemory peak = store::read_process_memory();
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
  std::printf("memory:           peak RSS (VmHWM) %s; baseline before loading %s; RSS now %s (anon %s, file %s)\n",
              mib(peak.peak_rss_bytes).c_str(), mib(baseline.rss_bytes).c_str(), mib(peak.rss_bytes).c_str(),
              mib(peak.rss_anon_bytes).c_str(), mib(peak.rss_file_bytes).c_str());
  if (const store::MemoryPlan* plan = mod.memory_plan()) {
    const store::StoreStats& d = reads.sum;
    const double toks_timed = (double)(decode * runs);
    std::printf("weight store:     %s\n", plan->describe().c_str());
    std::printf("file reads:       %.1f KB per decoded token (embedding %.1f, FFN %.1f, head %.1f KB)\n",
                (double)d.bytes_read() / toks_timed / 1e3, (double)d.emb.bytes_read / toks_timed / 1e3,
                (double)d.ffn.bytes_read / toks_timed / 1e3, (double)d.head.bytes_read / toks_timed / 1e3);
    std::printf("cache hit rates:  embedding %.1f%%, FFN neurons %.1f%%, head clusters %.1f%% (timed decode steps)\n",
                100 * d.emb.hit_rate(), 100 * d.ffn.hit_rate(), 100 * d.head.hit_rate());
  }
  if (batch > 1) {
    const double one = median(dec1), many = median(decb);
    std::printf("batched decode:   %" PRId64 " sequences: %.2f tokens/s aggregate vs %.2f for one sequence, "
                "ratio %.2fx (medians of %" PRId64 " alternating runs)\n",
                batch, many, one, many / one, runs);
  }
  return 0;
}

}  // namespace rwkv::cli
