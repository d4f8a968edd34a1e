// Choosing the kernel table once per process, and the kernels' thread count.
//
// The choice: RWKV_EDGE_KERNELS=scalar forces the reference (=<name>, e.g. avx512, avx2-vnni or
// avx2, that variant if the CPU runs it); otherwise the best compiled variant whose CPU features are present and which
// passes a known-answer test against the scalar reference (a miscompiled or mis-detected SIMD
// path then costs speed, not wrong answers).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(RWKV_EDGE_HAVE_AVX512)
#include <cpuid.h>
#endif

#include "engine/common/fp16.h"
#include "kernels/internal.h"

namespace rwkv::kern {
namespace {

// --- known-answer test ------------------------------------------------------------------------

// A small deterministic generator (xorshift64*), so the test is the same on every run.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
};

// Random bytes for a weight matrix of type t; the fp16 scales (and mins) are set to small
// finite values so products stay finite.
std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, Rng& rng) {
  std::vector<uint8_t> buf(dtype_row_bytes(t, cols) * (size_t)rows);
  if (t == DType::kF32) {
    for (size_t i = 0; i < buf.size(); i += 4) {
      const float f = rng.uniform();
      std::memcpy(&buf[i], &f, 4);
    }
    return buf;
  }
  if (t == DType::kF16) {
    for (size_t i = 0; i < buf.size(); i += 2) {
      const uint16_t h = fp32_to_fp16(rng.uniform());
      std::memcpy(&buf[i], &h, 2);
    }
    return buf;
  }
  for (auto& b : buf) b = (uint8_t)rng.next();
  if (dtype_is_row_scaled(t)) {
    const size_t rb = dtype_row_bytes(t, cols);
    for (size_t off = 0; off < buf.size(); off += rb) {
      const float s = 0.005f + 0.02f * std::fabs(rng.uniform());
      std::memcpy(&buf[off], &s, 4);
    }
    return buf;
  }
  const size_t bb = dtype_block_bytes(t);
  const bool has_min = detail::uses_q8_1(t);
  for (size_t off = 0; off < buf.size(); off += bb) {
    const uint16_t d = fp32_to_fp16(0.01f + 0.02f * std::fabs(rng.uniform()));
    std::memcpy(&buf[off], &d, 2);
    if (has_min) {
      const uint16_t m = fp32_to_fp16(0.1f * rng.uniform());
      std::memcpy(&buf[off + 2], &m, 2);
    }
  }
  return buf;
}

// Does `k` agree with the scalar reference on small random problems of every weight type?
// f32/f16 and quantised gemm may differ only by float reassociation; the activation quantisers
// and half conversions must agree bit for bit.
bool passes_known_answer_test(const Kernels& k) {
  const Kernels& ref = detail::scalar_table();
  Rng rng{0x9E3779B97F4A7C15ull};
  const DType types[] = {DType::kF32,  DType::kF16,  DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                         DType::kQ5_1, DType::kQ8_0, DType::kI8R, DType::kI1R};
  // 33 blocks and 13 vectors: the SIMD paths' multi-block groups, leftover blocks, column spans,
  // partial row tiles and vector groups of every kind (13 = 8 + 4 + 1 in AVX2) all run.
  const int64_t rows = 13, cols = 1056, n = 13;
  std::vector<float> x((size_t)(n * cols));
  for (auto& f : x) f = rng.uniform();
  for (DType t : types) {
    const std::vector<uint8_t> wbuf = random_weights(t, rows, cols, rng);
    const MatView w{t, rows, cols, wbuf.data()};
    std::vector<float> y((size_t)(n * rows)), y_ref(y.size()), wrow((size_t)cols);
    k.gemm(w, x.data(), cols, n, y.data(), rows);
    ref.gemm(w, x.data(), cols, n, y_ref.data(), rows);
    for (int64_t v = 0; v < n; ++v) {
      for (int64_t r = 0; r < rows; ++r) {
        // Bound on reassociation error: (terms + lanes) * eps * Σ|w x|, with |w| <= ~1.1 here.
        double mag = 0.0;
        ref.get_row(w, r, wrow.data());
        for (int64_t c = 0; c < cols; ++c) mag += std::fabs((double)wrow[c] * x[v * cols + c]);
        const double tol = (cols + 16) * 1.2e-7 * (mag + 1.0);
        const double diff = std::fabs((double)y[v * rows + r] - y_ref[v * rows + r]);
        if (!(diff <= tol)) return false;
      }
    }
    if (!detail::is_sparse_type(t)) continue;
    // The sparse kernels: rows 12, 0, 5, 5 (a duplicate) against the first vector.
    const int32_t active[] = {12, 0, 5, 5};
    const float h[] = {0.5f, -1.25f, 2.0f, 0.75f};
    std::vector<float> g(4), g_ref(4), acc((size_t)cols, 0.25f), acc_ref(acc), mag_acc(acc);
    k.gemv_rows(w, active, 4, x.data(), g.data());
    ref.gemv_rows(w, active, 4, x.data(), g_ref.data());
    k.axpy_rows(w, active, h, 4, acc.data());
    ref.axpy_rows(w, active, h, 4, acc_ref.data());
    for (int j = 0; j < 4; ++j) {
      ref.get_row(w, active[j], wrow.data());
      double mag = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        mag += std::fabs((double)wrow[c] * x[c]);
        mag_acc[c] += std::fabs(h[j] * wrow[c]);
      }
      if (!(std::fabs((double)g[j] - g_ref[j]) <= (cols + 16) * 1.2e-7 * (mag + 1.0))) return false;
    }
    for (int64_t c = 0; c < cols; ++c) {
      // Four terms and a start value: a few roundings each way.
      if (!(std::fabs((double)acc[c] - acc_ref[c]) <= 16 * 1.2e-7 * mag_acc[c])) return false;
    }
  }
  std::vector<BlockQ8_0> q0(cols / kQK), q0_ref(q0.size());
  std::vector<BlockQ8_1> q1(cols / kQK), q1_ref(q1.size());
  k.quantize_q8_0(x.data(), q0.data(), cols);
  ref.quantize_q8_0(x.data(), q0_ref.data(), cols);
  k.quantize_q8_1(x.data(), q1.data(), cols);
  ref.quantize_q8_1(x.data(), q1_ref.data(), cols);
  if (std::memcmp(q0.data(), q0_ref.data(), q0.size() * sizeof(BlockQ8_0)) != 0) return false;
  if (std::memcmp(q1.data(), q1_ref.data(), q1.size() * sizeof(BlockQ8_1)) != 0) return false;
  std::vector<uint16_t> h(x.size()), h_ref(x.size());
  std::vector<float> f(x.size()), f_ref(x.size());
  k.f32_to_f16(x.data(), h.data(), (int64_t)x.size());
  ref.f32_to_f16(x.data(), h_ref.data(), (int64_t)x.size());
  k.f16_to_f32(h.data(), f.data(), (int64_t)h.size());
  ref.f16_to_f32(h.data(), f_ref.data(), (int64_t)h.size());
  return h == h_ref && std::memcmp(f.data(), f_ref.data(), f.size() * sizeof(float)) == 0;
}

// --- CPU features ----------------------------------------------------------------------------

#if defined(RWKV_EDGE_HAVE_AVX2)
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
#endif

#if defined(RWKV_EDGE_HAVE_AVX512)
// Does the OS save and restore the opmask and all 32 zmm registers on a context switch? CPUID
// can report AVX-512 while the kernel (or a hypervisor) leaves it off in XCR0; using zmm
// registers then faults. Bits of XCR0: 1 SSE, 2 AVX, 5 opmask, 6 upper halves of zmm0-15,
// 7 zmm16-31.
bool os_saves_zmm() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & bit_OSXSAVE) == 0) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6u) == 0xE6u;
}

// AVX-512 F, BW, VL and VNNI (the avx512 table uses all four), usable by this process.
bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
         os_saves_zmm();
}
#endif

// The compiled variants this CPU can run, best first (scalar excluded).
std::vector<const Kernels*> runnable_variants() {
  std::vector<const Kernels*> v;
#if defined(RWKV_EDGE_HAVE_AVX2)
  if (cpu_has_avx2()) {
    const bool vnni = __builtin_cpu_supports("avxvnni");
#if defined(RWKV_EDGE_HAVE_AVX512)
    if (cpu_has_avx512()) {
      v.push_back(&detail::avx512_table(vnni ? detail::avxvnni_table() : detail::avx2_table()));
    }
#endif
    if (vnni) v.push_back(&detail::avxvnni_table());
    v.push_back(&detail::avx2_table());
  }
#endif
#if defined(RWKV_EDGE_HAVE_NEON) && defined(__aarch64__)
  v.push_back(&detail::neon_table());
#endif
  return v;
}

const Kernels& choose() {
  const char* env = std::getenv("RWKV_EDGE_KERNELS");
  if (env != nullptr && std::strcmp(env, "scalar") == 0) {
    std::fprintf(stderr, "rwkv-edge: kernels: scalar (forced by RWKV_EDGE_KERNELS)\n");
    return detail::scalar_table();
  }
  const std::vector<const Kernels*> variants = runnable_variants();
  // RWKV_EDGE_KERNELS=<name> picks that variant (to compare them, e.g. avx2 with avx2-vnni); it
  // still has to pass the known-answer test.
  if (env != nullptr && *env != '\0') {
    for (const Kernels* k : variants) {
      if (std::strcmp(env, k->name) == 0 && passes_known_answer_test(*k)) {
        std::fprintf(stderr, "rwkv-edge: kernels: %s (forced by RWKV_EDGE_KERNELS), %d threads\n",
                     k->name, num_threads());
        return *k;
      }
    }
    std::fprintf(stderr,
                 "rwkv-edge: kernels: RWKV_EDGE_KERNELS=%s: no such variant runs here and passes\n",
                 env);
  }
  for (const Kernels* k : variants) {
    if (passes_known_answer_test(*k)) {
      std::fprintf(stderr, "rwkv-edge: kernels: %s, %d threads\n", k->name, num_threads());
      return *k;
    }
    std::fprintf(stderr, "rwkv-edge: kernels: %s failed its known-answer test, not used\n",
                 k->name);
  }
  std::fprintf(stderr, "rwkv-edge: kernels: scalar, %d threads\n", num_threads());
  return detail::scalar_table();
}

// --- threads -----------------------------------------------------------------------------------

// Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo, which counts each
// hyper-threaded core once (a memory-bound matvec gains nothing from the second hyper-thread).
// Falls back to std::thread::hardware_concurrency() where the file lacks them (ARM).
int physical_cores() {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  std::string line;
  int phys = 0;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const int value = std::atoi(line.c_str() + colon + 1);
    if (line.compare(0, 11, "physical id") == 0) phys = value;
    if (line.compare(0, 7, "core id") == 0) cores.insert({phys, value});
  }
  if (!cores.empty()) return (int)cores.size();
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? (int)hc : 1;
}

int default_threads() {
  static const int n = physical_cores();
  return n;
}

std::atomic<int> g_threads{0};  // 0 = default_threads()

}  // namespace

namespace detail {

uint8_t* thread_scratch(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

}  // namespace detail

const Kernels& kernels() {
  static const Kernels& k = choose();
  return k;
}

const Kernels& scalar_kernels() { return detail::scalar_table(); }

bool gemm_supports(DType t) { return detail::is_weight_type(t); }
bool sparse_supports(DType t) { return detail::is_sparse_type(t); }

int available_kernels(const Kernels** out, int max) {
  int count = 0;
  if (count < max) out[count] = &detail::scalar_table();
  ++count;
  for (const Kernels* k : runnable_variants()) {
    if (count < max) out[count] = k;
    ++count;
  }
  return count < max ? count : max;
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void parallel_ranges(int64_t count, RangeFn fn, void* ctx) { detail::parallel_run(count, num_threads(), fn, ctx); }

}  // namespace rwkv::kern
