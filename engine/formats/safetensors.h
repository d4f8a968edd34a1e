// safetensors internals (formats.md §3): the container parser and the BlinkDL importer that
// read_safetensors() (model_file.h) chains. Exposed for tests and tools; the engine calls
// read_safetensors / open_model_file.
//
//   Result<SafetensorsFile> f = parse_safetensors("model.safetensors");  // validated header
//   Result<ModelFile> mf = import_blinkdl(f.value());                     // canonical tensors
//
// Accepted inputs: checkpoints with raw BlinkDL names and values (ChatRWKV .pth converted by
// scripts/pth_to_safetensors.py, or any plain export), and Ai00 / web-rwkv ".st" files (lower
// case names, time_faaaa -> time_first, time_maa -> time_mix, low-rank maps transposed, v5.1
// ChatRWKV decay repeated per channel). The importer applies rwkv.cpp's converter transforms
// (rwkv-math.md §3) so the result is canonical (model_file.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/mmap_file.h"
#include "engine/formats/model_file.h"

namespace rwkv {

struct SafetensorsTensor {
  std::string name;            // as written in the file
  std::string dtype;           // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;  // PyTorch order (slowest first), may be empty (a scalar)
  const uint8_t* data = nullptr;  // into the mapped file; no alignment guarantee
  size_t nbytes = 0;
};

struct SafetensorsFile {
  std::string path;
  std::shared_ptr<MmapFile> file;             // keeps `data` pointers valid
  std::vector<SafetensorsTensor> tensors;     // in header order
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Maps and validates a safetensors file: header length <= 100 MB and inside the file, JSON
// well formed, every tensor with a known dtype, non-negative shape, data_offsets inside the
// data buffer, byte length == dtype size x element count, no two tensors overlapping.
// Errors: Corruption (damage; names file and tensor), Unsupported (dtype safetensors defines
// but we cannot size, e.g. sub-byte types), NotFound / IOError from opening.
Result<SafetensorsFile> parse_safetensors(const std::string& path);

// Converts the tensors to canonical form and fills hparams (finalize_model_file with
// gn_eps = 64e-5 for v5+/1e-5 for v4, rescale_every = 0, unless the file's metadata carries
// "rwkv_edge.group_norm_epsilon" / "rwkv_edge.rescale_every"). Data is 16-byte aligned:
// matrices that need no change point into the map when their offset allows it, everything
// else is copied to heap buffers.
// Only F32, F16 and BF16 tensors are used (BF16 becomes f32); other dtypes of tensors the
// model needs are Unsupported. `time_state` tensors and entries outside emb/blocks/ln_out/head
// are dropped and listed in metadata "rwkv_edge.import_warning".
Result<ModelFile> import_blinkdl(const SafetensorsFile& f);

}  // namespace rwkv
