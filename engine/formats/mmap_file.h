// A read-only memory map of a whole file, kept alive by shared_ptr (a Storage for ModelFile).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"

namespace rwkv {

class MmapFile : public Storage {
 public:
  // Maps `path` read-only. Errors: NotFound (no such file), IOError (other OS errors).
  // An empty file maps to size() == 0, data() == nullptr.
  static Result<std::shared_ptr<MmapFile>> open(const std::string& path);
  ~MmapFile() override;
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MmapFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rwkv
