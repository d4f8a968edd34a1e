#include "engine/formats/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace rwkv {

Result<std::shared_ptr<MmapFile>> MmapFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::IOError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  std::shared_ptr<MmapFile> f(new MmapFile());
  f->size_ = (size_t)st.st_size;
  f->path_ = path;
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status::IOError(path + ": cannot mmap: " + std::strerror(err));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  // Kept open for read_at (the weight store's pread path).
  f->fd_ = fd;
  return f;
}

MmapFile::~MmapFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

Status MmapFile::read_at(uint64_t offset, size_t n, void* dst) const {
  void* bufs[1] = {dst};
  const size_t lens[1] = {n};
  return read_scattered(offset, bufs, lens, 1);
}

Status MmapFile::read_scattered(uint64_t offset, void* const* dst, const size_t* len, int n) const {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += len[i];
  if (offset > size_ || total > size_ - offset) {
    return Status::IOError(path_ + ": read of " + std::to_string(total) + " bytes at offset " + std::to_string(offset) +
                           " runs past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  // preadv may stop short (signals, huge requests): continue from where it stopped.
  std::vector<iovec> iov((size_t)n);
  for (int i = 0; i < n; ++i) iov[(size_t)i] = iovec{dst[i], len[i]};
  size_t first = 0;
  uint64_t off = offset;
  const int kMaxIov = 1024;  // IOV_MAX on Linux
  while (first < iov.size()) {
    const int cnt = (int)std::min<size_t>(iov.size() - first, kMaxIov);
    const ssize_t got = ::preadv(fd_, iov.data() + first, cnt, (off_t)off);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(path_ + ": read at offset " + std::to_string(off) + " failed: " + std::strerror(errno));
    }
    if (got == 0) return Status::IOError(path_ + ": unexpected end of file at offset " + std::to_string(off));
    off += (uint64_t)got;
    size_t left = (size_t)got;
    while (left > 0 && first < iov.size()) {
      iovec& v = iov[first];
      if (left >= v.iov_len) {
        left -= v.iov_len;
        ++first;
      } else {
        v.iov_base = static_cast<uint8_t*>(v.iov_base) + left;
        v.iov_len -= left;
        left = 0;
      }
    }
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
  }
  return Status::OK();
}

void MmapFile::release_pages() const {
  if (data_ == nullptr) return;
  void* p = const_cast<uint8_t*>(data_);
  // Advice only: failures change nothing but the resident set, so they are ignored.
  (void)madvise(p, size_, MADV_RANDOM);
  (void)madvise(p, size_, MADV_DONTNEED);
}

}  // namespace rwkv
