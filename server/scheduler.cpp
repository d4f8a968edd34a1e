#include "server/scheduler.h"

#include <algorithm>

#include "engine/tokenizer/stream_decoder.h"
#include "kernels/kernels.h"
#include "server/chat_template.h"
#include "server/log.h"

namespace rwkv::server {

using clock_type = std::chrono::steady_clock;

struct Scheduler::Active {
  std::shared_ptr<Job> job;
  // The state being advanced: the session's, or own_state for jobs without a session.
  State own_state;
  State* state = nullptr;
  SessionData* session = nullptr;
  std::string session_id;
  // Session rollback point: the state and pending tokens before this request.
  State snapshot;
  // Tokens to prefill: the session's pending tokens, then the new prompt.
  std::vector<int32_t> feed;
  size_t fed = 0;
  // Prefix cache: feed[i] is prompt token (cache_base + i) when cacheable.
  bool cacheable = false;
  std::vector<int32_t> prompt;
  size_t cache_base = 0;
  int64_t prompt_tokens = 0;  // counted in usage (the new prompt only)
  std::vector<int32_t> generated;
  int32_t next = -1;  // sampled token to feed in the next decode step
  bool decoding = false;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::vector<float> logits;
  bool done = false;
};

Scheduler::Scheduler(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                     SessionStore* sessions, SchedulerOptions opt)
    : model_(std::move(model)),
      tok_(std::move(tokenizer)),
      sessions_(sessions),
      opt_(opt),
      prefix_(opt.prefix_cache_bytes) {}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || draining_) return Status::Unavailable("the server is shutting down");
    // Free batch slots take jobs at once; beyond them up to max_queue may wait.
    if ((int64_t)queue_.size() + stats_.active >= opt_.max_batch + opt_.max_queue) {
      return Status::ResourceExhausted("the request queue is full (" + std::to_string(opt_.max_queue) + " waiting); retry later");
    }
    queue_.push_back(std::move(job));
    stats_.queued = (int64_t)queue_.size();
  }
  cv_.notify_all();
  return Status::OK();
}

void Scheduler::drain(std::chrono::milliseconds deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  const auto until = clock_type::now() + deadline;
  idle_cv_.wait_until(lock, until, [&] { return stats_.active == 0 && queue_.empty(); });
  force_finish_ = true;
  cv_.notify_all();
  idle_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return stats_.active == 0 && queue_.empty(); });
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats s = stats_;
  s.prefix_cache_hits = prefix_.hits();
  s.prefix_cache_misses = prefix_.misses();
  s.prefix_cache_bytes = prefix_.bytes();
  return s;
}

void Scheduler::fail(const std::shared_ptr<Job>& job, const api::ApiError& e) {
  JobEvent ev;
  ev.kind = JobEvent::Kind::kError;
  ev.error = e;
  job->push(std::move(ev));
}

bool Scheduler::admit(const std::shared_ptr<Job>& job, Active* a) {
  const JobSpec& spec = job->spec();
  a->job = job;
  const Hparams& hp = model_->hparams();
  if (!spec.session_id.empty()) {
    Result<SessionData*> s = sessions_->acquire(spec.session_id, spec.owner);
    if (!s.ok()) {
      fail(job, api::error_from_status(s.status(), "session_id"));
      return false;
    }
    a->session = s.value();
    a->session_id = spec.session_id;
    a->state = &a->session->state;
    a->snapshot = a->session->state;
  } else {
    a->own_state = model_->new_state();
    a->state = &a->own_state;
  }
  // The new prompt in tokens.
  std::vector<int32_t> prompt;
  if (spec.chat) {
    const bool continues = a->session != nullptr && a->session->n_tokens > 0;
    prompt = tok_->encode(render_chat(spec.messages, continues, continues && a->session->ends_with_break));
  } else if (spec.prompt_is_tokens) {
    prompt = spec.prompt_tokens;
  } else {
    prompt = tok_->encode(spec.prompt);
  }
  auto release_and_fail = [&](const api::ApiError& e) {
    if (a->session != nullptr) sessions_->release(a->session_id);
    a->session = nullptr;
    fail(job, e);
    return false;
  };
  if ((int64_t)prompt.size() > opt_.max_prompt_tokens) {
    return release_and_fail(api::make_error(400, "invalid_request_error",
                                            "the prompt has " + std::to_string(prompt.size()) + " tokens; the limit is " +
                                                std::to_string(opt_.max_prompt_tokens),
                                            spec.chat ? "messages" : "prompt", "context_length_exceeded"));
  }
  a->prompt_tokens = (int64_t)prompt.size();
  if (a->session != nullptr) a->feed = a->session->pending;
  a->feed.insert(a->feed.end(), prompt.begin(), prompt.end());
  if (a->feed.empty()) {
    return release_and_fail(api::make_error(400, "invalid_request_error",
                                            a->session ? "the prompt is empty and the session has nothing to continue from"
                                                       : "the prompt is empty",
                                            spec.chat ? "messages" : "prompt"));
  }
  if (a->session == nullptr && opt_.prefix_cache_bytes > 0) {
    // Reuse the state after the longest cached prefix; feed only the rest.
    const size_t reused = prefix_.lookup(prompt, &a->own_state);
    if (reused > 0) {
      a->feed.erase(a->feed.begin(), a->feed.begin() + (std::ptrdiff_t)reused);
      a->cache_base = reused;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.prefix_tokens_reused += reused;
    }
  }
  a->prompt = std::move(prompt);
  a->cacheable = a->session == nullptr && opt_.prefix_cache_bytes > 0;
  SamplerParams sp = spec.sampling;
  a->sampler = std::make_unique<Sampler>(sp, (int32_t)hp.n_vocab);
  std::vector<std::string> stops = spec.stop;
  if (spec.chat && std::find(stops.begin(), stops.end(), chat_turn_stop()) == stops.end()) {
    stops.push_back(chat_turn_stop());
  }
  a->decoder = std::make_unique<StreamDecoder>(*tok_, stops);
  a->logits.resize((size_t)hp.n_vocab);
  return true;
}

void Scheduler::finish(Active& a, const std::string& reason) {
  const std::string rest = a.decoder->flush();
  if (!rest.empty()) {
    JobEvent ev;
    ev.text = rest;
    ev.tokens_covered = (int64_t)a.generated.size();
    a.job->push(std::move(ev));
  }
  JobEvent done;
  done.kind = JobEvent::Kind::kDone;
  done.finish_reason = reason;
  done.usage.prompt_tokens = a.prompt_tokens;
  done.usage.completion_tokens = (int64_t)a.generated.size();
  if (a.session != nullptr) {
    // Everything generated belongs to the history; the last token is not in the state yet.
    SessionData& s = *a.session;
    s.pending.clear();
    if (!a.decoding) {
      // Ended before the prompt was fed (shutdown): the rest of it is still history.
      s.pending.assign(a.feed.begin() + (std::ptrdiff_t)a.fed, a.feed.end());
    } else if (a.next >= 0) {
      s.pending.push_back(a.next);
    }
    s.n_tokens += a.prompt_tokens + (int64_t)a.generated.size();
    const std::string tail = tok_->decode(a.generated.empty() ? a.prompt : a.generated);
    if (!tail.empty()) s.ends_with_break = tail.size() >= 2 && tail.compare(tail.size() - 2, 2, "\n\n") == 0;
    sessions_->release(a.session_id);
    a.session = nullptr;
  }
  a.job->push(std::move(done));
  a.done = true;
}

void Scheduler::abandon(Active& a) {
  if (a.session != nullptr) {
    // Roll back to the pre-request state; what the client saw (the prompt and the delivered
    // tokens) becomes pending history, fed before the session's next prompt.
    SessionData& s = *a.session;
    const int64_t delivered = a.job->streaming ? std::min<int64_t>(a.job->delivered(), (int64_t)a.generated.size()) : 0;
    std::vector<int32_t> pending = s.pending;  // still the pre-request pending tokens
    pending.insert(pending.end(), a.prompt.begin(), a.prompt.end());
    pending.insert(pending.end(), a.generated.begin(), a.generated.begin() + delivered);
    s.state = a.snapshot;
    s.pending = std::move(pending);
    s.n_tokens += a.prompt_tokens + delivered;
    const std::string tail = tok_->decode(delivered > 0 ? std::vector<int32_t>(a.generated.begin(), a.generated.begin() + delivered)
                                                        : a.prompt);
    if (!tail.empty()) s.ends_with_break = tail.size() >= 2 && tail.compare(tail.size() - 2, 2, "\n\n") == 0;
    sessions_->release(a.session_id);
    a.session = nullptr;
  }
  JobEvent done;
  done.kind = JobEvent::Kind::kDone;
  done.finish_reason = "cancelled";
  done.usage.prompt_tokens = a.prompt_tokens;
  done.usage.completion_tokens = (int64_t)a.generated.size();
  a.job->push(std::move(done));
  a.done = true;
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.jobs_cancelled;
}

bool Scheduler::sample_next(Active& a, int32_t tok) {
  if (tok == tok_->eos_id()) {
    a.next = -1;
    finish(a, "stop");
    return false;
  }
  a.sampler->accept(tok);
  a.generated.push_back(tok);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.generated_tokens;
  }
  const std::string text = a.decoder->push(tok);
  if (!text.empty()) {
    JobEvent ev;
    ev.text = text;
    ev.tokens_covered = (int64_t)a.generated.size();
    a.job->push(std::move(ev));
  }
  a.next = tok;
  if (a.decoder->stopped()) {
    finish(a, "stop");
    return false;
  }
  if ((int64_t)a.generated.size() >= a.job->spec().max_tokens) {
    finish(a, "length");
    return false;
  }
  return true;
}

void Scheduler::step(std::vector<std::unique_ptr<Active>>& active) {
  // Segments: every decoding sequence feeds its last token; prefilling sequences share the
  // prompt-row budget, chunks ending at multiples of prefill_chunk so the prefix cache can
  // snapshot there.
  std::vector<Segment> segs;
  std::vector<Active*> owners;
  std::vector<int64_t> rows;
  int64_t budget = std::max<int64_t>(1, opt_.prefill_chunk);
  int64_t prefill_rows = 0, decode_rows = 0;
  for (auto& ap : active) {
    Active& a = *ap;
    if (a.decoding) {
      segs.push_back(Segment{a.state, &a.next, 1, LogitsMode::kLast, a.logits.data()});
      owners.push_back(&a);
      rows.push_back(1);
      ++decode_rows;
      continue;
    }
    if (budget <= 0) continue;
    int64_t n = std::min<int64_t>(budget, (int64_t)(a.feed.size() - a.fed));
    if (a.cacheable) {
      // Stop at the next multiple of prefill_chunk in prompt positions.
      const int64_t pos = (int64_t)(a.cache_base + a.fed);
      const int64_t to_boundary = opt_.prefill_chunk - pos % opt_.prefill_chunk;
      n = std::min(n, to_boundary);
    }
    const bool last = a.fed + (size_t)n == a.feed.size();
    segs.push_back(Segment{a.state, a.feed.data() + a.fed, n, last ? LogitsMode::kLast : LogitsMode::kNone,
                           last ? a.logits.data() : nullptr});
    owners.push_back(&a);
    rows.push_back(n);
    budget -= n;
    prefill_rows += n;
  }
  if (segs.empty()) return;
  const auto t0 = clock_type::now();
  Status st = model_->forward(segs.data(), segs.size());
  const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  // One line per step at debug level: how full the batches are is what decides throughput.
  log_debug("step: {} decoding, {} prompt rows, {:.2f} ms", decode_rows, prefill_rows, secs * 1e3);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps;
    const double total = (double)(prefill_rows + decode_rows);
    stats_.prefill_seconds += secs * (double)prefill_rows / total;
    stats_.decode_seconds += secs * (double)decode_rows / total;
    stats_.prompt_tokens += (uint64_t)prefill_rows;
  }
  if (!st.ok()) {
    log_error("forward pass failed: {}", st.to_string());
    for (Active* a : owners) {
      if (a->session != nullptr) {
        a->session->state = a->snapshot;
        sessions_->release(a->session_id);
        a->session = nullptr;
      }
      fail(a->job, api::error_from_status(Status::Internal("forward pass failed: " + st.message())));
      a->done = true;
    }
    return;
  }
  // Draw every sequence's next token first, on the kernels' thread team: a draw over a 65k
  // vocabulary costs about as much as a sequence's share of the forward pass, and each Active
  // has its own sampler (RNG and scratch), so the draws are independent and their results do
  // not depend on the thread count.
  std::vector<int32_t> drawn(owners.size(), -1);
  std::vector<size_t> to_draw;
  for (size_t i = 0; i < owners.size(); ++i) {
    const Active& a = *owners[i];
    if (a.decoding || a.fed + (size_t)rows[i] == a.feed.size()) to_draw.push_back(i);
  }
  kern::parallel_each((int64_t)to_draw.size(), [&](int64_t j) {
    Active& a = *owners[to_draw[(size_t)j]];
    drawn[to_draw[(size_t)j]] = a.sampler->sample(a.logits.data());
  });
  for (size_t i = 0; i < owners.size(); ++i) {
    Active& a = *owners[i];
    if (a.decoding) {
      sample_next(a, drawn[i]);
      continue;
    }
    a.fed += (size_t)rows[i];
    if (a.cacheable && a.fed > 0) {
      const size_t pos = a.cache_base + a.fed;
      if (pos % (size_t)opt_.prefill_chunk == 0 || a.fed == a.feed.size()) {
        prefix_.insert(a.prompt.data(), pos, *a.state);
      }
    }
    if (a.fed == a.feed.size()) {
      a.decoding = true;
      sample_next(a, drawn[i]);
    }
  }
}

void Scheduler::run() {
  std::vector<std::unique_ptr<Active>> active;
  for (;;) {
    std::vector<std::shared_ptr<Job>> incoming;
    bool force = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (active.empty()) {
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_ || !queue_.empty(); });
      }
      if (stopping_) break;
      while (!queue_.empty() && (int64_t)(active.size() + incoming.size()) < opt_.max_batch) {
        incoming.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      // Jobs taken off the queue count as active from here on (submit() checks the sum).
      stats_.active = (int64_t)(active.size() + incoming.size());
      stats_.queued = (int64_t)queue_.size();
      force = force_finish_;
    }
    for (auto& job : incoming) {
      if (job->cancelled()) {
        JobEvent done;
        done.kind = JobEvent::Kind::kDone;
        done.finish_reason = "cancelled";
        job->push(std::move(done));
        continue;
      }
      auto a = std::make_unique<Active>();
      if (admit(job, a.get())) active.push_back(std::move(a));
    }
    // Client disconnects and forced ends (shutdown) happen between steps.
    for (auto& ap : active) {
      if (ap->done) continue;
      if (ap->job->cancelled()) {
        abandon(*ap);
      } else if (force) {
        finish(*ap, "length");
      }
    }
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& a) { return a->done; }), active.end());
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.active = (int64_t)active.size();
    }
    if (!active.empty()) step(active);
    size_t finished = 0;
    for (const auto& a : active) finished += a->done ? 1 : 0;
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& a) { return a->done; }), active.end());
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.jobs_finished += finished;
      stats_.active = (int64_t)active.size();
      if (active.empty() && queue_.empty()) idle_cv_.notify_all();
    }
  }
  // Stopped: nobody will advance these any more.
  for (auto& a : active) {
    if (!a->done) finish(*a, "length");
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& job : queue_) fail(job, api::make_error(503, "unavailable_error", "the server is shutting down"));
  queue_.clear();
  stats_.active = 0;
  stats_.queued = 0;
  idle_cv_.notify_all();
}

}  // namespace rwkv::server
