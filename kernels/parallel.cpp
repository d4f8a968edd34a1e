// The kernels' thread team: persistent workers that share a gemm's tiles with the calling thread.
//
// Why not `#pragma omp parallel for` (issue #3): OpenMP's static schedule and its end-of-region
// barrier make every gemm wait for every team thread. On a 2-core board where another process
// is busy, one of our threads is regularly descheduled for a time slice, and libgomp's wait
// policies fail in opposite ways. Measured on the development VM, 2-thread decode of 5.2-0.1b
// fell to 1.3 tokens/s (f32, default policy, next to a nice-10 training run; 1 thread: 18) and
// to 1.6 (f16, OMP_WAIT_POLICY=active, next to a nice-0 one; 1 thread: 38).
//
// Here the work is claimed in shrinking contiguous chunks (guided scheduling) by whichever
// threads are running, the caller included, and the caller waits only for chunks already
// claimed: a worker that has not started yet costs nothing, the caller does its share. Idle
// workers poll for 30 us (most gaps between the gemms of one token are shorter, so decode
// rarely pays a wake-up) and then sleep on a condition variable.
//
// Concurrency: one job at a time; a gemm that finds the team busy (another thread's gemm) runs
// on its own thread. Each job's description lives in one of two slots (by epoch parity), and a
// slot is rewritten only when no worker is inside it (inside_[parity] == 0), so a worker that
// wakes up late never reads a description being written.
#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "kernels/internal.h"

namespace rwkv::kern::detail {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How long an idle worker polls for the next job before it sleeps (set_poll_us; default
// kDefaultPollUs). f16 decode of 5.2-0.1b with 2 threads on the development VM (issue #3),
// tokens/s when polling 0 / 30 / 200 us: quiet 66 / 72 / 74; next to a busy nice-0 thread
// 47 / 46 / 36; next to two busy nice-10 threads 56 / 60 / 59 (OpenMP: 48, 9, 40). Polling
// with sched_yield() instead of pause was no better quiet and lost a third next to the nice-10
// threads (yield hands the CPU to them). The server polls longer (rwkv-edge serve --spin-us):
// a batched step's serial gaps exceed 30 us, and each wake-up is a futex call in the caller.
std::atomic<int64_t> g_poll_us{kDefaultPollUs};
// Most workers the team grows to.
constexpr int kMaxWorkers = 255;

using Clock = std::chrono::steady_clock;

// Spins (then yields) until done() holds.
template <class Pred>
void wait_until(const Pred& done) {
  for (int i = 0; !done(); ++i) {
    if (i < 4096) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// Never destroyed (see team()): workers live as long as the process.
class Team {
 public:
  void run(int64_t count, int threads, RangeFn fn, void* ctx) {
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (!busy.owns_lock()) {
      fn(ctx, 0, count);
      return;
    }
    grow(threads - 1);
    const uint32_t e = epoch_.load(std::memory_order_relaxed) + 1;
    // A worker that woke up for epoch e - 2 may still be looking at this slot.
    wait_until([&] { return inside_[e & 1].load() == 0; });
    jobs_[e & 1] = Job{fn, ctx, count, threads};
    done_.store(0, std::memory_order_relaxed);
    claim_.store((uint64_t)e << 32, std::memory_order_relaxed);
    epoch_.store(e);  // seq_cst: pairs with the sleepers' check below
    if (sleeping_.load() > 0) {
      std::lock_guard<std::mutex> l(sleep_mu_);
      sleep_cv_.notify_all();
    }
    work(e, jobs_[e & 1]);
    wait_until([&] { return done_.load(std::memory_order_acquire) == count; });
  }

 private:
  struct Job {
    RangeFn fn = nullptr;
    void* ctx = nullptr;
    int64_t count = 0;
    int threads = 1;
  };

  // Claims and runs chunks of job `e` until none is left (or the job is not current).
  void work(uint32_t e, const Job& job) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((uint32_t)(c >> 32) != e) return;
      const int64_t next = (int64_t)(c & 0xffffffffu);
      if (next >= job.count) return;
      // Guided: half of an even share of what is left, at least one item.
      const int64_t size = std::max<int64_t>(1, (job.count - next) / (2 * job.threads));
      if (!claim_.compare_exchange_weak(c, c + (uint64_t)size, std::memory_order_acq_rel)) continue;
      job.fn(job.ctx, next, next + size);
      done_.fetch_add(size, std::memory_order_release);
      c = claim_.load(std::memory_order_acquire);
    }
  }

  void worker_main(int id) {
    uint32_t seen = epoch_.load();
    for (;;) {
      const Clock::time_point t0 = Clock::now();
      int spins = 0;
      while (epoch_.load(std::memory_order_acquire) == seen) {
        cpu_relax();
        if ((++spins & 63) == 0 && Clock::now() - t0 > std::chrono::microseconds(g_poll_us.load(std::memory_order_relaxed))) {
          std::unique_lock<std::mutex> l(sleep_mu_);
          sleeping_.fetch_add(1);  // seq_cst: pairs with run()'s epoch store
          sleep_cv_.wait(l, [&] { return epoch_.load() != seen; });
          sleeping_.fetch_sub(1);
        }
      }
      const uint32_t e = epoch_.load();
      seen = e;
      inside_[e & 1].fetch_add(1);
      // Only read the slot if the job is still current: then run() cannot rewrite it before we
      // leave (it waits for inside_ of the slot's parity), and a later job uses the other slot.
      if (epoch_.load() == e) {
        const Job& job = jobs_[e & 1];
        if (id < job.threads - 1) work(e, job);
      }
      inside_[e & 1].fetch_sub(1);
    }
  }

  // Makes sure at least `n` workers exist. Called with run_mu_ held.
  void grow(int n) {
    n = std::min(n, kMaxWorkers);
    while ((int)workers_.size() < n) {
      const int id = (int)workers_.size();
      workers_.emplace_back([this, id] { worker_main(id); });
    }
  }

  std::mutex run_mu_;              // held by the thread whose job the team runs
  std::vector<std::thread> workers_;  // guarded by run_mu_
  Job jobs_[2];                    // by epoch parity; see run()
  std::atomic<uint32_t> epoch_{0};    // the current job's number
  std::atomic<uint64_t> claim_{0};    // (epoch << 32) | next unclaimed item
  std::atomic<int64_t> done_{0};      // items of the current job finished
  std::atomic<int> inside_[2] = {};   // workers reading jobs_[parity]
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::atomic<int> sleeping_{0};
};

// Leaked on purpose: joining sleeping workers during static destruction (or in a child after
// fork) would be fragile, and the process's exit ends them anyway.
Team& team() {
  static Team* t = new Team;
  return *t;
}

}  // namespace

void parallel_run(int64_t count, int threads, RangeFn fn, void* ctx) {
  assert(count >= 0 && count < (int64_t{1} << 32));
  if (threads <= 1 || count <= 1) {
    fn(ctx, 0, count);
    return;
  }
  team().run(count, threads, fn, ctx);
}

}  // namespace rwkv::kern::detail

namespace rwkv::kern {

void set_poll_us(int64_t us) { detail::g_poll_us.store(us < 0 ? kDefaultPollUs : us, std::memory_order_relaxed); }
int64_t poll_us() { return detail::g_poll_us.load(std::memory_order_relaxed); }

}  // namespace rwkv::kern
