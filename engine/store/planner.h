// Memory planner (issue 7): splits a --mem-budget among the weight store's caches and the
// sessions' states, or says why it cannot.
//
//   Result<size_t> b = parse_byte_size("64M");                  // 64 MiB
//   Result<MemoryPlan> p = plan_memory(layout, PlanRequest{*b, /*states=*/4, /*chunk_rows=*/64});
//   if (!p.ok()) ...  // ResourceExhausted: "... needs at least 23.1 MiB ..."
//
// The budget covers the model's own memory: resident weights, caches, the states of `states`
// sessions and the scratch of one forward chunk. It does not cover the program itself (binary,
// shared libraries, tokenizer), which `rwkv-edge bench` reports separately as the baseline RSS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::store {

// "1500000", "64M", "64MiB", "1G", "512k": suffixes K, M, G, T are powers of 1024, with an
// optional "B" or "iB". Errors: InvalidArgument naming the text.
Result<size_t> parse_byte_size(const std::string& text);
// "12.3 MiB" (B, KiB, MiB, GiB).
std::string format_bytes(double bytes);

struct PlanRequest {
  size_t budget = 0;        // bytes; 0 = no budget (the planner is not used)
  int64_t states = 1;       // sessions whose states are kept in memory
  int64_t chunk_rows = 64;  // rows of one forward chunk (scratch)
};

// What the store holds for one model; filled by Model at load.
struct StoreLayout {
  int64_t n_vocab = 0;
  size_t resident_bytes = 0;       // weights read whole (plus f32 copies of vectors)
  size_t emb_row_bytes = 0;        // one embedding row
  struct FfnLayer {
    int64_t layer = 0;
    int64_t n_ffn = 0;
    size_t neuron_bytes = 0;       // row of W_k (when streamed) + row of W_v^T
    double expected_active = 1.0;  // fraction of neurons active per token (file metadata)
  };
  std::vector<FfnLayer> ffn;       // sparse layers only
  size_t head_bytes = 0;           // clustered head.weight; 0 = no clustered head
  size_t largest_cluster_bytes = 0;
  double head_row_fraction = 1.0;  // expected fraction of head rows per token
  // Dense matrices every step needs (part of resident_bytes) that may be streamed instead:
  // (tensor name, bytes).
  std::vector<std::pair<std::string, size_t>> streamable;
  size_t state_bytes = 0;          // one session's State
  size_t scratch_bytes_per_row = 0;
  size_t scratch_bytes_fixed = 0;
};

struct MemoryPlan {
  size_t budget = 0;
  size_t resident_bytes = 0;
  size_t state_bytes = 0;    // all sessions
  size_t scratch_bytes = 0;
  int64_t emb_rows = 0;
  size_t emb_bytes = 0;
  std::vector<int64_t> ffn_neurons;  // per StoreLayout::ffn entry
  size_t ffn_bytes = 0;
  size_t head_cache_bytes = 0;      // cached clusters
  size_t head_transient_bytes = 0;  // plus one buffer of the largest cluster
  // Dense per-step matrices read from the file for every product (largest first), their bytes
  // per token and the buffer they share (the largest of them).
  std::vector<std::string> streamed;
  size_t streamed_bytes = 0;
  size_t stream_buffer_bytes = 0;
  size_t minimum = 0;        // the smallest budget this model accepts with this request
  size_t cache_bytes() const;
  // One line: "budget 64.0 MiB = resident 20.1 MiB + states ... + caches (emb N rows, ...)".
  std::string describe() const;
};

// Splits req.budget. When the budget cannot keep every dense per-step matrix resident and
// still give the caches a quarter of it, the largest of them are streamed (read per product
// into one shared buffer) until it can. Then: the fixed part (resident weights, states, scratch) and the smallest
// caches that work (16 embedding rows, 16 neurons plus a 64-row stream area per sparse layer,
// a transient buffer of the largest head cluster);
// then, in this order, each FFN cache up to 1.5x its expected active neurons, the head cache up
// to twice its expected rows per token, the embedding cache up to 1024 rows, the FFN caches
// up to every neuron, the whole head, the whole embedding. Errors: ResourceExhausted when the
// budget is below the minimum (every streamable matrix streamed), naming the minimum and what
// it is made of.
Result<MemoryPlan> plan_memory(const StoreLayout& layout, const PlanRequest& req);

}  // namespace rwkv::store
