// Output-gradient statistics for `compress --lowrank fisher` (issue 6): per projection
// G_out = Σ g gᵀ, g = dLoss/dy at its output, computed by scripts/train/grad_stats.py (PyTorch:
// the engine has no backward pass). File format in that script's docstring and
// docs/COMPRESSION.md.
//
//   Result<GradStats> gs = read_grad_stats("default.gradstats");
//   const GradStats::Entry* e = gs->find("blocks.3.att.value");   // e->n x e->n, row-major
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::compress {

struct GradStats {
  struct Entry {
    int64_t n = 0;              // the projection's output width
    double weight_sqsum = 0.0;  // Σ W² of the projection the statistics were taken on
    std::vector<double> g;      // n x n, row-major, symmetric
  };
  std::string path;
  uint64_t tokens = 0;
  std::map<std::string, Entry> entries;
  const Entry* find(const std::string& base) const {
    auto it = entries.find(base);
    return it == entries.end() ? nullptr : &it->second;
  }
};

// Reads and validates a statistics file. Errors: NotFound / InvalidArgument naming the file and
// what is wrong (magic, truncation, sizes, non-finite values).
Result<GradStats> read_grad_stats(const std::string& path);

}  // namespace rwkv::compress
