// GPT-NeoX-20B byte-level BPE (tokenizers.md §3).
//
// Encode pipeline: ill-formed UTF-8 -> U+FFFD; split out non-normalized added tokens (the
// specials) on the raw text; NFC each remaining segment; split out normalized added tokens (the
// space runs); GPT-2 pre-tokenization; BPE per piece.
//
// BPE works on token ids rather than on byte-to-unicode strings: a piece starts as the ids of
// its single bytes, and a merge maps an (id, id) pair to (rank, merged id). The byte-to-unicode
// alphabet is only needed at load time, to turn vocab keys into raw bytes.
#include "engine/tokenizer/neox_tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <shared_mutex>
#include <unordered_map>

#include "engine/tokenizer/neox_pretokenize.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace rwkv {
namespace {

using nlohmann::json;

// Largest token id accepted; token tables are indexed by id.
constexpr int64_t kMaxNeoxTokenId = (1 << 24) - 1;

// GPT-2's byte-to-unicode alphabet: printable bytes map to themselves, the other 68 to
// U+0100.. in byte order (space -> U+0120 'Ġ', '\n' -> U+010A 'Ċ'). Returns the inverse,
// code point -> byte, -1 where a code point is not in the alphabet.
std::array<int16_t, 512> unicode_to_byte_table() {
  std::array<int16_t, 512> inverse;
  inverse.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    inverse[static_cast<size_t>(printable ? b : next++)] = static_cast<int16_t>(b);
  }
  return inverse;
}

// Maps a byte-level vocab key ("Ġthe") back to its bytes (" the"). False if a character is
// outside the alphabet.
bool byte_level_to_bytes(const std::string& key, const std::array<int16_t, 512>& inverse, std::string* out) {
  const auto* s = reinterpret_cast<const unsigned char*>(key.data());
  const size_t n = key.size();
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    if (s[i] < 0x80) {
      cp = s[i++];
    } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < n) {
      cp = ((s[i] & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
      i += 2;
    } else {
      return false;  // the alphabet lies below U+0800: two bytes at most
    }
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    out->push_back(static_cast<char>(inverse[cp]));
  }
  return true;
}

std::string type_of(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"].get<std::string>();
  return j.dump();
}

// Finds added tokens in text, leftmost-longest (what HF's Aho-Corasick matcher does).
class AddedTokenMatcher {
 public:
  void add(std::string content, int32_t id) {
    if (content.empty()) return;
    const auto first = static_cast<uint8_t>(content[0]);
    tokens_.push_back({std::move(content), id});
    by_first_byte_[first].push_back(static_cast<uint32_t>(tokens_.size() - 1));
  }
  // Call after the last add(): orders each candidate list longest first.
  void finish() {
    for (auto& list : by_first_byte_) {
      std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
        return tokens_[a].content.size() > tokens_[b].content.size();
      });
    }
  }
  bool empty() const { return tokens_.empty(); }

  // Splits `text` into added tokens (their ids go to *ids) and the stretches between them
  // (passed to on_text, which may append to *ids too). Empty stretches are skipped.
  template <typename OnText>
  void split(std::string_view text, std::vector<int32_t>* ids, OnText&& on_text) const {
    size_t done = 0;
    for (size_t pos = 0; pos < text.size(); ++pos) {
      const auto& candidates = by_first_byte_[static_cast<uint8_t>(text[pos])];
      for (uint32_t k : candidates) {
        const std::string& c = tokens_[k].content;
        if (text.compare(pos, c.size(), c) != 0) continue;
        if (pos > done) on_text(text.substr(done, pos - done));
        ids->push_back(tokens_[k].id);
        pos += c.size() - 1;
        done = pos + 1;
        break;
      }
    }
    if (done < text.size()) on_text(text.substr(done));
  }

 private:
  struct Token {
    std::string content;
    int32_t id;
  };
  std::vector<Token> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

class NeoxTokenizer final : public Tokenizer {
 public:
  NeoxTokenizer() = default;
  // Fills the tables; errors as make_neox_tokenizer. json exceptions propagate to the caller.
  Status load(const json& root);

  const char* kind() const override { return "neox"; }
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t eos_id() const override { return eos_id_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  Status load_added_tokens(const json& root);
  Status load_model(const json& model);
  // NFC, normalized added tokens, pre-tokenization and BPE for one stretch of raw text.
  void encode_segment(std::string_view segment, std::vector<int32_t>* ids) const;
  // BPE of one pre-token, through the cache.
  void encode_piece(std::string_view piece, std::vector<int32_t>* ids) const;
  void bpe(std::string_view piece, std::vector<int32_t>* ids) const;

  // Constant after load().
  std::vector<std::string> tokens_;                  // id -> bytes (added tokens: content); "" = no token
  std::unordered_map<uint64_t, Merge> merges_;       // (left id, right id) -> rank, merged id
  std::array<int32_t, 256> byte_token_{};            // byte -> id of its one-byte token, -1 if none
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // only filled when ignore_merges_
  bool ignore_merges_ = false;
  AddedTokenMatcher raw_added_;         // added tokens with normalized == false
  AddedTokenMatcher normalized_added_;  // added tokens with normalized == true (NFC content)
  int32_t eos_id_ = -1;

  // Piece -> ids cache. Bounded: cleared when it reaches kCacheCapacity (not LRU; a clear costs
  // one re-BPE per piece, and common pieces refill it at once).
  static constexpr size_t kCacheCapacity = 16384;
  static constexpr size_t kMaxCachedPieceBytes = 64;
  mutable std::shared_mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // Guarded by cache_mu_.
};

Status NeoxTokenizer::load(const json& root) {
  if (!root.is_object()) return Status::Corruption("tokenizer.json is not a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) {
    return Status::Corruption("tokenizer.json has no \"model\" object");
  }
  if (root.contains("normalizer") && !root["normalizer"].is_null() && type_of(root["normalizer"]) != "NFC") {
    return Status::Unsupported("tokenizer.json: normalizer " + type_of(root["normalizer"]) + " (only NFC)");
  }
  const json& pre = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json();
  if (type_of(pre) != "ByteLevel" || pre.value("add_prefix_space", false) || !pre.value("use_regex", true)) {
    return Status::Unsupported("tokenizer.json: pre_tokenizer " + pre.dump() +
                               " (only ByteLevel without add_prefix_space)");
  }
  if (root.contains("decoder") && !root["decoder"].is_null() && type_of(root["decoder"]) != "ByteLevel") {
    return Status::Unsupported("tokenizer.json: decoder " + type_of(root["decoder"]) + " (only ByteLevel)");
  }
  Status s = nfc_available();
  if (!s.ok()) return s;
  s = load_model(root["model"]);
  if (!s.ok()) return s;
  return load_added_tokens(root);
}

Status NeoxTokenizer::load_model(const json& model) {
  if (model.contains("type") && model["type"] != "BPE") {
    return Status::Unsupported("tokenizer.json: model.type " + model["type"].dump() + " (only BPE)");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(field) && !model[field].is_null() && model[field] != "") {
      return Status::Unsupported(std::string("tokenizer.json: model.") + field + " is set");
    }
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0) {
    return Status::Unsupported("tokenizer.json: model.dropout is set");
  }
  ignore_merges_ = model.value("ignore_merges", false);
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Status::Corruption("tokenizer.json: model.vocab is missing or not an object");
  }
  const json& vocab = model["vocab"];
  const std::array<int16_t, 512> inverse = unicode_to_byte_table();

  // Vocab key (byte-level string) -> id; needed to resolve merges, dropped afterwards.
  std::unordered_map<std::string, int32_t> key_to_id;
  key_to_id.reserve(vocab.size());
  std::vector<std::pair<int32_t, std::string>> id_bytes;
  id_bytes.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxNeoxTokenId) {
      return Status::Corruption("tokenizer.json: model.vocab[" + json(it.key()).dump() + "] has bad id " +
                                std::to_string(id));
    }
    std::string bytes;
    if (!byte_level_to_bytes(it.key(), inverse, &bytes)) {
      // Tokens outside the byte-level alphabet can only be added tokens ("<|endoftext|>" is
      // inside it); their bytes come from added_tokens, so keep them unreachable here.
      bytes.clear();
    }
    key_to_id.emplace(it.key(), static_cast<int32_t>(id));
    id_bytes.emplace_back(static_cast<int32_t>(id), std::move(bytes));
    max_id = std::max(max_id, id);
  }
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  std::vector<bool> seen(tokens_.size(), false);
  for (auto& [id, bytes] : id_bytes) {
    if (seen[static_cast<size_t>(id)]) {
      return Status::Corruption("tokenizer.json: model.vocab uses id " + std::to_string(id) + " twice");
    }
    seen[static_cast<size_t>(id)] = true;
    tokens_[static_cast<size_t>(id)] = std::move(bytes);
  }
  if (auto it = key_to_id.find("<|endoftext|>"); it != key_to_id.end()) eos_id_ = it->second;
  byte_token_.fill(-1);
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (tokens_[id].size() == 1) byte_token_[static_cast<uint8_t>(tokens_[id][0])] = static_cast<int32_t>(id);
  }

  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Status::Corruption("tokenizer.json: model.merges is missing or not an array");
  }
  const json& merges = model["merges"];
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string left, right;
    // Older files write "a b", newer ones ["a", "b"].
    if (m.is_string()) {
      const std::string& text = m.get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return Status::Corruption("tokenizer.json: model.merges[" + std::to_string(rank) + "] " + m.dump() +
                                  " is not two tokens separated by one space");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return Status::Corruption("tokenizer.json: model.merges[" + std::to_string(rank) + "] is malformed");
    }
    auto l = key_to_id.find(left), r = key_to_id.find(right), both = key_to_id.find(left + right);
    if (l == key_to_id.end() || r == key_to_id.end() || both == key_to_id.end()) {
      return Status::Corruption("tokenizer.json: model.merges[" + std::to_string(rank) + "] " + m.dump() +
                                " uses a token that is not in model.vocab");
    }
    // A repeated pair keeps its first (best) rank, as HF does.
    merges_.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), both->second});
  }
  if (ignore_merges_) {
    for (size_t id = 0; id < tokens_.size(); ++id) {
      if (!tokens_[id].empty()) bytes_to_id_.emplace(tokens_[id], static_cast<int32_t>(id));
    }
  }
  return Status::OK();
}

Status NeoxTokenizer::load_added_tokens(const json& root) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) {
    raw_added_.finish();
    normalized_added_.finish();
    return Status::OK();
  }
  const json& added = root["added_tokens"];
  if (!added.is_array()) return Status::Corruption("tokenizer.json: added_tokens is not an array");
  for (size_t k = 0; k < added.size(); ++k) {
    const json& t = added[k];
    const std::string where = "tokenizer.json: added_tokens[" + std::to_string(k) + "]";
    if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["content"].is_string()) {
      return Status::Corruption(where + " needs \"id\" and \"content\"");
    }
    const int64_t id = t["id"].get<int64_t>();
    if (id < 0 || id > kMaxNeoxTokenId) return Status::Corruption(where + " has bad id " + std::to_string(id));
    std::string content = t["content"].get<std::string>();
    if (!utf8_is_valid(content)) return Status::Corruption(where + " content is not valid UTF-8");
    const bool special = t.value("special", false);
    // HF's default: special tokens match the raw text, others the normalized text.
    const bool normalized = t.value("normalized", !special);
    // lstrip / rstrip / single_word are not implemented (all false in 20B_tokenizer.json).
    if (static_cast<size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<size_t>(id) + 1);
    tokens_[static_cast<size_t>(id)] = content;
    if (content == "<|endoftext|>") eos_id_ = static_cast<int32_t>(id);
    if (normalized) {
      normalized_added_.add(nfc_normalize(content), static_cast<int32_t>(id));
    } else {
      raw_added_.add(std::move(content), static_cast<int32_t>(id));
    }
  }
  raw_added_.finish();
  normalized_added_.finish();
  return Status::OK();
}

std::vector<int32_t> NeoxTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 1);
  std::string cleaned;
  if (!utf8_is_valid(text)) {
    utf8_append_replacing(text, &cleaned);
    text = cleaned;
  }
  raw_added_.split(text, &ids, [&](std::string_view segment) { encode_segment(segment, &ids); });
  return ids;
}

void NeoxTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>* ids) const {
  const std::string normalized = nfc_normalize(segment);
  std::vector<std::string_view> pieces;
  normalized_added_.split(normalized, ids, [&](std::string_view stretch) {
    pieces.clear();
    gpt2_split(stretch, &pieces);
    for (std::string_view piece : pieces) encode_piece(piece, ids);
  });
}

void NeoxTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.size() == 1) {
    const int32_t id = byte_token_[static_cast<uint8_t>(piece[0])];
    if (id >= 0) ids->push_back(id);
    return;
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  std::string key;
  if (cacheable) {
    key.assign(piece);
    std::shared_lock<std::shared_mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  bpe(piece, ids);
  if (cacheable) {
    std::vector<int32_t> value(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end());
    std::unique_lock<std::shared_mutex> lock(cache_mu_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::move(key), std::move(value));
  }
}

// Repeatedly merges the adjacent pair with the lowest rank, the leftmost one on ties (what HF's
// BPE::merge_word does). A heap of candidate merges keeps long pieces O(n log n); entries made
// stale by an earlier merge are detected on pop and skipped.
void NeoxTokenizer::bpe(std::string_view piece, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(std::string(piece));
    if (it != bytes_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;    // token id, -1 for a byte without a one-byte token (never merges)
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> syms(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    syms[static_cast<size_t>(i)] = {byte_token_[static_cast<uint8_t>(piece[static_cast<size_t>(i)])], i - 1,
                                    i + 1 < n ? i + 1 : -1, true};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t pos) {
    const Symbol& left = syms[static_cast<size_t>(pos)];
    if (left.next < 0) return;
    const Symbol& right = syms[static_cast<size_t>(left.next)];
    if (left.id < 0 || right.id < 0) return;
    if (const Merge* m = find_merge(left.id, right.id)) heap.push({m->rank, pos});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = syms[static_cast<size_t>(top.pos)];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = syms[static_cast<size_t>(left.next)];
    if (left.id < 0 || right.id < 0) continue;
    const Merge* m = find_merge(left.id, right.id);
    // Stale: the pair at pos changed since this candidate was pushed. (Equal rank means the
    // same merge rule, so the candidate is still right.)
    if (m == nullptr || m->rank != top.rank) continue;
    left.id = m->new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    if (syms[static_cast<size_t>(i)].id >= 0) ids->push_back(syms[static_cast<size_t>(i)].id);
  }
}

std::string NeoxTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return std::string();
  return tokens_[static_cast<size_t>(id)];
}

}  // namespace

Status check_neox_json(std::string_view json_text) {
  try {
    const json root = json::parse(json_text.begin(), json_text.end());
    if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) {
      return Status::Unsupported("JSON without a \"model\" object is not a Hugging Face tokenizer.json");
    }
    return Status::OK();
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("invalid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory while parsing JSON");
  }
}

Result<std::unique_ptr<Tokenizer>> make_neox_tokenizer(std::string_view json_text) {
  // nlohmann reports errors by exception; they stop here (no exceptions across modules).
  try {
    const json root = json::parse(json_text.begin(), json_text.end());
    auto tok = std::make_unique<NeoxTokenizer>();
    Status s = tok->load(root);
    if (!s.ok()) return s;
    return std::unique_ptr<Tokenizer>(std::move(tok));
  } catch (const json::parse_error& e) {
    return Status::Corruption(std::string("tokenizer.json: invalid JSON: ") + e.what());
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("tokenizer.json: unexpected value: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("tokenizer.json: out of memory while loading");
  }
}

}  // namespace rwkv
