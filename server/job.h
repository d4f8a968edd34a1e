// Job: one generation request travelling from an HTTP handler to the scheduler and back.
//
// The handler builds a JobSpec, submits it, then reads JobEvents from the job's channel until
// kDone or kError. The scheduler thread is the only writer of events; the handler the only
// reader. Either side may cancel (client gone / server draining).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "api/openai.h"
#include "engine/sampler/sampler.h"

namespace rwkv::server {

struct JobSpec {
  bool chat = false;
  // Completion prompt as text or ids; chat messages are rendered by the scheduler because the
  // rendering depends on the session's history (chat_template.h).
  bool prompt_is_tokens = false;
  std::string prompt;
  std::vector<int32_t> prompt_tokens;
  std::vector<api::ChatMessage> messages;
  int64_t max_tokens = 16;
  SamplerParams sampling;
  std::vector<std::string> stop;
  std::string session_id;  // empty: no session
  std::string owner;       // tag of the API key (sessions belong to it)
};

struct JobEvent {
  enum class Kind { kText, kDone, kError };
  Kind kind = Kind::kText;
  std::string text;
  // kText: generated tokens whose text is now fully in the events so far.
  int64_t tokens_covered = 0;
  // kDone
  std::string finish_reason;
  api::Usage usage;
  // kError
  api::ApiError error;
};

class Job {
 public:
  explicit Job(JobSpec spec) : spec_(std::move(spec)) {}
  const JobSpec& spec() const { return spec_; }

  // Scheduler side.
  void push(JobEvent ev) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(ev));
    }
    cv_.notify_all();
  }

  // Handler side: waits up to `timeout` for the next event. False on timeout.
  bool pop(JobEvent* out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
    *out = std::move(events_.front());
    events_.pop_front();
    return true;
  }

  // Either side: stop at the next step. The scheduler ends the job with kDone.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Handler side: the client has received the text of this many generated tokens.
  void set_delivered(int64_t n) { delivered_.store(n); }
  int64_t delivered() const { return delivered_.load(); }
  // Handler side: set for streams, where `delivered` is meaningful on cancel.
  bool streaming = false;

 private:
  JobSpec spec_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> delivered_{0};
};

}  // namespace rwkv::server
