// WeightStore: serves the weights of a model under a memory budget (issue 7).
//
//   Result<TensorSource> src = TensorSource::from(mf);         // pread through the model file
//   EmbeddingCache emb(&*src, *mf.find("emb.weight"), 1000);   // LRU of 1000 rows
//   Status st = emb.get_row(token, x);                          // hit: copy; miss: pread
//
// Roles (the planner, engine/store/planner.h, sizes every cache from --mem-budget):
// - resident: tensors read once at load into memory this process owns (anonymous maps, so the
//   resident set is exactly what is kept; the model file's map is never touched for them);
// - embedding rows: EmbeddingCache, an LRU of N rows;
// - FFN neurons: NeuronCache per sparse layer, an LRU of neurons; a neuron is row i of W_k and
//   row i of W_v^T, read with one preadv per run of consecutive missing neurons and matrix;
// - head clusters: ClusterCache, an LRU of whole clusters (contiguous rows of head.weight).
// Every cache counts hits, misses and the bytes it read from the file.
//
// Results are bit-identical to the fully resident model: cached rows are the file's bytes, and
// the same kernels run over them in the same order (sparse kernels take slot indices; a chunk
// split of axpy_rows adds the same terms in the same order, kernels.h).
//
// Thread-safety: TensorSource is thread-safe. Each cache has its own mutex, held for the whole
// of one use (lookup, reads and the kernels over the cached rows), so pointers into a cache are
// never evicted while in use. forward() calls from several threads serialize per cache.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"
#include "kernels/kernels.h"

namespace rwkv {
class MmapFile;
}

namespace rwkv::store {

// Anonymous, page-aligned memory of a fixed size, returned to the kernel on destruction (never
// kept by malloc's free lists, so the resident set shrinks when a cache entry is evicted).
class AnonBuffer {
 public:
  AnonBuffer() = default;
  explicit AnonBuffer(size_t n);
  ~AnonBuffer();
  AnonBuffer(AnonBuffer&& o) noexcept;
  AnonBuffer& operator=(AnonBuffer&& o) noexcept;
  AnonBuffer(const AnonBuffer&) = delete;
  AnonBuffer& operator=(const AnonBuffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool ok() const { return size_ == 0 || data_ != nullptr; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Where tensor bytes come from: pread on the model file when its tensors live in an mmapped
// file, else a memcpy from memory (imports that transformed values into heap buffers).
class TensorSource {
 public:
  static TensorSource from(const ModelFile& mf);
  // Bytes [off, off + n) of tensor t into dst. Errors: IOError naming the file.
  Status read(const TensorRef& t, size_t off, size_t n, void* dst) const;
  // Rows [first, first + n) of the 2-D tensor t (row_bytes each) into n separate buffers.
  Status read_rows(const TensorRef& t, int64_t first, size_t row_bytes, uint8_t* const* dst, int n) const;
  // Drops the pages of the model file's map from the resident set (see MmapFile).
  void release_pages() const;
  bool file_backed() const { return !files_.empty(); }

 private:
  const MmapFile* file_of(const TensorRef& t) const;
  std::vector<std::shared_ptr<MmapFile>> files_;
};

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t bytes_read = 0;     // from the file
  size_t capacity_bytes = 0;   // memory the cache may hold
  double hit_rate() const { return hits + misses ? (double)hits / (double)(hits + misses) : 0.0; }
  CacheStats& operator+=(const CacheStats& o);
};

// LRU bookkeeping of `capacity` fixed-size slots for keys in [0, n_keys), with a use stamp per
// slot. Not thread-safe (the owning cache locks).
class SlotLru {
 public:
  SlotLru(int64_t n_keys, int64_t capacity);
  int64_t capacity() const { return (int64_t)slot_key_.size(); }
  // The slot holding `key` (now most recently used, stamped `stamp`), or -1.
  int32_t find(int64_t key, uint64_t stamp = 0);
  // A slot for `key`, evicting the least recently used key when full; `key` becomes most
  // recently used, stamped `stamp`. Returns -1 (nothing evicted) when every slot already carries
  // `stamp` and stamp != 0: the slots in use by the current round are never evicted.
  // REQUIRES: find(key) == -1.
  int32_t insert(int64_t key, uint64_t stamp = 0);

 private:
  void unlink(int32_t s);
  void push_front(int32_t s);
  std::vector<int32_t> key_slot_;   // [n_keys] slot or -1
  std::vector<int64_t> slot_key_;   // [capacity] key or -1
  std::vector<uint64_t> stamp_;     // [capacity]
  std::vector<int32_t> prev_, next_;
  int32_t head_ = -1, tail_ = -1;
  int32_t used_ = 0;
};

// Rows of the embedding table, LRU.
class EmbeddingCache {
 public:
  // REQUIRES: rows >= 1; `src` and `emb` outlive the cache.
  EmbeddingCache(const TensorSource* src, const TensorRef& emb, int64_t rows);
  // out[n_embd] = dequantised row `token`. Errors: IOError from the file.
  Status get_row(int64_t token, float* out);
  CacheStats stats() const;
  void reset_stats();

 private:
  const TensorSource* src_;
  TensorRef emb_;
  size_t row_bytes_;
  mutable std::mutex mu_;
  SlotLru lru_;        // guarded by mu_
  AnonBuffer slab_;    // guarded by mu_
  CacheStats st_;      // guarded by mu_
};

// The neurons of one sparse channel-mix layer: row i of W_k (optional: a factored or
// non-sparse-type key is resident and computed whole) and row i of W_v^T, LRU. Neurons of the
// current row are never evicted by that same row: once every cached neuron is in use, further
// misses go through a stream area of kStreamRows extra slots that is not cached (so a cache
// smaller than the active set keeps its neurons instead of cycling through all of them).
class NeuronCache {
 public:
  static constexpr int64_t kStreamRows = 64;
  // Missing neurons at most this many rows apart are read with one system call (the rows in
  // between are read and dropped).
  static constexpr int32_t kMaxGap = 4;
  // Memory of a cache of `capacity` neurons of `neuron_bytes` each (stream area included).
  static size_t bytes_for(int64_t capacity, size_t neuron_bytes) {
    return (size_t)(capacity + kStreamRows) * neuron_bytes;
  }
  // `key` may be null (the keys come from `keys_all` in run()). REQUIRES: capacity >= 1.
  NeuronCache(const TensorSource* src, const TensorRef* key, const TensorRef& value_t, int64_t capacity);
  // For one row: h_j = relu(W_k[active_j] · xk)^2 (or relu(keys_all[active_j])^2 when there is
  // no key here), out[C] += Σ_j h_j W_v^T[active_j], over the n active neurons (ascending), in
  // order, in chunks. `h` is scratch of n floats.
  // Errors: IOError from the file (out is then partial).
  Status run(const int32_t* active, int64_t n, const float* xk, const float* keys_all, float* h, float* out);
  int64_t capacity() const { return lru_.capacity(); }
  bool has_key() const { return key_ != nullptr; }
  CacheStats stats() const;
  void reset_stats();

 private:
  const TensorSource* src_;
  const TensorRef* key_;  // points at key_copy_ or null
  TensorRef key_copy_;
  TensorRef value_t_;
  size_t k_row_bytes_ = 0, v_row_bytes_ = 0;
  mutable std::mutex mu_;
  SlotLru lru_;                       // guarded by mu_
  AnonBuffer k_slab_, v_slab_;        // guarded by mu_
  std::vector<uint8_t> k_gap_, v_gap_; // guarded by mu_: where gap rows of a span read land
  std::vector<int32_t> slots_, miss_; // guarded by mu_ (per-call scratch)
  uint64_t round_ = 0;                // guarded by mu_: one per run()
  CacheStats st_;                     // guarded by mu_
};

// Whole clusters of a clustered head's reordered head.weight, LRU by bytes. Clusters used in the
// current round (one head evaluation) are never evicted by it; when the rest cannot make room, a
// cluster is read into a transient buffer (the size of the largest cluster) instead of cached.
class ClusterCache {
 public:
  // offsets: [K+1] row ranges of the clusters; capacity_bytes may be 0 (every read transient).
  ClusterCache(const TensorSource* src, const TensorRef& head, std::vector<int32_t> offsets, size_t capacity_bytes);
  // Starts a round; returns the lock the caller holds while it uses pointers from get().
  std::unique_lock<std::mutex> begin_round();
  // The rows of cluster c (offsets[c+1] - offsets[c] rows of the head's type), read on a miss.
  // The pointer stays valid until the next get() of the round.
  // REQUIRES: the caller holds the lock from begin_round(). Errors: IOError, ResourceExhausted.
  Result<const uint8_t*> get(int32_t c);
  CacheStats stats() const;
  void reset_stats();

 private:
  struct Entry {
    AnonBuffer rows;
    std::list<int32_t>::iterator pos;
    uint64_t round = 0;
  };
  const TensorSource* src_;
  TensorRef head_;
  std::vector<int32_t> offsets_;
  size_t row_bytes_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<int32_t> lru_;                     // guarded by mu_; front = most recent
  std::unordered_map<int32_t, Entry> entries_; // guarded by mu_
  size_t used_ = 0;                            // guarded by mu_
  uint64_t round_ = 0;                         // guarded by mu_
  AnonBuffer transient_;                       // guarded by mu_: the largest cluster
  CacheStats st_;                              // guarded by mu_ (capacity_bytes constant)
};

// Dense matrices every step needs in full but that the budget cannot keep resident: each
// product reads its matrix from the file into one shared buffer (the largest such matrix) and
// runs the kernel there. Costs a read of the matrix per product (from the page cache when the
// machine has room for it), no resident memory beyond the buffer.
class MatrixStream {
 public:
  MatrixStream(const TensorSource* src, size_t buffer_bytes);
  // Returns the lock the caller holds while it uses pointers from load().
  std::unique_lock<std::mutex> begin() const { return std::unique_lock<std::mutex>(mu_); }
  // Reads tensor t into the buffer; the pointer stays valid until the next load().
  // REQUIRES: the lock from begin() is held. Errors: IOError, ResourceExhausted.
  Result<const uint8_t*> load(const TensorRef& t);
  CacheStats stats() const;
  void reset_stats();

 private:
  const TensorSource* src_;
  mutable std::mutex mu_;
  AnonBuffer buf_;   // guarded by mu_
  CacheStats st_;    // guarded by mu_ (misses = matrices read)
};

// Totals over a model's caches, for bench and /metrics.
struct StoreStats {
  bool enabled = false;       // false: no budget, every weight mapped (the default)
  size_t budget = 0;
  size_t resident_bytes = 0;  // weights read whole at load
  CacheStats emb, ffn, head;
  CacheStats dense;           // streamed dense matrices (misses = matrix reads)
  uint64_t bytes_read() const { return emb.bytes_read + ffn.bytes_read + head.bytes_read + dense.bytes_read; }
};

}  // namespace rwkv::store
