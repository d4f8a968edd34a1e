#include "engine/tokenizer/stream_decoder.h"

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace rwkv {
namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t held_suffix_length(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const std::string& s : stops) {
    const size_t longest = std::min(s.size() - 1, text.size());
    for (size_t m = longest; m > best; --m) {
      if (text.compare(text.size() - m, m, s, 0, m) == 0) {
        best = m;
        break;
      }
    }
  }
  return best;
}

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : tokenizer_(tokenizer) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StreamDecoder::push(int32_t id) {
  if (finished_) return std::string();
  pend_ += tokenizer_.token_bytes(id);
  return release(/*final=*/false);
}

std::string StreamDecoder::flush() {
  if (finished_) return std::string();
  std::string out = release(/*final=*/true);
  finished_ = true;
  return out;
}

std::string StreamDecoder::release(bool final) {
  const size_t keep = final ? 0 : utf8_incomplete_tail(pend_);
  utf8_append_replacing(std::string_view(pend_).substr(0, pend_.size() - keep), &held_);
  pend_.erase(0, pend_.size() - keep);

  // A new occurrence can only start inside held_: everything before it was emitted because it
  // could not begin a stop string, so searching held_ from the start finds the first one.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    pend_.clear();
    stopped_ = true;
    finished_ = true;
    return out;
  }

  size_t hold = final ? 0 : held_suffix_length(held_, stops_);
  // Keep the cut on a character boundary (only matters for ill-formed stop strings).
  while (hold > 0 && hold < held_.size() && is_continuation(held_[held_.size() - hold])) ++hold;
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

}  // namespace rwkv
