#include "kernels/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

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
// (here 5.0 vs 4.2 GB/s). The compiler vectorises the adds.
uint64_t sum_words(const uint64_t* p, size_t n) {
  constexpr int kStreams = 4, kChains = 4;
  const size_t len = n / kStreams / kChains * kChains;
  uint64_t s[kStreams][kChains] = {};
  for (size_t i = 0; i < len; i += kChains)
    for (int k = 0; k < kStreams; ++k)
      for (int j = 0; j < kChains; ++j) s[k][j] += p[k * len + i + j];
  uint64_t t = 0;
  for (int k = 0; k < kStreams; ++k)
    for (int j = 0; j < kChains; ++j) t += s[k][j];
  for (size_t i = kStreams * len; i < n; ++i) t += p[i];
  return t;
}

}  // namespace

double measure_read_bandwidth_gbs(size_t bytes, int threads) {
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
      team.emplace_back([&, t, begin, count] { sums[(size_t)t] = sum_words(buf.data() + begin, count); });
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
  std::vector<float> x((size_t)(n * w.cols)), y((size_t)(n * w.rows));
  uint32_t s = 12345;
  for (auto& f : x) {
    s = s * 1664525u + 1013904223u;
    f = (float)(s >> 8) / 16777216.0f - 0.5f;
  }
  k.gemm(w, x.data(), w.cols, n, y.data(), w.rows);
  std::vector<double> times;
  for (int i = 0; i < std::max(iters, 1); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    k.gemm(w, x.data(), w.cols, n, y.data(), w.rows);
    times.push_back(seconds_since(t0));
  }
  return (double)(w.row_bytes() * (size_t)w.rows) / median(times) / 1e9;
}

}  // namespace rwkv::kern
