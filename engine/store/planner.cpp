#include "engine/store/planner.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "engine/store/weight_store.h"

namespace rwkv::store {

Result<size_t> parse_byte_size(const std::string& text) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < text.size() && std::isdigit((unsigned char)text[i])) {
    const uint64_t d = (uint64_t)(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return Status::InvalidArgument("byte size '" + text + "' is too large");
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) return Status::InvalidArgument("byte size '" + text + "' must start with a number (e.g. 64M, 1G, 1500000)");
  std::string unit = text.substr(i);
  for (char& c : unit) c = (char)std::toupper((unsigned char)c);
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  const char* const kUnits = "KMGT";
  for (int k = 0; k < 4; ++k) {
    const std::string u(1, kUnits[k]);
    if (unit == u || unit == u + "B" || unit == u + "IB") shift = 10 * (k + 1);
  }
  if (shift < 0) {
    return Status::InvalidArgument("byte size '" + text + "': unknown unit '" + text.substr(i) + "' (use K, M, G or T)");
  }
  if (shift > 0 && v > (UINT64_MAX >> shift)) return Status::InvalidArgument("byte size '" + text + "' is too large");
  return (size_t)(v << shift);
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  } else if (bytes < 1024.0 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024);
  } else if (bytes < 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  }
  return buf;
}

size_t MemoryPlan::cache_bytes() const {
  return emb_bytes + ffn_bytes + head_cache_bytes + head_transient_bytes + stream_buffer_bytes;
}

std::string MemoryPlan::describe() const {
  int64_t neurons = 0;
  for (int64_t n : ffn_neurons) neurons += n;
  return "budget " + format_bytes((double)budget) + ": resident weights " + format_bytes((double)resident_bytes) +
         (streamed.empty() ? std::string()
                           : ", " + std::to_string(streamed.size()) + " matrices streamed (" +
                                 format_bytes((double)streamed_bytes) + " per token, buffer " +
                                 format_bytes((double)stream_buffer_bytes) + ")") +
         ", states " + format_bytes((double)state_bytes) + ", scratch " + format_bytes((double)scratch_bytes) +
         ", embedding cache " + std::to_string(emb_rows) + " rows (" + format_bytes((double)emb_bytes) + "), FFN caches " + std::to_string(neurons) +
         " neurons in " + std::to_string(ffn_neurons.size()) + " layers (" + format_bytes((double)ffn_bytes) +
         "), head cache " + format_bytes((double)head_cache_bytes) + " + " + format_bytes((double)head_transient_bytes) +
         " transient (minimum budget " +
         format_bytes((double)minimum) + ")";
}

namespace {

constexpr int64_t kMinEmbRows = 16;
constexpr int64_t kMinNeurons = 16;
constexpr int64_t kEmbRowsWanted = 1024;  // the paper's cache held 1000 rows

}  // namespace

Result<MemoryPlan> plan_memory(const StoreLayout& L, const PlanRequest& req) {
  MemoryPlan p;
  p.budget = req.budget;
  p.resident_bytes = L.resident_bytes;
  p.state_bytes = (size_t)std::max<int64_t>(0, req.states) * L.state_bytes;
  p.scratch_bytes = (size_t)std::max<int64_t>(1, req.chunk_rows) * L.scratch_bytes_per_row + L.scratch_bytes_fixed;
  p.emb_rows = std::min<int64_t>(kMinEmbRows, L.n_vocab);
  p.ffn_neurons.resize(L.ffn.size());
  size_t min_ffn = 0;
  for (size_t i = 0; i < L.ffn.size(); ++i) {
    p.ffn_neurons[i] = std::min<int64_t>(kMinNeurons, L.ffn[i].n_ffn);
    min_ffn += NeuronCache::bytes_for(p.ffn_neurons[i], L.ffn[i].neuron_bytes);
  }
  // The head cache's transient buffer holds the largest cluster; its cached clusters start at 0.
  p.head_cache_bytes = 0;
  p.head_transient_bytes = L.largest_cluster_bytes;
  const size_t min_caches = (size_t)p.emb_rows * L.emb_row_bytes + min_ffn + L.largest_cluster_bytes;
  std::vector<std::pair<std::string, size_t>> cand = L.streamable;
  std::stable_sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  auto minimum_with = [&](size_t n_streamed) {
    size_t resident = L.resident_bytes, buffer = 0;
    for (size_t i = 0; i < n_streamed; ++i) {
      resident -= std::min(resident, cand[i].second);
      buffer = std::max(buffer, cand[i].second);
    }
    return resident + buffer + p.state_bytes + p.scratch_bytes + min_caches;
  };
  // Stream the largest matrices while the rest leaves less than a quarter of the budget to
  // the caches beyond their minimum.
  size_t n_streamed = 0;
  while (n_streamed < cand.size() && minimum_with(n_streamed) + req.budget / 4 > req.budget) ++n_streamed;
  p.minimum = minimum_with(cand.size());
  if (req.budget < p.minimum) {
    return Status::ResourceExhausted(
        "memory budget " + format_bytes((double)req.budget) + " (" + std::to_string(req.budget) +
        " bytes) is too small: this model needs at least " + format_bytes((double)p.minimum) + " (" +
        std::to_string(p.minimum) + " bytes) = resident weights and stream buffer " +
        format_bytes((double)(p.minimum - min_caches - p.state_bytes - p.scratch_bytes)) + " + states of " +
        std::to_string(req.states) + " session(s) " + format_bytes((double)p.state_bytes) + " + scratch for " +
        std::to_string(req.chunk_rows) + "-row chunks " + format_bytes((double)p.scratch_bytes) +
        " + the smallest caches " + format_bytes((double)min_caches));
  }
  p.resident_bytes = L.resident_bytes;
  for (size_t i = 0; i < n_streamed; ++i) {
    p.streamed.push_back(cand[i].first);
    p.streamed_bytes += cand[i].second;
    p.resident_bytes -= std::min(p.resident_bytes, cand[i].second);
    p.stream_buffer_bytes = std::max(p.stream_buffer_bytes, cand[i].second);
  }
  const size_t used = minimum_with(n_streamed);
  size_t left = req.budget - used;
  // Grows the head cache to `want` bytes as far as `left` allows.
  auto grow_head = [&](size_t want) {
    want = std::min(want, L.head_bytes);
    if (want <= p.head_cache_bytes) return;
    const size_t add = std::min(want - p.head_cache_bytes, left);
    p.head_cache_bytes += add;
    left -= add;
  };
  // Grows every FFN cache towards want(i) neurons, in proportion when `left` is short.
  auto grow_ffn = [&](auto want) {
    size_t need = 0;
    std::vector<int64_t> add(L.ffn.size(), 0);
    for (size_t i = 0; i < L.ffn.size(); ++i) {
      add[i] = std::max<int64_t>(0, std::min<int64_t>(want(i), L.ffn[i].n_ffn) - p.ffn_neurons[i]);
      need += (size_t)add[i] * L.ffn[i].neuron_bytes;
    }
    if (need == 0) return;
    const double scale = need <= left ? 1.0 : (double)left / (double)need;
    for (size_t i = 0; i < L.ffn.size(); ++i) {
      const int64_t a = (int64_t)std::floor((double)add[i] * scale);
      p.ffn_neurons[i] += a;
      left -= (size_t)a * L.ffn[i].neuron_bytes;
    }
  };
  auto grow_emb = [&](int64_t want) {
    want = std::min(want, L.n_vocab);
    if (want <= p.emb_rows || L.emb_row_bytes == 0) return;
    const int64_t add = std::min<int64_t>(want - p.emb_rows, (int64_t)(left / L.emb_row_bytes));
    p.emb_rows += add;
    left -= (size_t)add * L.emb_row_bytes;
  };
  grow_ffn([&](size_t i) { return (int64_t)std::ceil(1.5 * L.ffn[i].expected_active * (double)L.ffn[i].n_ffn); });
  grow_head((size_t)std::ceil(2.0 * L.head_row_fraction * (double)L.head_bytes));
  grow_emb(kEmbRowsWanted);
  grow_ffn([&](size_t i) { return L.ffn[i].n_ffn; });
  grow_head(L.head_bytes);
  grow_emb(L.n_vocab);
  p.emb_bytes = (size_t)p.emb_rows * L.emb_row_bytes;
  p.ffn_bytes = 0;
  for (size_t i = 0; i < L.ffn.size(); ++i) p.ffn_bytes += NeuronCache::bytes_for(p.ffn_neurons[i], L.ffn[i].neuron_bytes);
  return p;
}

}  // namespace rwkv::store
