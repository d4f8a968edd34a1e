// SessionStore: per-session RNN state kept across requests, LRU in memory, evicted to disk.
//
//   Result<std::string> id = store.create(owner);
//   Result<SessionData*> s = store.acquire(id, owner);   // busy until release()
//   ... feed s->pending, then the new prompt, into s->state ...
//   store.release(id);
//
// A session belongs to the owner tag (derived from the API key) that created it; for any other
// owner it does not exist (NotFound), so ids cannot be probed. Idle sessions beyond
// `max_in_memory` are written to `dir` atomically (temp file, fsync, rename) with a checksum
// and read back transparently on next use, also after a restart. persist_all() writes every
// in-memory session (clean shutdown). expire_idle() deletes sessions idle for too long (an
// operator's choice: by default none are).
//
// Thread-safety: all methods lock an internal mutex; SessionData is only touched by the holder
// of an acquire() until release().
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/common/status.h"
#include "engine/state.h"

namespace rwkv::server {

struct SessionData {
  State state;
  // Tokens that belong to the history but are not in `state` yet (the last generated token,
  // or a cancelled request's delivered text); fed before the next prompt.
  std::vector<int32_t> pending;
  int64_t n_tokens = 0;          // history length in tokens (fed + pending)
  bool ends_with_break = false;  // the history's text ends with "\n\n" (chat turn boundary)
};

struct SessionInfo {
  std::string id;
  int64_t n_tokens = 0;
  int64_t created = 0;    // unix seconds
  int64_t last_used = 0;  // unix seconds
  bool in_memory = false;
  bool busy = false;
  size_t state_bytes = 0;
};

class SessionStore {
 public:
  // `dir` may be empty: then sessions live in memory only and eviction drops the oldest idle
  // session (logged); the server always passes a directory.
  SessionStore(std::string dir, size_t max_in_memory, Hparams hp);

  // Creates `dir` if needed. Errors: IOError.
  Status open();

  Result<std::string> create(const std::string& owner);
  // NotFound: unknown id or other owner. Conflict: in use by another request.
  Result<SessionData*> acquire(const std::string& id, const std::string& owner);
  void release(const std::string& id);
  Status remove(const std::string& id, const std::string& owner);
  Result<SessionInfo> info(const std::string& id, const std::string& owner);
  Status persist_all();
  // Deletes the sessions idle for more than `max_idle_s` seconds at time `now` (unix seconds):
  // idle ones in memory by their last use, ones on disk by their file's modification time
  // (written when they were evicted, so never earlier than their last use). Busy sessions
  // stay. Returns how many were deleted. Only with `serve --session-ttl-hours`: by default
  // sessions are kept forever.
  size_t expire_idle(int64_t max_idle_s, int64_t now);

  size_t in_memory() const;
  size_t evictions() const;
  size_t restores() const;
  size_t expired() const;
  // Sum of state bytes held in memory.
  size_t memory_bytes() const;

  // Stable tag of an API key (FNV-1a 64, hex). Not a secret: it only partitions sessions.
  static std::string owner_tag(const std::string& api_key);

 private:
  struct Entry {
    std::string owner;
    std::unique_ptr<SessionData> data;  // null when on disk only
    bool busy = false;
    int64_t created = 0;
    int64_t last_used = 0;
    std::list<std::string>::iterator lru;  // valid when data != null
  };
  std::string path_of(const std::string& id) const;
  Status write_file(const std::string& id, const Entry& e) const;
  // Loads an entry from disk into entries_ (data filled). NotFound if no file.
  Status load_file(const std::string& id);
  void evict_if_needed();  // REQUIRES: mu_ held
  static bool valid_id(const std::string& id);

  const std::string dir_;
  const size_t max_in_memory_;
  const Hparams hp_;
  mutable std::mutex mu_;
  // Guarded by mu_.
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;  // front = most recently used, only in-memory idle or busy entries
  size_t evictions_ = 0, restores_ = 0, expired_ = 0;
};

}  // namespace rwkv::server
