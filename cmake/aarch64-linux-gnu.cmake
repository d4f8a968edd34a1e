# Cross build for 64-bit ARM Linux (the boards rwkv-edge targets) on a Debian x86-64 host, with
# the unit tests run by ctest under qemu-user. scripts/test-aarch64 installs what it needs and
# drives it:
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DRWKV_EDGE_CROSS_MINIMAL=ON
#   cmake --build build-aarch64 -j2 && (cd build-aarch64 && ctest)
#
# Compiler: Debian's g++-aarch64-linux-gnu. Target libraries (ICU for the tokenizer) come from
# Debian multiarch (`dpkg --add-architecture arm64`, `apt-get install libicu-dev:arm64`), which
# puts them in /usr/lib/aarch64-linux-gnu and /usr/include/aarch64-linux-gnu, both on the cross
# compiler's default search path. Header-only dependencies (doctest, nlohmann-json) are the host's.
#
# Executables are linked statically, so qemu-aarch64-static runs them without an ARM sysroot
# (no -L, no QEMU_LD_PREFIX) and they can be copied to a board as they are.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(RWKV_EDGE_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${RWKV_EDGE_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${RWKV_EDGE_CROSS_TRIPLE}-g++)

# ctest (and add_test with a target as COMMAND) prefixes every test with the emulator.
find_program(RWKV_EDGE_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(RWKV_EDGE_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${RWKV_EDGE_QEMU_AARCH64})
endif()

# Target libraries live in the multiarch directories and the cross toolchain's own tree; the
# host's (x86-64) ones must never be picked up. Programs (pkg-config, qemu) are the host's.
set(CMAKE_FIND_ROOT_PATH /usr/${RWKV_EDGE_CROSS_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${RWKV_EDGE_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must read the target's .pc files (icu-uc), not the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${RWKV_EDGE_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Static executables: RWKV_EDGE_STATIC makes CMakeLists.txt resolve libraries to their .a
# archives and link the project's executables with -static; the flag below does the same for
# CMake's own check programs.
set(RWKV_EDGE_STATIC ON CACHE BOOL "Link executables statically (cross builds for qemu)")
set(CMAKE_EXE_LINKER_FLAGS_INIT -static)
