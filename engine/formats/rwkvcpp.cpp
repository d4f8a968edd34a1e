// rwkv.cpp "ggmf" checkpoints (.bin), versions 100 and 101: reader and writer.
// Layout: shared/reference/formats.md §1. Tensors are unaligned in the file, so the reader
// copies each one into its own heap buffer (aligned for SIMD loads).
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/formats/mmap_file.h"
#include "engine/formats/model_file.h"

namespace rwkv {
namespace {

constexpr uint32_t kGgmfMagic = 0x67676d66;

// rwkv.cpp's type codes -> ours. Returns false for codes we refuse, with the reason.
bool map_type(uint32_t code, DType* out, const char** why) {
  switch (code) {
    case 0: *out = DType::kF32; return true;
    case 1: *out = DType::kF16; return true;
    case 2: *out = DType::kQ4_0; return true;
    case 3: *out = DType::kQ4_1; return true;
    case 7: *out = DType::kQ5_0; return true;
    case 8: *out = DType::kQ5_1; return true;
    case 9: *out = DType::kQ8_0; return true;
    case 4: case 5: case 6: *why = "was removed from rwkv.cpp (Q4_1_O/Q4_2/Q4_3); re-quantize the model"; return false;
    default: *why = "is not a type rwkv.cpp files use"; return false;
  }
}

uint32_t type_code(DType t) {
  switch (t) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ5_0: return 7;
    case DType::kQ5_1: return 8;
    case DType::kQ8_0: return 9;
    default: return 0xffffffffu;
  }
}

struct Cursor {
  const uint8_t* p;
  size_t size;
  size_t off = 0;
  bool read_u32(uint32_t* v) {
    if (size - off < 4) return false;
    std::memcpy(v, p + off, 4);
    off += 4;
    return true;
  }
};

}  // namespace

Result<ModelFile> read_rwkvcpp(const std::string& path) {
  auto mm = MmapFile::open(path);
  if (!mm.ok()) return mm.status();
  const std::shared_ptr<MmapFile> file = mm.value();
  Cursor c{file->data(), file->size()};

  uint32_t header[6];
  for (uint32_t& h : header) {
    if (!c.read_u32(&h)) return Status::Corruption(path + ": truncated rwkv.cpp header (" + std::to_string(file->size()) + " bytes)");
  }
  if (header[0] != kGgmfMagic) return Status::Corruption(path + ": not an rwkv.cpp file (wrong magic)");
  const uint32_t version = header[1];
  if (version != 100 && version != 101) {
    return Status::Unsupported(path + ": rwkv.cpp file version " + std::to_string(version) + " (expected 100 or 101)");
  }
  const uint32_t n_vocab = header[2], n_embd = header[3], n_layer = header[4];
  if (n_vocab == 0 || n_vocab > (1u << 24) || n_embd == 0 || n_embd > 65536 || n_layer == 0 || n_layer > 1024) {
    return Status::Corruption(path + ": header values out of range (n_vocab " + std::to_string(n_vocab) + ", n_embed " +
                              std::to_string(n_embd) + ", n_layer " + std::to_string(n_layer) + ")");
  }

  ModelFile mf;
  mf.path = path;
  mf.source_format = "rwkvcpp";
  auto buffers = std::make_shared<BufferStorage>();
  mf.storage.push_back(buffers);

  int index = 0;
  while (c.off < c.size) {
    const std::string where = path + ": tensor #" + std::to_string(index);
    uint32_t n_dims, name_len, code;
    if (!c.read_u32(&n_dims) || !c.read_u32(&name_len) || !c.read_u32(&code)) {
      return Status::Corruption(where + ": truncated tensor header");
    }
    if (n_dims < 1 || n_dims > 3) return Status::Corruption(where + ": n_dims " + std::to_string(n_dims) + " (expected 1..3)");
    if (name_len == 0 || name_len > 1024) return Status::Corruption(where + ": name length " + std::to_string(name_len) + " out of range");
    TensorRef t;
    t.n_dims = (int)n_dims;
    for (uint32_t i = 0; i < n_dims; ++i) {
      uint32_t d;
      if (!c.read_u32(&d)) return Status::Corruption(where + ": truncated tensor header");
      if (d == 0 || d > (1u << 26)) return Status::Corruption(where + ": dimension " + std::to_string(d) + " out of range");
      t.ne[i] = d;
    }
    if (c.size - c.off < name_len) return Status::Corruption(where + ": truncated tensor name");
    t.name.assign(reinterpret_cast<const char*>(c.p + c.off), name_len);
    c.off += name_len;
    const std::string tw = path + ": tensor '" + t.name + "'";
    const char* why = nullptr;
    if (!map_type(code, &t.type, &why)) return Status::Unsupported(tw + ": type code " + std::to_string(code) + " " + why);
    if (dtype_block_size(t.type) > 1) {
      if (version == 100) return Status::Corruption(tw + ": quantized tensors need file version 101, file says 100");
      if (t.ne[0] % kQK != 0) return Status::Corruption(tw + ": quantized rows of " + std::to_string(t.ne[0]) + " are not a multiple of 32");
    }
    const size_t nbytes = dtype_row_bytes(t.type, t.ne[0]) * (size_t)(t.ne[1] * t.ne[2] * t.ne[3]);
    if (c.size - c.off < nbytes) {
      return Status::Corruption(tw + ": data runs past end of file (needs " + std::to_string(nbytes) + " bytes, " +
                                std::to_string(c.size - c.off) + " left)");
    }
    if (mf.find(t.name) != nullptr) return Status::Corruption(tw + ": appears twice");
    uint8_t* dst = buffers->add(nbytes);
    std::memcpy(dst, c.p + c.off, nbytes);
    c.off += nbytes;
    t.data = dst;
    t.nbytes = nbytes;
    mf.add_tensor(std::move(t));
    ++index;
  }

  Status st = finalize_model_file(mf, /*keep_scalars=*/false);
  if (!st.ok()) return st;
  const Hparams& hp = mf.hparams;
  if (hp.n_vocab != (int64_t)n_vocab || hp.n_embd != (int64_t)n_embd || hp.n_layer != (int64_t)n_layer) {
    return Status::Corruption(path + ": header says n_vocab " + std::to_string(n_vocab) + ", n_embed " + std::to_string(n_embd) +
                              ", n_layer " + std::to_string(n_layer) + " but the tensors have " + std::to_string(hp.n_vocab) +
                              ", " + std::to_string(hp.n_embd) + ", " + std::to_string(hp.n_layer));
  }
  // rwkv.cpp models carry no tokenizer; byte-level vocabularies need none.
  if (hp.n_vocab == 256) mf.tokenizer.kind = "bytes";
  return mf;
}

Status write_rwkvcpp(const ModelFile& mf, const std::string& path) {
  // rwkv.cpp's GroupNorm eps is fixed per version; refuse silently different numbers.
  const Hparams& hp = mf.hparams;
  const float want_eps = (hp.version == RwkvVersion::kV6 || hp.version == RwkvVersion::kV7) ? 64e-5f : 1e-5f;
  if (hp.version != RwkvVersion::kV4 && std::fabs(hp.gn_eps - want_eps) > 1e-9f) {
    return Status::Unsupported(path + ": rwkv.cpp uses group-norm eps " + std::to_string(want_eps) + " for v" +
                               version_name(hp.version) + " but this model needs " + std::to_string(hp.gn_eps) +
                               "; rwkv.cpp would compute different logits");
  }
  if (hp.rescale_every != 0) return Status::Unsupported(path + ": rwkv.cpp files cannot carry rescale_every");
  uint32_t main_type = 0;
  for (const TensorRef& t : mf.tensors) {
    if (t.n_dims == 2 && t.name.find(".weight") != std::string::npos && t.name != "emb.weight") {
      main_type = type_code(t.type);
      break;
    }
  }
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::IOError(tmp + ": cannot create: " + std::strerror(errno));
  bool ok = true;
  auto put = [&](const void* p, size_t n) { ok = ok && std::fwrite(p, 1, n, f) == n; };
  const uint32_t header[6] = {kGgmfMagic, 101, (uint32_t)hp.n_vocab, (uint32_t)hp.n_embd, (uint32_t)hp.n_layer, main_type};
  put(header, sizeof(header));
  for (const TensorRef& t : mf.tensors) {
    const uint32_t code = type_code(t.type);
    if (code == 0xffffffffu) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return Status::Unsupported(path + ": tensor '" + t.name + "': type " + dtype_name(t.type) + " has no rwkv.cpp code");
    }
    const uint32_t rec[3] = {(uint32_t)t.n_dims, (uint32_t)t.name.size(), code};
    put(rec, sizeof(rec));
    for (int i = 0; i < t.n_dims; ++i) {
      const uint32_t d = (uint32_t)t.ne[i];
      put(&d, 4);
    }
    put(t.name.data(), t.name.size());
    put(t.data, t.nbytes);
  }
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IOError(path + ": write failed: " + std::strerror(errno));
  }
  return Status::OK();
}

}  // namespace rwkv
