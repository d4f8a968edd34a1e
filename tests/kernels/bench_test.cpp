// Throughput of the chosen kernels against the machine's read bandwidth. Slow (allocates ~1.5 GiB,
// runs for about a minute), so it lives in TEST_SUITE("slow") and is also marked skip, so that
// running the binary by hand without flags stays quick:
//   test_kernels --test-suite=slow --no-skip
// It prints a table and WARNs (does not fail) below the targets: timings on a shared machine
// are too noisy for a hard check.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "kernels/bench.h"
#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

struct Row {
  DType type;
  int threads;
  double gbs_n1, gbs_n8;
};

TEST_SUITE("slow") {
  TEST_CASE("bench: gemm throughput against read bandwidth" * doctest::skip()) {
    // Big enough to defeat a large last-level cache (this CI machine reports 260 MiB of L3);
    // 4096 x 4096 is also timed because it is a realistic layer size.
    const size_t kBwBytes = size_t{1} << 30;
    const int64_t shapes[][2] = {{16384, 16384}, {4096, 4096}};
    const DType types[] = {DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ5_0, DType::kQ5_1,
                           DType::kQ4_0};
    std::printf("kernels: %s, default threads %d\n", kernels().name, num_threads());
    double bw[3] = {0, 0, 0};
    for (int t = 1; t <= 2; ++t) {
      bw[t] = measure_read_bandwidth_gbs(kBwBytes, t);
      std::printf("read bandwidth, %d thread(s): %.2f GB/s\n", t, bw[t]);
    }
    for (const auto& shape : shapes) {
      const int64_t rows = shape[0], cols = shape[1];
      std::printf("\n%lld x %lld      GB/s (weights)      ms per call     n=8/n=1 time  %%bw(n=1)\n",
                  (long long)rows, (long long)cols);
      double f32_ms[3] = {0, 0, 0};
      for (DType type : types) {
        Rng rng(99);
        const std::vector<uint8_t> buf = random_weights(type, rows, cols, rng);
        const MatView w{type, rows, cols, buf.data()};
        const double gb = (double)buf.size() / 1e9;
        const int iters = rows * cols > (int64_t{1} << 26) ? 5 : 20;
        for (int t = 1; t <= 2; ++t) {
          set_num_threads(t);
          const double g1 = bench_gemm_gbs(w, 1, iters);
          const double g8 = bench_gemm_gbs(w, 8, iters);
          const double ms1 = gb / g1 * 1e3, ms8 = gb / g8 * 1e3;
          if (type == DType::kF32) f32_ms[t] = ms1;
          std::printf("  %-5s %d thr   n=1 %6.2f n=8 %6.2f   n=1 %7.3f n=8 %7.3f   %5.2fx   %5.1f%%",
                      dtype_name(type), t, g1, g8, ms1, ms8, ms8 / ms1, 100.0 * g1 / bw[t]);
          if (type != DType::kF32) std::printf("   %.2fx faster than f32", f32_ms[t] / ms1);
          std::printf("\n");
          if (rows == 16384) {
            if (type == DType::kF32 || type == DType::kF16) {
              WARN_MESSAGE(g1 >= 0.75 * bw[t], dtype_name(type), " matvec below 75% of read bandwidth");
            }
            if (type == DType::kQ8_0) WARN_MESSAGE(f32_ms[t] / ms1 >= 2.5, "q8_0 not 2.5x faster than f32");
            WARN_MESSAGE(ms8 <= 2.5 * ms1, dtype_name(type), " batch of 8 costs more than 2.5x one vector");
          }
        }
      }
    }
    set_num_threads(0);
  }
}

}  // namespace
}  // namespace rwkv::kern::test
