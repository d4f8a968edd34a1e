#include "engine/state.h"

#include <cstring>

namespace rwkv {
namespace {

constexpr uint32_t kStateMagic = 0x54535752;  // "RWST"
constexpr uint32_t kStateFormat = 1;

int64_t layer_floats(const Hparams& hp) {
  if (hp.version == RwkvVersion::kV4) return 5 * hp.n_embd;
  return 2 * hp.n_embd + hp.n_head * hp.head_size * hp.head_size;
}

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t o = out.size();
  out.resize(o + sizeof(T));
  std::memcpy(out.data() + o, &v, sizeof(T));
}

template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  static uint32_t table[256];
  static const bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

State::State(const Hparams& hp)
    : version_(hp.version),
      n_layer_(hp.n_layer),
      n_embd_(hp.n_embd),
      n_head_(hp.n_head),
      head_size_(hp.head_size),
      per_layer_(layer_floats(hp)),
      data_((size_t)(hp.n_layer * layer_floats(hp)), 0.0f) {
  reset();
}

void State::reset() {
  std::fill(data_.begin(), data_.end(), 0.0f);
  if (version_ == RwkvVersion::kV4) {
    // pp = -1e30 stands for -inf: "no history" (rwkv-math.md §4).
    for (int64_t l = 0; l < n_layer_; ++l) {
      float* pp = wkv(l) + 2 * n_embd_;
      for (int64_t c = 0; c < n_embd_; ++c) pp[c] = -1e30f;
    }
  }
}

bool State::compatible_with(const Hparams& hp) const {
  return version_ == hp.version && n_layer_ == hp.n_layer && n_embd_ == hp.n_embd && n_head_ == hp.n_head &&
         head_size_ == hp.head_size;
}

std::vector<uint8_t> State::serialize() const {
  std::vector<uint8_t> out;
  out.reserve(64 + data_.size() * 4);
  put<uint32_t>(out, kStateMagic);
  put<uint32_t>(out, kStateFormat);
  put<uint32_t>(out, (uint32_t)version_);
  put<uint32_t>(out, 0);  // reserved
  put<int64_t>(out, n_layer_);
  put<int64_t>(out, n_embd_);
  put<int64_t>(out, n_head_);
  put<int64_t>(out, head_size_);
  put<uint64_t>(out, (uint64_t)data_.size());
  const size_t o = out.size();
  out.resize(o + data_.size() * 4);
  std::memcpy(out.data() + o, data_.data(), data_.size() * 4);
  put<uint32_t>(out, crc32(out.data(), out.size()));
  return out;
}

Result<State> State::deserialize(const uint8_t* data, size_t size) {
  constexpr size_t kHeader = 4 * 4 + 8 * 5;
  if (data == nullptr || size < kHeader + 4) return Status::Corruption("state: too short (" + std::to_string(size) + " bytes)");
  if (get<uint32_t>(data) != kStateMagic) return Status::Corruption("state: wrong magic");
  const uint32_t format = get<uint32_t>(data + 4);
  if (format != kStateFormat) return Status::Unsupported("state: format version " + std::to_string(format));
  const uint32_t stored_crc = get<uint32_t>(data + size - 4);
  if (crc32(data, size - 4) != stored_crc) return Status::Corruption("state: checksum mismatch");
  Hparams hp;
  const uint32_t v = get<uint32_t>(data + 8);
  if (v > (uint32_t)RwkvVersion::kV7) return Status::Corruption("state: unknown RWKV version " + std::to_string(v));
  hp.version = (RwkvVersion)v;
  hp.n_layer = get<int64_t>(data + 16);
  hp.n_embd = get<int64_t>(data + 24);
  hp.n_head = get<int64_t>(data + 32);
  hp.head_size = get<int64_t>(data + 40);
  const uint64_t count = get<uint64_t>(data + 48);
  if (hp.n_layer <= 0 || hp.n_layer > 1024 || hp.n_embd <= 0 || hp.n_embd > 65536 || hp.n_head < 0 ||
      hp.head_size < 0 || hp.head_size > 4096) {
    return Status::Corruption("state: shape out of range");
  }
  if (count != (uint64_t)(hp.n_layer * layer_floats(hp)) || size != kHeader + count * 4 + 4) {
    return Status::Corruption("state: size does not match its shape");
  }
  State s(hp);
  std::memcpy(s.data_.data(), data + kHeader, count * 4);
  return s;
}

}  // namespace rwkv
