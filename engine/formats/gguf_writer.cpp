// GGUF v3 writer (formats.md §2): our metadata keys (gguf.h), canonical tensors converted by
// convert_types(), data aligned to opt.alignment. Written to `path + ".tmp"`, fsynced and
// renamed, so readers never see a half-written file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "engine/formats/convert.h"
#include "engine/formats/gguf.h"
#include "engine/formats/model_file.h"

namespace rwkv {
namespace {

using namespace gguf;

// The header, metadata and tensor infos, built in memory (they are small).
class HeaderBuffer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void kv_string(const std::string& key, const std::string& value) {
    str(key);
    u32(kString);
    str(value);
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t value) {
    str(key);
    u32(kUint32);
    u32(value);
    ++n_kv_;
  }
  void kv_f32(const std::string& key, float value) {
    str(key);
    u32(kFloat32);
    raw(&value, 4);
    ++n_kv_;
  }
  void raw(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  uint64_t n_kv() const { return n_kv_; }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t n_kv_ = 0;
};

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

bool write_all(int fd, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    b += w;
    n -= (size_t)w;
  }
  return true;
}

bool write_zeros(int fd, size_t n) {
  static const uint8_t kZeros[256] = {0};
  while (n > 0) {
    const size_t k = n < sizeof(kZeros) ? n : sizeof(kZeros);
    if (!write_all(fd, kZeros, k)) return false;
    n -= k;
  }
  return true;
}

Status check_hparams(const ModelFile& mf, const std::string& path) {
  const Hparams& hp = mf.hparams;
  const struct { const char* key; int64_t v; } kCounts[] = {
      {kKeyVocabSize, hp.n_vocab},       {kKeyEmbeddingLength, hp.n_embd}, {kKeyBlockCount, hp.n_layer},
      {kKeyFeedForwardLength, hp.n_ffn}, {kKeyHeadCount, hp.n_head},       {kKeyHeadSize, hp.head_size},
      {kKeyRescaleEvery, hp.rescale_every}};
  for (const auto& k : kCounts) {
    if (k.v < 0 || k.v > (int64_t)UINT32_MAX) {
      return Status::InvalidArgument(path + ": " + k.key + " = " + std::to_string(k.v) + " does not fit a uint32");
    }
  }
  if (!std::isfinite(hp.gn_eps) || !(hp.gn_eps > 0.0f)) {
    return Status::InvalidArgument(path + ": group-norm epsilon " + std::to_string(hp.gn_eps) + " is not a positive number");
  }
  return Status::OK();
}

void put_metadata(const ModelFile& mf, uint32_t alignment, HeaderBuffer* h) {
  const Hparams& hp = mf.hparams;
  h->kv_string(kKeyArchitecture, kArchitecture);
  auto name = mf.metadata.find(kKeyName);
  if (name != mf.metadata.end()) h->kv_string(kKeyName, name->second);
  h->kv_u32(kKeyAlignment, alignment);
  h->kv_string(kKeyVersion, version_name(hp.version));
  h->kv_u32(kKeyVocabSize, (uint32_t)hp.n_vocab);
  h->kv_u32(kKeyEmbeddingLength, (uint32_t)hp.n_embd);
  h->kv_u32(kKeyBlockCount, (uint32_t)hp.n_layer);
  h->kv_u32(kKeyFeedForwardLength, (uint32_t)hp.n_ffn);
  h->kv_u32(kKeyHeadCount, (uint32_t)hp.n_head);
  h->kv_u32(kKeyHeadSize, (uint32_t)hp.head_size);
  h->kv_f32(kKeyGroupNormEps, hp.gn_eps);
  h->kv_u32(kKeyRescaleEvery, (uint32_t)hp.rescale_every);
  h->kv_string(kKeyValueForm, kValueFormRwkvcpp);
  h->kv_string(kKeyTokenizerKind, mf.tokenizer.kind);
  h->kv_string(kKeyTokenizerData, mf.tokenizer.data);
  for (const auto& kv : mf.metadata) {
    if (kv.first == kKeyName || is_reserved_key(kv.first)) continue;
    h->kv_string(kv.first, kv.second);
  }
}

}  // namespace

Status write_gguf(const ModelFile& mf, const std::string& path, const GgufWriteOptions& opt) {
  const uint32_t alignment = opt.alignment;
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (1u << 20)) {
    return Status::InvalidArgument(path + ": alignment " + std::to_string(alignment) + " is not a power of two <= 1 MiB");
  }
  Status st = check_hparams(mf, path);
  if (!st.ok()) return st;
  for (const auto& kv : mf.metadata) {
    if (kv.first.empty()) return Status::InvalidArgument(path + ": metadata has an empty key");
  }
  Result<ModelFile> converted = convert_types(mf, opt);
  if (!converted.ok()) return converted.status();
  const ModelFile& out = converted.value();

  HeaderBuffer h;
  put_metadata(out, alignment, &h);
  const uint64_t n_kv = h.n_kv();
  std::set<std::string> names;
  std::vector<uint64_t> offsets;
  uint64_t off = 0;
  for (const TensorRef& t : out.tensors) {
    if (t.name.empty() || t.name.size() > 4096 || !names.insert(t.name).second) {
      return Status::InvalidArgument(path + ": tensor name '" + t.name + "' is empty, too long or repeated");
    }
    if (t.n_dims < 1 || t.n_dims > 4) {
      return Status::InvalidArgument(path + ": tensor '" + t.name + "': n_dims " + std::to_string(t.n_dims) + " out of range");
    }
    h.str(t.name);
    h.u32((uint32_t)t.n_dims);
    for (int d = 0; d < t.n_dims; ++d) h.u64((uint64_t)t.ne[d]);
    h.u32((uint32_t)t.type);
    h.u64(off);
    offsets.push_back(off);
    off = align_up(off + t.nbytes, alignment);
  }
  HeaderBuffer file_header;
  file_header.u32(kMagic);
  file_header.u32(kVersion);
  file_header.u64(out.tensors.size());
  file_header.u64(n_kv);
  const uint64_t header_size = file_header.bytes().size() + h.bytes().size();

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(tmp + ": cannot create: " + std::strerror(errno));
  bool ok = write_all(fd, file_header.bytes().data(), file_header.bytes().size()) &&
            write_all(fd, h.bytes().data(), h.bytes().size()) &&
            write_zeros(fd, (size_t)(align_up(header_size, alignment) - header_size));
  // Padding only between tensors: the file ends with the last tensor's data.
  for (size_t i = 0; ok && i < out.tensors.size(); ++i) {
    const TensorRef& t = out.tensors[i];
    ok = write_all(fd, t.data, t.nbytes);
    if (ok && i + 1 < out.tensors.size()) ok = write_zeros(fd, (size_t)(offsets[i + 1] - offsets[i] - t.nbytes));
  }
  int err = ok ? 0 : errno;
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    err = errno;
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return Status::IOError(tmp + ": write failed: " + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": cannot rename " + tmp + " into place: " + std::strerror(err));
  }
  // Make the rename itself durable.
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  if (dir.empty()) dir = path.find('/') == 0 ? "/" : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::OK();
}

}  // namespace rwkv
