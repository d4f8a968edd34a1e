// The RWKV World chat format (shared/reference/tokenizers.md §6):
//   "System: ...\n\nUser: ...\n\nAssistant: ...\n\n" and the prompt ends with "Assistant:".
// Message contents are trimmed and runs of newlines collapsed to one, so content cannot end a
// turn; generation stops at "\n\n" (the end of the assistant's turn).
#pragma once

#include <string>
#include <vector>

#include "api/openai.h"

namespace rwkv::server {

// Renders `messages` followed by "Assistant:". `continues` is true when the text follows an
// earlier turn in a session; `after_break` says whether that history already ends with "\n\n"
// (if not, a turn break is inserted first).
std::string render_chat(const std::vector<api::ChatMessage>& messages, bool continues, bool after_break);

// The stop sequence that ends an assistant turn.
inline const char* chat_turn_stop() { return "\n\n"; }

}  // namespace rwkv::server
