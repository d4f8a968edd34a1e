#include "server/session_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "server/log.h"

namespace rwkv::server {
namespace {

constexpr uint32_t kFileMagic = 0x53535752;  // "RWSS"
constexpr uint32_t kFileVersion = 1;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t o = out.size();
  out.resize(o + sizeof(T));
  std::memcpy(out.data() + o, &v, sizeof(T));
}

struct Reader {
  const uint8_t* p;
  size_t n, off = 0;
  template <typename T>
  bool get(T* v) {
    if (n - off < sizeof(T)) return false;
    std::memcpy(v, p + off, sizeof(T));
    off += sizeof(T);
    return true;
  }
};

std::string random_id() {
  static std::mutex mu;
  static std::mt19937_64 rng([] {
    std::random_device rd;
    return ((uint64_t)rd() << 32) ^ rd();
  }());
  std::lock_guard<std::mutex> lock(mu);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "sess_%016llx%016llx", (unsigned long long)rng(), (unsigned long long)rng());
  return buf;
}

}  // namespace

SessionStore::SessionStore(std::string dir, size_t max_in_memory, Hparams hp)
    : dir_(std::move(dir)), max_in_memory_(std::max<size_t>(1, max_in_memory)), hp_(hp) {}

std::string SessionStore::owner_tag(const std::string& api_key) {
  if (api_key.empty()) return "";
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : api_key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)h);
  return buf;
}

bool SessionStore::valid_id(const std::string& id) {
  if (id.size() < 6 || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum((unsigned char)c) || c == '_' || c == '-')) return false;
  }
  return true;
}

Status SessionStore::open() {
  if (dir_.empty()) return Status::OK();
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::IOError(dir_ + ": cannot create the state directory: " + ec.message());
  const std::string probe = dir_ + "/.write-test";
  FILE* f = std::fopen(probe.c_str(), "wb");
  if (f == nullptr) return Status::IOError(dir_ + ": the state directory is not writable: " + std::strerror(errno));
  std::fclose(f);
  std::remove(probe.c_str());
  return Status::OK();
}

std::string SessionStore::path_of(const std::string& id) const { return dir_ + "/" + id + ".session"; }

Result<std::string> SessionStore::create(const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string id = random_id();
  Entry e;
  e.owner = owner;
  e.data = std::make_unique<SessionData>();
  e.data->state = State(hp_);
  e.created = e.last_used = now_seconds();
  lru_.push_front(id);
  e.lru = lru_.begin();
  entries_.emplace(id, std::move(e));
  evict_if_needed();
  return id;
}

Status SessionStore::write_file(const std::string& id, const Entry& e) const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, kFileMagic);
  put<uint32_t>(out, kFileVersion);
  put<uint32_t>(out, (uint32_t)e.owner.size());
  out.insert(out.end(), e.owner.begin(), e.owner.end());
  put<int64_t>(out, e.created);
  put<int64_t>(out, e.last_used);
  put<int64_t>(out, e.data->n_tokens);
  put<uint8_t>(out, e.data->ends_with_break ? 1 : 0);
  put<uint32_t>(out, (uint32_t)e.data->pending.size());
  for (int32_t t : e.data->pending) put<int32_t>(out, t);
  const std::vector<uint8_t> st = e.data->state.serialize();
  put<uint64_t>(out, st.size());
  out.insert(out.end(), st.begin(), st.end());
  put<uint32_t>(out, crc32(out.data(), out.size()));

  const std::string path = path_of(id);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t w = ::write(fd, out.data() + done, out.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::IOError(tmp + ": " + std::strerror(err));
    }
    done += (size_t)w;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Status::IOError(tmp + ": fsync failed");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": rename failed: " + std::strerror(errno));
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::OK();
}

Status SessionStore::load_file(const std::string& id) {
  if (dir_.empty()) return Status::NotFound("session '" + id + "' not found");
  const std::string path = path_of(id);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Status::NotFound("session '" + id + "' not found");
  std::vector<uint8_t> buf;
  uint8_t tmp[65536];
  size_t n;
  while ((n = std::fread(tmp, 1, sizeof(tmp), f)) > 0) buf.insert(buf.end(), tmp, tmp + n);
  std::fclose(f);
  const std::string bad = path + ": damaged session file";
  if (buf.size() < 8 || crc32(buf.data(), buf.size() - 4) != [&] {
        uint32_t c;
        std::memcpy(&c, buf.data() + buf.size() - 4, 4);
        return c;
      }()) {
    return Status::Corruption(bad + " (checksum)");
  }
  Reader r{buf.data(), buf.size() - 4};
  uint32_t magic, version, owner_len;
  if (!r.get(&magic) || magic != kFileMagic || !r.get(&version) || version != kFileVersion || !r.get(&owner_len) ||
      owner_len > 256 || r.n - r.off < owner_len) {
    return Status::Corruption(bad + " (header)");
  }
  Entry e;
  e.owner.assign(reinterpret_cast<const char*>(r.p + r.off), owner_len);
  r.off += owner_len;
  e.data = std::make_unique<SessionData>();
  uint8_t brk;
  uint32_t n_pending;
  uint64_t state_len;
  if (!r.get(&e.created) || !r.get(&e.last_used) || !r.get(&e.data->n_tokens) || !r.get(&brk) || !r.get(&n_pending) ||
      n_pending > (1u << 24)) {
    return Status::Corruption(bad + " (fields)");
  }
  e.data->ends_with_break = brk != 0;
  e.data->pending.resize(n_pending);
  for (uint32_t i = 0; i < n_pending; ++i) {
    if (!r.get(&e.data->pending[i])) return Status::Corruption(bad + " (pending tokens)");
  }
  if (!r.get(&state_len) || r.n - r.off != state_len) return Status::Corruption(bad + " (state length)");
  Result<State> st = State::deserialize(r.p + r.off, (size_t)state_len);
  if (!st.ok()) return st.status().with_context(path);
  if (!st->compatible_with(hp_)) return Status::Corruption(path + ": the session belongs to a different model");
  e.data->state = std::move(st).value();
  lru_.push_front(id);
  e.lru = lru_.begin();
  entries_[id] = std::move(e);
  ++restores_;
  return Status::OK();
}

void SessionStore::evict_if_needed() {
  // Walk from the least recently used end; busy sessions stay.
  size_t resident = lru_.size();
  auto it = lru_.end();
  while (resident > max_in_memory_ && it != lru_.begin()) {
    --it;
    auto e = entries_.find(*it);
    if (e == entries_.end() || e->second.busy) continue;
    const std::string id = *it;
    if (!dir_.empty()) {
      Status st = write_file(id, e->second);
      if (!st.ok()) {
        log_warn("session {}: eviction to disk failed, kept in memory: {}", id, st.to_string());
        continue;
      }
      e->second.data.reset();
    } else {
      log_warn("session {}: evicted without a state directory; its history is dropped", id);
      entries_.erase(e);
    }
    it = lru_.erase(it);
    --resident;
    ++evictions_;
  }
}

Result<SessionData*> SessionStore::acquire(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!valid_id(id)) return Status::NotFound("session '" + id + "' not found");
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.data) {
    if (it != entries_.end()) entries_.erase(it);
    Status st = load_file(id);
    if (!st.ok()) return st;
    it = entries_.find(id);
  }
  Entry& e = it->second;
  if (e.owner != owner) return Status::NotFound("session '" + id + "' not found");
  if (e.busy) return Status::Conflict("session '" + id + "' is in use by another request");
  e.busy = true;
  e.last_used = now_seconds();
  lru_.splice(lru_.begin(), lru_, e.lru);
  return e.data.get();
}

void SessionStore::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.busy = false;
  it->second.last_used = now_seconds();
  evict_if_needed();
}

Status SessionStore::remove(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!valid_id(id)) return Status::NotFound("session '" + id + "' not found");
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.data) {
    if (it != entries_.end()) entries_.erase(it);
    Status st = load_file(id);
    if (!st.ok()) return st.code() == StatusCode::kCorruption ? st : Status::NotFound("session '" + id + "' not found");
    it = entries_.find(id);
  }
  if (it->second.owner != owner) return Status::NotFound("session '" + id + "' not found");
  if (it->second.busy) return Status::Conflict("session '" + id + "' is in use by another request");
  lru_.erase(it->second.lru);
  entries_.erase(it);
  if (!dir_.empty()) std::remove(path_of(id).c_str());
  return Status::OK();
}

Result<SessionInfo> SessionStore::info(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!valid_id(id)) return Status::NotFound("session '" + id + "' not found");
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.data) {
    if (it != entries_.end()) entries_.erase(it);
    Status st = load_file(id);
    if (!st.ok()) return st.code() == StatusCode::kCorruption ? st : Status::NotFound("session '" + id + "' not found");
    it = entries_.find(id);
    evict_if_needed();
    it = entries_.find(id);
    if (it == entries_.end()) return Status::NotFound("session '" + id + "' not found");
  }
  const Entry& e = it->second;
  if (e.owner != owner) return Status::NotFound("session '" + id + "' not found");
  SessionInfo si;
  si.id = id;
  si.n_tokens = e.data ? e.data->n_tokens : 0;
  si.created = e.created;
  si.last_used = e.last_used;
  si.in_memory = e.data != nullptr;
  si.busy = e.busy;
  si.state_bytes = e.data ? e.data->state.size_bytes() : 0;
  return si;
}

Status SessionStore::persist_all() {
  std::lock_guard<std::mutex> lock(mu_);
  if (dir_.empty()) return Status::OK();
  Status first;
  for (auto& [id, e] : entries_) {
    if (!e.data) continue;
    Status st = write_file(id, e);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

size_t SessionStore::expire_idle(int64_t max_idle_s, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t cutoff = now - max_idle_s;
  size_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (!e.data || e.busy || e.last_used >= cutoff) {
      ++it;
      continue;
    }
    lru_.erase(e.lru);
    if (!dir_.empty()) std::remove(path_of(it->first).c_str());
    it = entries_.erase(it);
    ++n;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    for (std::filesystem::directory_iterator d(dir_, ec), end; !ec && d != end; d.increment(ec)) {
      const std::string name = d->path().filename().string();
      const std::string suffix = ".session";
      if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
      const std::string id = name.substr(0, name.size() - suffix.size());
      if (!valid_id(id)) continue;
      auto e = entries_.find(id);
      if (e != entries_.end() && e->second.data) continue;  // in memory: judged above
      struct stat sb;
      if (stat(d->path().c_str(), &sb) != 0 || (int64_t)sb.st_mtime >= cutoff) continue;
      if (std::remove(d->path().c_str()) == 0) {
        if (e != entries_.end()) entries_.erase(e);
        ++n;
      }
    }
  }
  expired_ += n;
  return n;
}

size_t SessionStore::expired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return expired_;
}

size_t SessionStore::in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}
size_t SessionStore::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evictions_;
}
size_t SessionStore::restores() const {
  std::lock_guard<std::mutex> lock(mu_);
  return restores_;
}
size_t SessionStore::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const auto& [id, e] : entries_) {
    if (e.data) total += e.data->state.size_bytes();
  }
  return total;
}

}  // namespace rwkv::server
