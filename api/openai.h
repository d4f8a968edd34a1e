// OpenAI-style request/response schemas and their JSON conversions. Pure: no I/O, no HTTP.
//
//   api::GenerationRequest req;
//   api::ApiError err;
//   if (!api::parse_generation_request(body, /*chat=*/true, limits, &req, &err)) {
//     reply(err.status, api::error_json(err));
//   }
//
// Wire formats: shared/reference/serving.md §2-§4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/sampler/sampler.h"

namespace rwkv::api {

// {"error":{"message","type","param","code"}} plus the HTTP status it travels with.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // empty -> null
  std::string code;   // empty -> null
};
std::string error_json(const ApiError& e);
ApiError make_error(int status, std::string type, std::string message, std::string param = "", std::string code = "");
// Maps an engine Status: InvalidArgument 400, NotFound 404, ResourceExhausted 429,
// Unavailable 503, everything else 500 server_error.
ApiError error_from_status(const Status& st, const std::string& param = "");

struct ChatMessage {
  std::string role;  // system, user, assistant, tool
  std::string content;
};

// What the server accepts; the parser checks requests against it.
struct Limits {
  std::string model_id;             // the one model served; requests naming another get 404
  int64_t max_tokens_limit = 4096;  // largest max_tokens accepted
  int64_t max_prompt_tokens = 16384;
  int32_t n_vocab = 0;
};

struct GenerationRequest {
  bool chat = false;
  std::string model;
  // /v1/completions: text, or token ids (`prompt` given as an array of integers).
  bool prompt_is_tokens = false;
  std::string prompt;
  std::vector<int32_t> prompt_tokens;
  // /v1/chat/completions
  std::vector<ChatMessage> messages;
  // Default: 16 for completions (OpenAI), the server limit for chat.
  int64_t max_tokens = 16;
  SamplerParams sampling;
  std::vector<std::string> stop;  // at most 4, none empty
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  std::string session_id;         // body `session_id` (the X-Session-Id header is merged by routes)
  bool seed_given = false;        // false: the server draws a fresh seed per request
};

// Parses and validates a request body. On failure fills `err` (400 with `param`, or 404 for an
// unknown model) and returns false. Bodies must be one JSON object in valid UTF-8.
bool parse_generation_request(const std::string& body, bool chat, const Limits& limits, GenerationRequest* out,
                              ApiError* err);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Non-streaming responses.
std::string completion_response(const std::string& id, int64_t created, const std::string& model,
                                const std::string& text, const std::string& finish_reason, const Usage& usage,
                                const std::string& session_id);
std::string chat_response(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                          const std::string& finish_reason, const Usage& usage, const std::string& session_id);

// One streaming chunk as single-line JSON (no "data: " framing). finish_reason "" -> null.
// Chat: `first` adds role "assistant"; a finishing chunk has an empty delta.
std::string completion_chunk(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                             const std::string& finish_reason);
std::string chat_chunk(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                       bool first, const std::string& finish_reason);
// The final {"choices":[],"usage":{...}} chunk of stream_options.include_usage.
std::string usage_chunk(const std::string& id, int64_t created, const std::string& model, bool chat,
                        const Usage& usage);

std::string models_response(const std::string& model_id, int64_t created);

}  // namespace rwkv::api
