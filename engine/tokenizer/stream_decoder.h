// StreamDecoder: turns generated token ids, one at a time, into text that is safe to send.
//
//   StreamDecoder dec(tokenizer, {"\n\nUser:"});
//   for (;;) {
//     int32_t id = sample(...);
//     if (id == tokenizer.eos_id()) break;   // end-of-text is the caller's job: never push it
//     send(dec.push(id));
//     if (dec.stopped()) break;              // a stop string was generated
//     if (++n == max_tokens) break;
//   }
//   send(dec.flush());                       // "" after a stop
//
// Guarantees (tokenizers.md §5):
//   - Everything returned is well-formed UTF-8: a token that ends inside a character is held
//     until the character completes; ill-formed bytes become U+FFFD as soon as they are known
//     to be ill-formed (never held for more than the 3 bytes of an incomplete sequence, so
//     invalid output cannot stall the stream).
//   - A stop string never appears in the output, even when it is split across tokens: text that
//     could be the start of a stop string is held until it is known not to be. When a stop
//     string occurs, the text before its first occurrence is returned and stopped() turns true;
//     nothing after it is ever returned.
//   - The concatenation of all push() results and flush(), when no stop string occurs, equals
//     the tokens' bytes decoded with U+FFFD replacement.
// The eos id is not special here: pushing it appends token_bytes(eos), which is "" for World
// and "<|endoftext|>" for NeoX. Check eos_id() before pushing.
//
// Thread safety: none; one decoder per generation. The tokenizer must outlive the decoder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace rwkv {

class StreamDecoder {
 public:
  // Empty strings in `stop_strings` are ignored. Stop strings are compared byte-wise with the
  // decoded (U+FFFD-replaced) text, so they should be well-formed UTF-8.
  StreamDecoder(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Appends token `id` and returns the text that became safe to emit (often ""). Unknown ids
  // contribute nothing. Returns "" once stopped() or after flush().
  std::string push(int32_t id);

  // True once a stop string has been seen (by push() or flush()).
  bool stopped() const { return stopped_; }

  // Ends the stream: an incomplete UTF-8 tail becomes U+FFFD and all held text is returned
  // (unless it completes a stop string, which is then cut as in push()). Returns "" if already
  // stopped or flushed. push() after flush() returns "".
  std::string flush();

 private:
  // Moves decodable bytes from pend_ to held_ (all of them if `final`), cuts at a stop string,
  // and returns the part of held_ that can no longer be the start of a stop string.
  std::string release(bool final);

  // Constant after construction.
  const Tokenizer& tokenizer_;
  std::vector<std::string> stops_;  // non-empty strings
  // Invariants between calls: pend_ is an incomplete UTF-8 sequence (0..3 bytes, a proper
  // prefix of a well-formed sequence); held_ is well-formed UTF-8 that is a suffix of the text
  // so far and a proper prefix of some stop string (empty when there are no stop strings).
  std::string pend_;
  std::string held_;
  bool stopped_ = false;
  bool finished_ = false;  // stopped or flushed: nothing more is returned
};

}  // namespace rwkv
