// A read-only memory map of a whole file, kept alive by shared_ptr (a Storage for ModelFile).
//
// The file descriptor stays open, so the weight store (engine/store/) can also read byte ranges
// with pread instead of touching the map: pages read that way land in the page cache, not in
// this process's resident set (issue 7).
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
  const std::string& path() const { return path_; }

  // True when [p, p + n) lies inside the map.
  bool contains(const uint8_t* p, size_t n) const {
    return data_ != nullptr && p >= data_ && p <= data_ + size_ && n <= (size_t)(data_ + size_ - p);
  }
  // Reads n bytes at file offset `offset` into dst with pread (never through the map).
  // Thread-safe. Errors: IOError (OS error or short file), naming the file.
  Status read_at(uint64_t offset, size_t n, void* dst) const;
  // Reads the file range [offset, offset + Σ len) scattered over `n` buffers (preadv), for runs
  // of consecutive rows that go to separate cache slots. Thread-safe. Errors as read_at.
  Status read_scattered(uint64_t offset, void* const* dst, const size_t* len, int n) const;
  // Tells the kernel the map is read at random (no read-ahead, no fault-around) and drops the
  // pages this process has touched so far from its resident set (they stay in the page cache).
  // For a model served by the weight store, after loading.
  void release_pages() const;

 private:
  MmapFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
  std::string path_;
};

}  // namespace rwkv
