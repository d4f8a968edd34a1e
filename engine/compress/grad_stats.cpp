#include "engine/compress/grad_stats.h"

#include <cmath>
#include <cstring>
#include <fstream>

namespace rwkv::compress {

namespace {

constexpr char kMagic[8] = {'R', 'W', 'K', 'V', 'E', 'G', 'S', '1'};
// Wider than any projection of a model this engine runs; guards the n*n allocation.
constexpr uint32_t kMaxWidth = 1u << 16;

template <typename T>
bool get(std::ifstream& in, T* v) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(v), sizeof(T)));
}

}  // namespace

Result<GradStats> read_grad_stats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open the gradient statistics file");
  auto bad = [&](const std::string& what) { return Status::InvalidArgument(path + ": " + what); };
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
    return bad("not a gradient statistics file (magic is not RWKVEGS1; write it with scripts/train/grad_stats.py)");
  }
  GradStats gs;
  gs.path = path;
  uint32_t count = 0;
  if (!get(in, &gs.tokens) || !get(in, &count)) return bad("truncated header");
  for (uint32_t e = 0; e < count; ++e) {
    uint32_t len = 0;
    if (!get(in, &len) || len == 0 || len > 4096) return bad("entry " + std::to_string(e) + ": bad name length");
    std::string name(len, '\0');
    if (!in.read(name.data(), len)) return bad("entry " + std::to_string(e) + ": truncated name");
    uint32_t n = 0;
    GradStats::Entry entry;
    if (!get(in, &n) || !get(in, &entry.weight_sqsum)) return bad(name + ": truncated entry header");
    if (n == 0 || n > kMaxWidth) return bad(name + ": width " + std::to_string(n) + " out of range");
    entry.n = n;
    std::vector<float> raw((size_t)n * n);
    if (!in.read(reinterpret_cast<char*>(raw.data()), (std::streamsize)(raw.size() * sizeof(float)))) {
      return bad(name + ": truncated matrix (" + std::to_string(n) + " x " + std::to_string(n) + " f32 expected)");
    }
    entry.g.resize(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (!std::isfinite(raw[i])) return bad(name + ": non-finite value in the matrix");
      entry.g[i] = raw[i];
    }
    if (!gs.entries.emplace(name, std::move(entry)).second) return bad(name + ": appears twice");
  }
  if (in.peek() != std::char_traits<char>::eof()) return bad("trailing bytes after " + std::to_string(count) + " entries");
  return gs;
}

}  // namespace rwkv::compress
