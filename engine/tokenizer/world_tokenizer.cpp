// RWKV World tokenizer: a byte trie with greedy longest match (tokenizers.md §2.2).
#include "engine/tokenizer/world_tokenizer.h"

#include <algorithm>
#include <memory>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/world_vocab.h"

namespace rwkv {
namespace {

class WorldTokenizer final : public Tokenizer {
 public:
  // REQUIRES: entries sorted by bytes, distinct bytes and ids (parse_world_vocab guarantees it).
  explicit WorldTokenizer(std::vector<WorldVocabEntry> entries);

  const char* kind() const override { return "world"; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(offsets_.size()) - 1; }
  int32_t eos_id() const override { return 0; }

 private:
  // Returns the child of `node` labelled `byte`, or -1.
  int32_t child(int32_t node, uint8_t byte) const;

  // Constant after construction.
  //
  // The trie: node 0 is the root. The children of node n are nodes
  // [first_child_[n], first_child_[n] + n_children_[n]), contiguous and sorted by label_, so a
  // lookup is a short scan or a binary search. token_id_[n] is the id of the token that ends at
  // n, or 0 (id 0 is never a vocab token). 116k nodes for the stock vocab, ~1.3 MB.
  std::vector<uint32_t> first_child_;
  std::vector<uint16_t> n_children_;
  std::vector<uint8_t> label_;
  std::vector<int32_t> token_id_;
  // The root has (nearly) all 256 children; direct lookup saves a search per token.
  int32_t root_child_[256];
  // Token bytes in id order: token id's bytes are blob_[offsets_[id], offsets_[id + 1]).
  // Missing ids (0 and any gaps) are empty. offsets_.size() == max id + 2.
  std::string blob_;
  std::vector<uint32_t> offsets_;
};

WorldTokenizer::WorldTokenizer(std::vector<WorldVocabEntry> entries) {
  int32_t max_id = 0;
  size_t total_bytes = 0;
  for (const auto& e : entries) {
    max_id = std::max(max_id, e.id);
    total_bytes += e.bytes.size();
  }

  // Id -> bytes table.
  std::vector<uint32_t> by_id(static_cast<size_t>(max_id) + 1, UINT32_MAX);
  for (uint32_t k = 0; k < entries.size(); ++k) by_id[static_cast<size_t>(entries[k].id)] = k;
  blob_.reserve(total_bytes);
  offsets_.reserve(by_id.size() + 1);
  for (uint32_t k : by_id) {
    offsets_.push_back(static_cast<uint32_t>(blob_.size()));
    if (k != UINT32_MAX) blob_ += entries[k].bytes;
  }
  offsets_.push_back(static_cast<uint32_t>(blob_.size()));

  // Trie, built breadth-first from the sorted entries. A work item is a node together with the
  // range of entries whose bytes start with that node's prefix (of length `depth`). Sorted
  // order puts the entry equal to the prefix (if any) first and groups the rest by the next
  // byte, so each node's children can be allocated as one contiguous block.
  struct Item {
    uint32_t lo, hi, depth, node;
  };
  const size_t node_guess = total_bytes / 3 + 1;
  first_child_.reserve(node_guess);
  n_children_.reserve(node_guess);
  label_.reserve(node_guess);
  token_id_.reserve(node_guess);
  auto add_node = [&](uint8_t label) {
    first_child_.push_back(0);
    n_children_.push_back(0);
    label_.push_back(label);
    token_id_.push_back(0);
  };
  add_node(0);
  std::vector<Item> queue;
  queue.push_back({0, static_cast<uint32_t>(entries.size()), 0, 0});
  for (size_t head = 0; head < queue.size(); ++head) {
    Item it = queue[head];
    if (it.lo < it.hi && entries[it.lo].bytes.size() == it.depth) {
      token_id_[it.node] = entries[it.lo].id;
      ++it.lo;
    }
    if (it.lo == it.hi) continue;
    first_child_[it.node] = static_cast<uint32_t>(label_.size());
    uint32_t lo = it.lo;
    while (lo < it.hi) {
      const auto byte = static_cast<uint8_t>(entries[lo].bytes[it.depth]);
      uint32_t hi = lo + 1;
      while (hi < it.hi && static_cast<uint8_t>(entries[hi].bytes[it.depth]) == byte) ++hi;
      const auto child_node = static_cast<uint32_t>(label_.size());
      add_node(byte);
      ++n_children_[it.node];
      queue.push_back({lo, hi, it.depth + 1, child_node});
      lo = hi;
    }
  }

  std::fill(std::begin(root_child_), std::end(root_child_), -1);
  for (uint32_t k = 0; k < n_children_[0]; ++k) {
    const uint32_t c = first_child_[0] + k;
    root_child_[label_[c]] = static_cast<int32_t>(c);
  }
}

int32_t WorldTokenizer::child(int32_t node, uint8_t byte) const {
  const uint32_t first = first_child_[static_cast<size_t>(node)];
  const uint32_t n = n_children_[static_cast<size_t>(node)];
  const uint8_t* labels = label_.data() + first;
  // Most nodes have a handful of children; a linear scan beats binary search there.
  if (n <= 8) {
    for (uint32_t k = 0; k < n; ++k) {
      if (labels[k] == byte) return static_cast<int32_t>(first + k);
      if (labels[k] > byte) return -1;
    }
    return -1;
  }
  const uint8_t* it = std::lower_bound(labels, labels + n, byte);
  if (it == labels + n || *it != byte) return -1;
  return static_cast<int32_t>(first + static_cast<uint32_t>(it - labels));
}

std::vector<int32_t> WorldTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    int32_t best_id = 0;
    size_t best_len = 0;
    int32_t node = root_child_[p[i]];
    size_t j = i;
    while (node >= 0) {
      ++j;
      if (token_id_[static_cast<size_t>(node)] != 0) {
        best_id = token_id_[static_cast<size_t>(node)];
        best_len = j - i;
      }
      if (j == n) break;
      node = child(node, p[j]);
    }
    if (best_len == 0) {
      // Only a reduced vocab can lack a single byte; skip it rather than fail (header contract).
      ++i;
      continue;
    }
    ids.push_back(best_id);
    i += best_len;
  }
  return ids;
}

std::string WorldTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) + 1 >= offsets_.size()) return std::string();
  const uint32_t begin = offsets_[static_cast<size_t>(id)];
  return blob_.substr(begin, offsets_[static_cast<size_t>(id) + 1] - begin);
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> make_world_tokenizer(std::string_view data) {
  Result<std::vector<WorldVocabEntry>> entries = parse_world_vocab(data);
  if (!entries.ok()) return entries.status();
  return std::unique_ptr<Tokenizer>(new WorldTokenizer(std::move(entries).value()));
}

}  // namespace rwkv
