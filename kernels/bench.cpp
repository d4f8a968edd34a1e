#include "kernels/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "engine/common/aligned.h"
#include "engine/common/fp16.h"

namespace rwkv::kern {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Sum of n words read as 4 interleaved streams (the four quarters of the range, in lockstep),
// each with 4 independent add chains. Several streams per core are what a gemm does (it reads a
// tile of rows at once) and reach noticeably more bandwidth than one stream on some machines
// (here 5.0 vs 4.2 GB/s). The compiler vectorises the adds. With kPrefetch, each stream also
// asks for the line kPrefetchBytes ahead, as the gemm kernels do.
template <bool kPrefetch>
uint64_t sum_words(const uint64_t* p, size_t n) {
  // With prefetching, 8 chains: one cache line per stream and step, one prefetch each.
  constexpr int kStreams = 4, kChains = kPrefetch ? 8 : 4;
  constexpr size_t kPrefetchBytes = 2048;
  const size_t len = n / kStreams / kChains * kChains;
  uint64_t s[kStreams][kChains] = {};
  for (size_t i = 0; i < len; i += kChains) {
    if constexpr (kPrefetch) {
      for (int k = 0; k < kStreams; ++k) {
        __builtin_prefetch(reinterpret_cast<const char*>(p + k * len + i) + kPrefetchBytes);
      }
    }
    for (int k = 0; k < kStreams; ++k)
      for (int j = 0; j < kChains; ++j) s[k][j] += p[k * len + i + j];
  }
  uint64_t t = 0;
  for (int k = 0; k < kStreams; ++k)
    for (int j = 0; j < kChains; ++j) t += s[k][j];
  for (size_t i = kStreams * len; i < n; ++i) t += p[i];
  return t;
}

// splitmix64: a fast, well-mixed 64-bit generator.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1) from the top 24 bits of a draw.
  float uniform() { return (float)(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
};

}  // namespace

void fill_random_weights(DType t, int64_t rows, int64_t cols, void* data, uint64_t seed) {
  const size_t bytes = dtype_row_bytes(t, cols) * (size_t)rows;
  uint8_t* p = static_cast<uint8_t*>(data);
  SplitMix rng{seed};
  if (t == DType::kF32 || t == DType::kF16) {
    const size_t count = bytes / dtype_block_bytes(t);
    float chunk[1024];
    for (size_t i = 0; i < count; i += 1024) {
      const size_t m = std::min<size_t>(1024, count - i);
      for (size_t j = 0; j < m; ++j) chunk[j] = rng.uniform();
      if (t == DType::kF32) {
        std::memcpy(p + 4 * i, chunk, 4 * m);
      } else {
        kernels().f32_to_f16(chunk, reinterpret_cast<uint16_t*>(p + 2 * i), (int64_t)m);
      }
    }
    return;
  }
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const uint64_t r = rng.next();
    std::memcpy(p + i, &r, 8);
  }
  for (; i < bytes; ++i) p[i] = (uint8_t)rng.next();
  if (dtype_is_row_scaled(t)) {
    // The f32 scale leads every row.
    const size_t rb = dtype_row_bytes(t, cols);
    for (size_t off = 0; off + rb <= bytes; off += rb) {
      const float s = 0.005f + 0.025f * (float)(rng.next() & 0xffff) / 65536.0f;
      std::memcpy(p + off, &s, 4);
    }
    return;
  }
  // The fp16 scale (and for q4_1 / q5_1 the min) lead every block; see dtype.h.
  const bool has_min = t == DType::kQ4_1 || t == DType::kQ5_1;
  const size_t bb = dtype_block_bytes(t);
  for (size_t off = 0; off + bb <= bytes; off += bb) {
    const uint64_t r = rng.next();
    const uint16_t d = fp32_to_fp16(0.005f + 0.025f * (float)(r & 0xffff) / 65536.0f);
    std::memcpy(p + off, &d, 2);
    if (has_min) {
      const uint16_t m = fp32_to_fp16(0.1f * ((float)((r >> 16) & 0xffff) / 32768.0f - 1.0f));
      std::memcpy(p + off + 2, &m, 2);
    }
  }
}

double measure_read_bandwidth_gbs(size_t bytes, int threads, bool prefetch) {
  if (threads <= 0) threads = num_threads();
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(words);
  // Touch every page with distinct values so none is the shared zero page.
  for (size_t i = 0; i < words; ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;

  std::vector<uint64_t> sums((size_t)threads);
  auto pass = [&]() {
    std::vector<std::thread> team;
    const size_t share = words / (size_t)threads;
    for (int t = 0; t < threads; ++t) {
      const size_t begin = share * (size_t)t;
      const size_t count = t == threads - 1 ? words - begin : share;
      team.emplace_back([&, t, begin, count] {
        const uint64_t* p = buf.data() + begin;
        sums[(size_t)t] = prefetch ? sum_words<true>(p, count) : sum_words<false>(p, count);
      });
    }
    for (auto& th : team) th.join();
  };
  pass();
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    pass();
    times.push_back(seconds_since(t0));
  }
  // Keep the sums observable so the passes cannot be optimised away.
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
  return (double)(words * sizeof(uint64_t)) / median(times) / 1e9;
}

double bench_gemm_gbs(const MatView& w, int n, int iters) {
  const Kernels& k = kernels();
  // Activations on a 64-byte boundary, as the engine's scratch buffers are (engine/models/
  // blocks.h): a 512-bit load at malloc's 16-byte alignment splits across two cache lines.
  std::vector<float, AlignedAllocator<float, 64>> xv((size_t)(n * w.cols));
  std::vector<float> y((size_t)(n * w.rows));
  uint32_t s = 12345;
  for (auto& f : xv) {
    s = s * 1664525u + 1013904223u;
    f = (float)(s >> 8) / 16777216.0f - 0.5f;
  }
  const float* x = xv.data();
  k.gemm(w, x, w.cols, n, y.data(), w.rows);
  std::vector<double> times;
  for (int i = 0; i < std::max(iters, 1); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    k.gemm(w, x, w.cols, n, y.data(), w.rows);
    times.push_back(seconds_since(t0));
  }
  return (double)(w.row_bytes() * (size_t)w.rows) / median(times) / 1e9;
}

SparseGbs bench_sparse_gbs(const MatView& w, double fraction, int iters) {
  const Kernels& k = kernels();
  SplitMix rng{777};
  std::vector<int32_t> rows;
  // Each row independently, in order: a sorted random subset of about `fraction` of the rows.
  const uint64_t cut = (uint64_t)(fraction * 18446744073709551615.0);
  for (int64_t r = 0; r < w.rows; ++r) {
    if (rng.next() <= cut) rows.push_back((int32_t)r);
  }
  if (rows.empty()) rows.push_back(0);
  std::vector<float> x((size_t)w.cols), h(rows.size()), y(rows.size()), acc((size_t)w.cols, 0.0f);
  for (auto& f : x) f = rng.uniform();
  for (auto& f : h) f = rng.uniform();
  const int64_t n = (int64_t)rows.size();
  auto time_median = [&](auto&& call) {
    call();
    std::vector<double> times;
    for (int i = 0; i < std::max(iters, 1); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      call();
      times.push_back(seconds_since(t0));
    }
    return median(times);
  };
  const double bytes = (double)w.row_bytes() * (double)n;
  SparseGbs out;
  out.active = n;
  out.gemv_rows = bytes / time_median([&] { k.gemv_rows(w, rows.data(), n, x.data(), y.data()); }) / 1e9;
  out.axpy_rows = bytes / time_median([&] { k.axpy_rows(w, rows.data(), h.data(), n, acc.data()); }) / 1e9;
  return out;
}

}  // namespace rwkv::kern
