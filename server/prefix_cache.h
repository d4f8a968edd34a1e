// PrefixCache: states after token prefixes (a shared system prompt, say), reused by longest
// token-prefix match for requests without a session, within a byte budget (LRU).
//
// Thread-safety: internally locked.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <vector>

#include "engine/state.h"

namespace rwkv::server {

class PrefixCache {
 public:
  explicit PrefixCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The longest cached prefix of `tokens` that is shorter than `tokens` (at least one token
  // must remain to produce logits). Copies its state into *out and returns its length; 0 when
  // nothing matches.
  size_t lookup(const std::vector<int32_t>& tokens, State* out);
  // Remembers the state after tokens[0, n).
  void insert(const int32_t* tokens, size_t n, const State& st);

  size_t bytes() const;
  size_t entries() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    State state;
  };
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front = most recent; guarded by mu_
  size_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace rwkv::server
