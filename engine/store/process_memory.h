// The kernel's accounting of this process's memory (issue 7): /proc/self/status fields.
//
//   ProcessMemory m = read_process_memory();   // m.peak_rss_bytes = VmHWM
#pragma once

#include <cstdint>

namespace rwkv::store {

struct ProcessMemory {
  int64_t rss_bytes = -1;       // VmRSS: resident now (-1: unknown, e.g. no /proc)
  int64_t peak_rss_bytes = -1;  // VmHWM: the most ever resident
  int64_t rss_anon_bytes = -1;  // RssAnon: heap, stacks, anonymous maps
  int64_t rss_file_bytes = -1;  // RssFile: mapped files (binary, libraries, model map)
};

// Reads /proc/self/status. Fields it cannot find stay -1.
ProcessMemory read_process_memory();

}  // namespace rwkv::store
