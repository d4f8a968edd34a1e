#include "engine/store/process_memory.h"

#include <cstdio>
#include <cstring>

namespace rwkv::store {

ProcessMemory read_process_memory() {
  ProcessMemory m;
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return m;
  char line[256];
  const struct {
    const char* key;
    int64_t* out;
  } kFields[] = {{"VmRSS:", &m.rss_bytes}, {"VmHWM:", &m.peak_rss_bytes}, {"RssAnon:", &m.rss_anon_bytes},
                 {"RssFile:", &m.rss_file_bytes}};
  while (std::fgets(line, sizeof line, f) != nullptr) {
    for (const auto& k : kFields) {
      const size_t n = std::strlen(k.key);
      long long kb = 0;
      if (std::strncmp(line, k.key, n) == 0 && std::sscanf(line + n, "%lld", &kb) == 1) *k.out = (int64_t)kb * 1024;
    }
  }
  std::fclose(f);
  return m;
}

}  // namespace rwkv::store
