#include "engine/store/weight_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "engine/formats/mmap_file.h"

namespace rwkv::store {

// --- AnonBuffer ------------------------------------------------------------------------------

AnonBuffer::AnonBuffer(size_t n) : size_(n) {
  if (n == 0) return;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  data_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

AnonBuffer::~AnonBuffer() {
  if (data_ != nullptr) munmap(data_, size_);
}

AnonBuffer::AnonBuffer(AnonBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

AnonBuffer& AnonBuffer::operator=(AnonBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

// --- TensorSource ----------------------------------------------------------------------------

TensorSource TensorSource::from(const ModelFile& mf) {
  TensorSource s;
  for (const std::shared_ptr<Storage>& st : mf.storage) {
    if (auto f = std::dynamic_pointer_cast<MmapFile>(st)) s.files_.push_back(f);
  }
  return s;
}

const MmapFile* TensorSource::file_of(const TensorRef& t) const {
  for (const auto& f : files_) {
    if (f->contains(t.data, t.nbytes)) return f.get();
  }
  return nullptr;
}

Status TensorSource::read(const TensorRef& t, size_t off, size_t n, void* dst) const {
  if (off > t.nbytes || n > t.nbytes - off) {
    return Status::Internal("tensor '" + t.name + "': read of " + std::to_string(n) + " bytes at " + std::to_string(off) +
                            " is outside its " + std::to_string(t.nbytes) + " bytes");
  }
  const MmapFile* f = file_of(t);
  if (f == nullptr) {
    std::memcpy(dst, t.data + off, n);
    return Status::OK();
  }
  Status st = f->read_at((uint64_t)(t.data - f->data()) + off, n, dst);
  if (!st.ok()) return st.with_context("tensor '" + t.name + "'");
  return st;
}

Status TensorSource::read_rows(const TensorRef& t, int64_t first, size_t row_bytes, uint8_t* const* dst, int n) const {
  const size_t off = (size_t)first * row_bytes;
  if (off > t.nbytes || (size_t)n * row_bytes > t.nbytes - off) {
    return Status::Internal("tensor '" + t.name + "': rows " + std::to_string(first) + "+" + std::to_string(n) +
                            " are outside it");
  }
  const MmapFile* f = file_of(t);
  if (f == nullptr) {
    for (int i = 0; i < n; ++i) std::memcpy(dst[i], t.data + off + (size_t)i * row_bytes, row_bytes);
    return Status::OK();
  }
  std::vector<void*> bufs(dst, dst + n);
  std::vector<size_t> lens((size_t)n, row_bytes);
  Status st = f->read_scattered((uint64_t)(t.data - f->data()) + off, bufs.data(), lens.data(), n);
  if (!st.ok()) return st.with_context("tensor '" + t.name + "'");
  return st;
}

void TensorSource::release_pages() const {
  for (const auto& f : files_) f->release_pages();
}

CacheStats& CacheStats::operator+=(const CacheStats& o) {
  hits += o.hits;
  misses += o.misses;
  bytes_read += o.bytes_read;
  capacity_bytes += o.capacity_bytes;
  return *this;
}

// --- SlotLru ---------------------------------------------------------------------------------

SlotLru::SlotLru(int64_t n_keys, int64_t capacity)
    : key_slot_((size_t)n_keys, -1),
      slot_key_((size_t)capacity, -1),
      stamp_((size_t)capacity, 0),
      prev_((size_t)capacity, -1),
      next_((size_t)capacity, -1) {}

void SlotLru::unlink(int32_t s) {
  const int32_t p = prev_[(size_t)s], n = next_[(size_t)s];
  if (p >= 0) next_[(size_t)p] = n; else head_ = n;
  if (n >= 0) prev_[(size_t)n] = p; else tail_ = p;
  prev_[(size_t)s] = next_[(size_t)s] = -1;
}

void SlotLru::push_front(int32_t s) {
  prev_[(size_t)s] = -1;
  next_[(size_t)s] = head_;
  if (head_ >= 0) prev_[(size_t)head_] = s;
  head_ = s;
  if (tail_ < 0) tail_ = s;
}

int32_t SlotLru::find(int64_t key, uint64_t stamp) {
  const int32_t s = key_slot_[(size_t)key];
  if (s >= 0) {
    stamp_[(size_t)s] = stamp;
    if (s != head_) {
      unlink(s);
      push_front(s);
    }
  }
  return s;
}

int32_t SlotLru::insert(int64_t key, uint64_t stamp) {
  int32_t s;
  if (used_ < (int32_t)slot_key_.size()) {
    s = used_++;
  } else {
    // The tail is the least recently used: if the current round stamped it, it stamped all.
    if (stamp != 0 && stamp_[(size_t)tail_] == stamp) return -1;
    s = tail_;
    unlink(s);
    key_slot_[(size_t)slot_key_[(size_t)s]] = -1;
  }
  stamp_[(size_t)s] = stamp;
  slot_key_[(size_t)s] = key;
  key_slot_[(size_t)key] = s;
  push_front(s);
  return s;
}

// --- EmbeddingCache --------------------------------------------------------------------------

EmbeddingCache::EmbeddingCache(const TensorSource* src, const TensorRef& emb, int64_t rows)
    : src_(src),
      emb_(emb),
      row_bytes_(dtype_row_bytes(emb.type, emb.ne[0])),
      lru_(emb.ne[1], std::max<int64_t>(1, std::min<int64_t>(rows, emb.ne[1]))),
      slab_(row_bytes_ * (size_t)lru_.capacity()) {
  st_.capacity_bytes = slab_.size();
}

Status EmbeddingCache::get_row(int64_t token, float* out) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!slab_.ok()) return Status::ResourceExhausted("embedding cache: out of memory");
  int32_t s = lru_.find(token);
  if (s >= 0) {
    ++st_.hits;
  } else {
    s = lru_.insert(token);
    uint8_t* dst = slab_.data() + (size_t)s * row_bytes_;
    Status st = src_->read(emb_, (size_t)token * row_bytes_, row_bytes_, dst);
    if (!st.ok()) return st;
    ++st_.misses;
    st_.bytes_read += row_bytes_;
  }
  const kern::MatView one{emb_.type, 1, emb_.ne[0], slab_.data() + (size_t)s * row_bytes_};
  kern::kernels().get_row(one, 0, out);
  return Status::OK();
}

CacheStats EmbeddingCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

void EmbeddingCache::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  st_.hits = st_.misses = st_.bytes_read = 0;
}

// --- NeuronCache -----------------------------------------------------------------------------

NeuronCache::NeuronCache(const TensorSource* src, const TensorRef* key, const TensorRef& value_t, int64_t capacity)
    : src_(src),
      key_(nullptr),
      value_t_(value_t),
      v_row_bytes_(dtype_row_bytes(value_t.type, value_t.ne[0])),
      lru_(value_t.ne[1], std::max<int64_t>(1, std::min<int64_t>(capacity, value_t.ne[1]))) {
  if (key != nullptr) {
    key_copy_ = *key;
    key_ = &key_copy_;
    k_row_bytes_ = dtype_row_bytes(key->type, key->ne[0]);
    k_slab_ = AnonBuffer(bytes_for(lru_.capacity(), k_row_bytes_));
  }
  v_slab_ = AnonBuffer(bytes_for(lru_.capacity(), v_row_bytes_));
  v_gap_.resize(v_row_bytes_);
  k_gap_.resize(k_row_bytes_);
  st_.capacity_bytes = k_slab_.size() + v_slab_.size();
}

Status NeuronCache::run(const int32_t* active, int64_t n, const float* xk, const float* keys_all, float* h,
                        float* out) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!k_slab_.ok() || !v_slab_.ok()) return Status::ResourceExhausted("FFN neuron cache: out of memory");
  const kern::Kernels& k = kern::kernels();
  const int64_t cap = lru_.capacity(), slots = cap + kStreamRows;
  const kern::MatView kv = key_ != nullptr ? kern::MatView{key_->type, slots, key_->ne[0], k_slab_.data()}
                                           : kern::MatView{};
  const kern::MatView vv{value_t_.type, slots, value_t_.ne[0], v_slab_.data()};
  const uint64_t round = ++round_;
  // Reads the chunk's missing rows (runs of consecutive neurons are contiguous in the file:
  // one scattered read per run and matrix), then runs the kernels over the chunk's slots.
  auto flush = [&](int64_t j0, int64_t m) -> Status {
    // Misses close together in the file (gaps of at most kMaxGap rows) are fetched with one
    // preadv per matrix over their whole span; the gap rows land in a scratch row (cheaper than
    // one system call per run when the active neurons are dense).
    std::vector<uint8_t*> kd, vd;
    for (size_t a = 0; a < miss_.size();) {
      size_t b = a + 1;
      while (b < miss_.size() && active[j0 + miss_[b]] - active[j0 + miss_[b - 1]] <= kMaxGap + 1) ++b;
      kd.clear();
      vd.clear();
      for (size_t i = a; i < b; ++i) {
        if (i > a) {
          for (int32_t g = active[j0 + miss_[i - 1]] + 1; g < active[j0 + miss_[i]]; ++g) {
            if (key_ != nullptr) kd.push_back(k_gap_.data());
            vd.push_back(v_gap_.data());
          }
        }
        const int32_t s = slots_[(size_t)miss_[i]];
        if (key_ != nullptr) kd.push_back(k_slab_.data() + (size_t)s * k_row_bytes_);
        vd.push_back(v_slab_.data() + (size_t)s * v_row_bytes_);
      }
      const int64_t first = active[j0 + miss_[a]];
      Status st;
      if (key_ != nullptr) {
        st = src_->read_rows(*key_, first, k_row_bytes_, kd.data(), (int)kd.size());
        st_.bytes_read += kd.size() * k_row_bytes_;
      }
      if (st.ok()) {
        st = src_->read_rows(value_t_, first, v_row_bytes_, vd.data(), (int)vd.size());
        st_.bytes_read += vd.size() * v_row_bytes_;
      }
      if (!st.ok()) {
        // Slots may hold partial data: forget the whole cache rather than serve it.
        lru_ = SlotLru(value_t_.ne[1], cap);
        return st;
      }
      a = b;
    }
    // h_j = relu(W_k[active_j] · xk)^2, then out += Σ_j h_j W_v^T[active_j] (in j order).
    float* hc = h + j0;
    if (key_ != nullptr) {
      k.gemv_rows(kv, slots_.data(), m, xk, hc);
    } else {
      for (int64_t j = 0; j < m; ++j) hc[j] = keys_all[active[j0 + j]];
    }
    for (int64_t j = 0; j < m; ++j) hc[j] = hc[j] > 0.0f ? hc[j] * hc[j] : 0.0f;
    k.axpy_rows(vv, slots_.data(), hc, m, out);
    return Status::OK();
  };
  slots_.clear();
  miss_.clear();
  int64_t j0 = 0, streamed = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t neuron = active[j];
    int32_t s = lru_.find(neuron, round);
    if (s >= 0) {
      ++st_.hits;
    } else {
      s = lru_.insert(neuron, round);
      if (s < 0) s = (int32_t)(cap + streamed++);  // every cached neuron is in use: stream it
      ++st_.misses;
      miss_.push_back((int32_t)(j - j0));
    }
    slots_.push_back(s);
    if (streamed == kStreamRows || j == n - 1) {
      Status st = flush(j0, j + 1 - j0);
      if (!st.ok()) return st;
      slots_.clear();
      miss_.clear();
      j0 = j + 1;
      streamed = 0;
    }
  }
  return Status::OK();
}

CacheStats NeuronCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

void NeuronCache::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  st_.hits = st_.misses = st_.bytes_read = 0;
}

// --- ClusterCache ----------------------------------------------------------------------------

ClusterCache::ClusterCache(const TensorSource* src, const TensorRef& head, std::vector<int32_t> offsets,
                           size_t capacity_bytes)
    : src_(src),
      head_(head),
      offsets_(std::move(offsets)),
      row_bytes_(dtype_row_bytes(head.type, head.ne[0])),
      capacity_(capacity_bytes) {
  int64_t largest = 0;
  for (size_t i = 0; i + 1 < offsets_.size(); ++i) largest = std::max<int64_t>(largest, offsets_[i + 1] - offsets_[i]);
  transient_ = AnonBuffer((size_t)largest * row_bytes_);
  st_.capacity_bytes = capacity_bytes + transient_.size();
}

std::unique_lock<std::mutex> ClusterCache::begin_round() {
  std::unique_lock<std::mutex> lk(mu_);
  ++round_;
  return lk;
}

Result<const uint8_t*> ClusterCache::get(int32_t c) {
  auto it = entries_.find(c);
  if (it != entries_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.pos);
    it->second.round = round_;
    ++st_.hits;
    return (const uint8_t*)it->second.rows.data();
  }
  const int64_t lo = offsets_[(size_t)c], n = offsets_[(size_t)c + 1] - lo;
  const size_t bytes = (size_t)n * row_bytes_;
  // Evict least recently used clusters of earlier rounds until this one fits; if it cannot
  // fit, read it into the transient buffer (valid until the next get()).
  // An evicted cluster's buffer that is large enough (and not wastefully so) is reused: mapping
  // a fresh one costs a page fault per 4 KiB on every miss.
  AnonBuffer reuse;
  while (!lru_.empty() && used_ + bytes > capacity_) {
    auto victim = entries_.find(lru_.back());
    if (victim->second.round == round_) break;
    AnonBuffer& vb = victim->second.rows;
    used_ -= vb.size();
    if (reuse.size() == 0 && vb.size() >= bytes && vb.size() <= 2 * bytes) reuse = std::move(vb);
    entries_.erase(victim);
    lru_.pop_back();
  }
  if (used_ + bytes > capacity_) {
    if (!transient_.ok() || transient_.size() < bytes) return Status::ResourceExhausted("head cluster cache: out of memory");
    Status st = src_->read(head_, (size_t)lo * row_bytes_, bytes, transient_.data());
    if (!st.ok()) return st;
    ++st_.misses;
    st_.bytes_read += bytes;
    return (const uint8_t*)transient_.data();
  }
  if (reuse.size() != 0 && used_ + reuse.size() > capacity_) reuse = AnonBuffer();  // keep the bound
  AnonBuffer buf = reuse.size() != 0 ? std::move(reuse) : AnonBuffer(bytes);
  if (!buf.ok()) return Status::ResourceExhausted("head cluster cache: out of memory");
  Status st = src_->read(head_, (size_t)lo * row_bytes_, bytes, buf.data());
  if (!st.ok()) return st;
  ++st_.misses;
  st_.bytes_read += bytes;
  used_ += buf.size();
  lru_.push_front(c);
  Entry& e = entries_[c];
  e.rows = std::move(buf);
  e.pos = lru_.begin();
  e.round = round_;
  return (const uint8_t*)e.rows.data();
}

CacheStats ClusterCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

void ClusterCache::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  st_.hits = st_.misses = st_.bytes_read = 0;
}

// --- MatrixStream ----------------------------------------------------------------------------

MatrixStream::MatrixStream(const TensorSource* src, size_t buffer_bytes) : src_(src), buf_(buffer_bytes) {
  st_.capacity_bytes = buffer_bytes;
}

Result<const uint8_t*> MatrixStream::load(const TensorRef& t) {
  if (!buf_.ok() || buf_.size() < t.nbytes) {
    return Status::ResourceExhausted("tensor '" + t.name + "': the matrix stream buffer (" + std::to_string(buf_.size()) +
                                     " bytes) cannot hold it");
  }
  Status st = src_->read(t, 0, t.nbytes, buf_.data());
  if (!st.ok()) return st;
  ++st_.misses;
  st_.bytes_read += t.nbytes;
  return (const uint8_t*)buf_.data();
}

CacheStats MatrixStream::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

void MatrixStream::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  st_.hits = st_.misses = st_.bytes_read = 0;
}

}  // namespace rwkv::store
