#include "server/chat_template.h"

namespace rwkv::server {
namespace {

std::string clean(const std::string& s) {
  // Trim, then collapse every run of newlines ("\r" counts) into one "\n".
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r')) --e;
  std::string out;
  out.reserve(e - b);
  bool in_break = false;
  for (size_t i = b; i < e; ++i) {
    const char c = s[i];
    if (c == '\n' || c == '\r') {
      if (!in_break) out += '\n';
      in_break = true;
    } else {
      out += c;
      in_break = false;
    }
  }
  return out;
}

const char* role_name(const std::string& role) {
  if (role == "system" || role == "developer") return "System";
  if (role == "assistant") return "Assistant";
  return "User";  // user, tool
}

}  // namespace

std::string render_chat(const std::vector<api::ChatMessage>& messages, bool continues, bool after_break) {
  std::string out;
  if (continues && !after_break) out += "\n\n";
  for (const api::ChatMessage& m : messages) {
    out += role_name(m.role);
    out += ": ";
    out += clean(m.content);
    out += "\n\n";
  }
  out += "Assistant:";
  return out;
}

}  // namespace rwkv::server
