#include "server/prefix_cache.h"

#include <algorithm>

namespace rwkv::server {

size_t PrefixCache::lookup(const std::vector<int32_t>& tokens, State* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto best = lru_.end();
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    const size_t n = it->tokens.size();
    if (n >= tokens.size() || (best != lru_.end() && n <= best->tokens.size())) continue;
    if (std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin())) best = it;
  }
  if (best == lru_.end()) {
    ++misses_;
    return 0;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, best);
  *out = best->state;
  return best->tokens.size();
}

void PrefixCache::insert(const int32_t* tokens, size_t n, const State& st) {
  if (max_bytes_ == 0 || n == 0) return;
  const size_t cost = st.size_bytes() + n * sizeof(int32_t);
  if (cost > max_bytes_) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    if (it->tokens.size() == n && std::equal(it->tokens.begin(), it->tokens.end(), tokens)) {
      lru_.splice(lru_.begin(), lru_, it);
      return;
    }
  }
  lru_.push_front(Entry{std::vector<int32_t>(tokens, tokens + n), st});
  bytes_ += cost;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    const Entry& last = lru_.back();
    bytes_ -= last.state.size_bytes() + last.tokens.size() * sizeof(int32_t);
    lru_.pop_back();
  }
}

size_t PrefixCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}
size_t PrefixCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}
uint64_t PrefixCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
uint64_t PrefixCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

}  // namespace rwkv::server
