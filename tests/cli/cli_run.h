// Runs the built rwkv-edge binary for black-box CLI tests.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace rwkv::test {

struct CliRun {
  int exit_code = -1;  // -1 when the process could not be started or did not exit normally
  std::string out;     // stdout and stderr, interleaved
};

// `rwkv-edge ARGS` (ARGS as shell words) from the build directory.
inline CliRun run_cli(const std::string& args) {
  const std::string cmd = std::string(RWKV_EDGE_BINARY_DIR) + "/rwkv-edge " + args + " 2>&1";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace rwkv::test
