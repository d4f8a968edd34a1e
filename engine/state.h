// State: the recurrent state of one sequence, a plain value type.
//
//   State s = model.new_state();
//   State snapshot = s;                          // copies are independent
//   std::vector<uint8_t> bytes = s.serialize();  // versioned, checksummed
//   Result<State> back = State::deserialize(bytes.data(), bytes.size());
//
// Layout per layer, rwkv.cpp order (rwkv-math.md §8), all f32:
//   ffn_xx[C], att_xx[C], then v4: aa[C], bb[C], pp[C]; v5/v6: H*S*S as [head][key][value];
//   v7: H*S*S as [head][value][key].
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/common/aligned.h"
#include "engine/common/status.h"
#include "engine/formats/model_file.h"

namespace rwkv {

class State {
 public:
  State() = default;
  // A fresh state (zeros; v4 pp = -1e30) for a model of these hyper-parameters.
  explicit State(const Hparams& hp);

  RwkvVersion version() const { return version_; }
  int64_t n_layer() const { return n_layer_; }
  int64_t n_embd() const { return n_embd_; }
  int64_t floats_per_layer() const { return per_layer_; }
  size_t size_bytes() const { return data_.size() * sizeof(float); }
  bool empty() const { return data_.empty(); }

  float* ffn_xx(int64_t layer) { return data_.data() + layer * per_layer_; }
  float* att_xx(int64_t layer) { return ffn_xx(layer) + n_embd_; }
  // v4: aa, bb, pp (3C); v5+: the WKV matrices (H*S*S).
  float* wkv(int64_t layer) { return ffn_xx(layer) + 2 * n_embd_; }
  const float* raw() const { return data_.data(); }
  float* raw() { return data_.data(); }

  // Resets to the initial state.
  void reset();
  // True when this state belongs to a model with these hyper-parameters.
  bool compatible_with(const Hparams& hp) const;

  // Bytes: magic "RWST", format version, model shape, float count, payload, CRC-32.
  std::vector<uint8_t> serialize() const;
  // Corruption on a bad magic, short buffer, wrong checksum or inconsistent shape.
  static Result<State> deserialize(const uint8_t* data, size_t size);

 private:
  RwkvVersion version_ = RwkvVersion::kV4;
  int64_t n_layer_ = 0, n_embd_ = 0, n_head_ = 0, head_size_ = 0, per_layer_ = 0;
  // 64-byte aligned: with C a multiple of 16, every WKV head starts on a cache line, so the
  // WKV kernels' 512-bit loads and stores never split (64 x 64 heads, AVX-512, one thread:
  // 0.57 -> 0.47 us per head).
  std::vector<float, AlignedAllocator<float, 64>> data_;
};

// CRC-32 (IEEE, reflected, as zlib's crc32).
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace rwkv
