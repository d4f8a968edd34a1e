// Scheduler: one model shared by every request, continuous batching on one compute thread.
//
//   Scheduler sched(model, tokenizer, &sessions, opts);
//   sched.start();
//   auto job = std::make_shared<Job>(spec);
//   Status s = sched.submit(job);          // ResourceExhausted when the queue is full
//   while (job->pop(&ev, 1s)) ...           // text events, then kDone or kError
//   sched.drain(10s); sched.stop();
//
// Each step advances every active sequence together in one Model::forward call: decoding
// sequences feed one token each, prefilling sequences a chunk of their prompt (at most
// `prefill_chunk` prompt rows per step in total), so one pass over the weights serves all of
// them and a long prompt never stalls the other streams.
//
// Sessions: a job naming a session feeds the session's pending tokens and its new prompt into
// the session's state. If its client disconnects, the session is rolled back to the state before
// the request plus the prompt and the tokens actually delivered (as pending tokens), so the
// history matches what the client saw. Jobs without a session reuse prefix-cache states.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/job.h"
#include "server/prefix_cache.h"
#include "server/session_store.h"

namespace rwkv::server {

struct SchedulerOptions {
  // Sequences advanced together per step. Default: 16.
  int64_t max_batch = 16;
  // Jobs waiting for a batch slot when all max_batch slots are busy; beyond this submit()
  // fails with ResourceExhausted. Default: 64.
  int64_t max_queue = 64;
  // Prompt rows per step, shared by all prefilling sequences. Default: 64.
  int64_t prefill_chunk = 64;
  // Longest prompt accepted, in tokens. Default: 16384.
  int64_t max_prompt_tokens = 16384;
  // Prefix cache budget in bytes (0 disables). Default: 64 MiB.
  size_t prefix_cache_bytes = 64u << 20;
};

// Counters for /metrics; monotonic unless noted.
struct SchedulerStats {
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  uint64_t steps = 0;
  uint64_t jobs_finished = 0;
  uint64_t jobs_cancelled = 0;
  uint64_t prefix_cache_hits = 0;
  uint64_t prefix_cache_misses = 0;
  uint64_t prefix_tokens_reused = 0;
  // Gauges.
  int64_t active = 0;
  int64_t queued = 0;
  size_t prefix_cache_bytes = 0;
};

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer, SessionStore* sessions,
            SchedulerOptions opt);
  ~Scheduler();

  void start();
  // Ends the compute thread; jobs still queued or active get kError 503.
  void stop();

  // Queues a job. ResourceExhausted: queue full. Unavailable: draining or stopped.
  Status submit(std::shared_ptr<Job> job);

  // Stops admitting new jobs, lets active and queued ones finish until `deadline`, then ends the
  // rest early (finish_reason "length"). Returns when nothing is active.
  void drain(std::chrono::milliseconds deadline);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opt_; }

 private:
  struct Active;
  void run();
  // Sets up a queued job; false (and an error event pushed) if it cannot run.
  bool admit(const std::shared_ptr<Job>& job, Active* a);
  void step(std::vector<std::unique_ptr<Active>>& active);
  // Takes `tok`, drawn from a's logits by a's sampler, as the next token (or the end); returns
  // false when the job finished.
  bool sample_next(Active& a, int32_t tok);
  void finish(Active& a, const std::string& reason);
  void abandon(Active& a);  // client gone: roll the session back to what was delivered
  void fail(const std::shared_ptr<Job>& job, const api::ApiError& e);

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Tokenizer> tok_;
  SessionStore* sessions_;
  const SchedulerOptions opt_;
  PrefixCache prefix_;

  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  bool draining_ = false;
  bool force_finish_ = false;
  SchedulerStats stats_;
  std::condition_variable idle_cv_;
};

}  // namespace rwkv::server
