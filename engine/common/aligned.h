// AlignedAllocator: a std::allocator whose blocks start on an `Align`-byte boundary.
//
//   std::vector<float, AlignedAllocator<float, 64>> v(n);   // v.data() % 64 == 0
//
// For buffers the kernels stream with 512-bit loads and stores (recurrent states): at malloc's
// 16-byte alignment every such access splits across two cache lines.
#pragma once

#include <cstddef>
#include <new>

namespace rwkv {

template <class T, std::size_t Align>
struct AlignedAllocator {
  static_assert(Align >= alignof(T) && (Align & (Align - 1)) == 0, "Align: a power of two, at least alignof(T)");
  using value_type = T;
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, Align>;
  };
  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Align>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(Align))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(Align)); }
  template <class U>
  bool operator==(const AlignedAllocator<U, Align>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U, Align>&) const noexcept { return false; }
};

}  // namespace rwkv
