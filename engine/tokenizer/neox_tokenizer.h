// GPT-NeoX-20B byte-level BPE built from a Hugging Face tokenizer.json. Internal to
// engine/tokenizer; callers use make_tokenizer({"neox", json}).
#pragma once

#include <memory>
#include <string_view>

#include "engine/common/status.h"

namespace rwkv {

class Tokenizer;

// Builds the tokenizer from tokenizer.json content.
// Supported: model.type "BPE" (no dropout, no subword prefix/suffix; ignore_merges honoured),
// normalizer null or NFC, pre_tokenizer ByteLevel with add_prefix_space false, decoder null or
// ByteLevel. post_processor is ignored (encode never adds special tokens).
// Errors: Corruption for invalid JSON (with the parser's line/column) or inconsistent content
// (names the field, e.g. a merge using an unknown token); Unsupported for other pipelines
// (names the field and value).
Result<std::unique_ptr<Tokenizer>> make_neox_tokenizer(std::string_view json_text);

// Cheap format check used by read_tokenizer_file(): OK if `json_text` parses and is an object
// with a "model" object. Corruption for invalid JSON (message has the parser's line and
// column), Unsupported for JSON of another shape.
Status check_neox_json(std::string_view json_text);

}  // namespace rwkv
