#include "api/openai.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace rwkv::api {

using json = nlohmann::json;

namespace {

json null_or(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// Serialises without ever throwing: text we emit is valid UTF-8, but be safe.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiError bad(const std::string& param, const std::string& message) {
  return make_error(400, "invalid_request_error", message, param);
}

// Reads an optional number field into `out` within [lo, hi].
bool get_number(const json& o, const char* key, double lo, double hi, double* out, ApiError* err) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return true;
  if (!it->is_number()) {
    *err = bad(key, std::string("'") + key + "' must be a number");
    return false;
  }
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    *err = bad(key, std::string("'") + key + "' must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " +
                        it->dump());
    return false;
  }
  *out = v;
  return true;
}

bool get_int(const json& o, const char* key, int64_t lo, int64_t hi, int64_t* out, ApiError* err) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return true;
  if (!it->is_number_integer()) {
    // 16.0 is tolerated as 16 (some clients send floats), 16.5 is not.
    if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()) {
      const double d = it->get<double>();
      if (d >= (double)lo && d <= (double)hi) {
        *out = (int64_t)d;
        return true;
      }
    }
    if (!it->is_number()) {
      *err = bad(key, std::string("'") + key + "' must be an integer");
      return false;
    }
  }
  const bool is_int = it->is_number_integer();
  const int64_t v = is_int ? it->get<int64_t>() : 0;
  if (!is_int || v < lo || v > hi) {
    *err = bad(key, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                        "], got " + it->dump());
    return false;
  }
  *out = v;
  return true;
}

bool get_bool(const json& o, const char* key, bool* out, ApiError* err) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return true;
  if (!it->is_boolean()) {
    *err = bad(key, std::string("'") + key + "' must be a boolean");
    return false;
  }
  *out = it->get<bool>();
  return true;
}

bool get_string(const json& o, const char* key, std::string* out, ApiError* err) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return true;
  if (!it->is_string()) {
    *err = bad(key, std::string("'") + key + "' must be a string");
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

// Chat content: a string, or an array of {"type":"text","text":...} parts (concatenated).
bool get_content(const json& m, size_t index, std::string* out, ApiError* err) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    out->clear();
    return true;
  }
  if (it->is_string()) {
    *out = it->get<std::string>();
    return true;
  }
  if (it->is_array()) {
    out->clear();
    for (const json& part : *it) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
        *err = bad(param, "only text content parts ({\"type\":\"text\",\"text\":...}) are supported");
        return false;
      }
      *out += part["text"].get<std::string>();
    }
    return true;
  }
  *err = bad(param, "'" + param + "' must be a string or an array of text parts");
  return false;
}

bool parse_prompt(const json& o, const Limits& limits, GenerationRequest* out, ApiError* err) {
  auto it = o.find("prompt");
  if (it == o.end() || it->is_null()) {
    out->prompt.clear();  // empty prompt: allowed (a session continues from its state)
    return true;
  }
  if (it->is_string()) {
    out->prompt = it->get<std::string>();
    return true;
  }
  if (it->is_array()) {
    if (it->empty()) return true;
    if ((*it)[0].is_string()) {
      if (it->size() != 1) {
        *err = bad("prompt", "only one prompt per request is supported (got " + std::to_string(it->size()) + ")");
        return false;
      }
      out->prompt = (*it)[0].get<std::string>();
      return true;
    }
    const json* ids = &*it;
    if ((*it)[0].is_array()) {
      if (it->size() != 1) {
        *err = bad("prompt", "only one prompt per request is supported (got " + std::to_string(it->size()) + ")");
        return false;
      }
      ids = &(*it)[0];
    }
    out->prompt_is_tokens = true;
    for (const json& v : *ids) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= limits.n_vocab) {
        *err = bad("prompt", "token ids in 'prompt' must be integers in [0, " + std::to_string(limits.n_vocab) +
                                 "), got " + v.dump());
        return false;
      }
      out->prompt_tokens.push_back((int32_t)v.get<int64_t>());
    }
    return true;
  }
  *err = bad("prompt", "'prompt' must be a string, an array of strings or an array of token ids");
  return false;
}

}  // namespace

ApiError make_error(int status, std::string type, std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = status;
  e.type = std::move(type);
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

std::string error_json(const ApiError& e) {
  json j = {{"error", {{"message", e.message}, {"type", e.type}, {"param", null_or(e.param)}, {"code", null_or(e.code)}}}};
  return dump(j);
}

ApiError error_from_status(const Status& st, const std::string& param) {
  switch (st.code()) {
    case StatusCode::kInvalidArgument: return make_error(400, "invalid_request_error", st.message(), param);
    case StatusCode::kNotFound: return make_error(404, "not_found_error", st.message(), param);
    case StatusCode::kConflict: return make_error(409, "invalid_request_error", st.message(), param, "session_busy");
    case StatusCode::kResourceExhausted: return make_error(429, "rate_limit_error", st.message(), param);
    case StatusCode::kUnavailable: return make_error(503, "unavailable_error", st.message(), param);
    default: return make_error(500, "server_error", st.message(), param);
  }
}

bool parse_generation_request(const std::string& body, bool chat, const Limits& limits, GenerationRequest* out,
                              ApiError* err) {
  *out = GenerationRequest();
  out->chat = chat;
  json o = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (o.is_discarded()) {
    // nlohmann rejects invalid UTF-8 inside strings as a parse error too.
    *err = bad("", "the body is not valid JSON (or not valid UTF-8)");
    return false;
  }
  if (!o.is_object()) {
    *err = bad("", "the body must be a JSON object");
    return false;
  }
  if (!get_string(o, "model", &out->model, err)) return false;
  if (!out->model.empty() && out->model != limits.model_id) {
    *err = make_error(404, "invalid_request_error", "The model '" + out->model + "' does not exist; this server serves '" +
                                                        limits.model_id + "'", "model", "model_not_found");
    return false;
  }
  if (chat) {
    auto it = o.find("messages");
    if (it == o.end() || !it->is_array()) {
      *err = bad("messages", "'messages' must be an array of {role, content} objects");
      return false;
    }
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        *err = bad("messages[" + std::to_string(i) + "].role", "each message needs a string 'role'");
        return false;
      }
      ChatMessage cm;
      cm.role = m["role"].get<std::string>();
      if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" && cm.role != "tool" && cm.role != "developer") {
        *err = bad("messages[" + std::to_string(i) + "].role", "unknown role '" + cm.role + "'");
        return false;
      }
      if (!get_content(m, i, &cm.content, err)) return false;
      out->messages.push_back(std::move(cm));
    }
    out->max_tokens = limits.max_tokens_limit;
  } else {
    if (!parse_prompt(o, limits, out, err)) return false;
  }

  if (!get_int(o, "max_tokens", 1, limits.max_tokens_limit, &out->max_tokens, err)) return false;
  if (chat && !get_int(o, "max_completion_tokens", 1, limits.max_tokens_limit, &out->max_tokens, err)) return false;
  int64_t n = 1;
  if (!get_int(o, "n", 1, 1, &n, err)) return false;
  int64_t best_of = 1;
  if (!get_int(o, "best_of", 1, 1, &best_of, err)) return false;

  SamplerParams& sp = out->sampling;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0, presence = 0.0, frequency = 0.0, decay = 0.996;
  int64_t top_k = 0, seed = -1;
  if (!get_number(o, "temperature", 0.0, 2.0, &temperature, err)) return false;
  if (!get_number(o, "top_p", 0.0, 1.0, &top_p, err)) return false;
  if (top_p <= 0.0) {
    *err = bad("top_p", "'top_p' must be in (0, 1], got " + o["top_p"].dump());
    return false;
  }
  if (!get_number(o, "min_p", 0.0, 0.999999, &min_p, err)) return false;
  if (!get_number(o, "presence_penalty", -2.0, 2.0, &presence, err)) return false;
  if (!get_number(o, "frequency_penalty", -2.0, 2.0, &frequency, err)) return false;
  if (!get_number(o, "penalty_decay", 0.0, 1.0, &decay, err)) return false;
  if (!get_int(o, "top_k", 0, 1 << 24, &top_k, err)) return false;
  if (!get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, err)) return false;
  sp.temperature = (float)temperature;
  sp.top_p = (float)top_p;
  sp.min_p = (float)min_p;
  sp.presence_penalty = (float)presence;
  sp.frequency_penalty = (float)frequency;
  sp.penalty_decay = (float)decay;
  sp.top_k = (int32_t)top_k;
  out->seed_given = o.contains("seed") && !o["seed"].is_null();
  sp.seed = out->seed_given ? (uint64_t)seed : 0;
  if (auto it = o.find("logit_bias"); it != o.end() && !it->is_null()) {
    if (!it->is_object()) {
      *err = bad("logit_bias", "'logit_bias' must be an object {\"token id\": bias}");
      return false;
    }
    for (auto kv = it->begin(); kv != it->end(); ++kv) {
      char* end = nullptr;
      const long long id = std::strtoll(kv.key().c_str(), &end, 10);
      if (kv.key().empty() || *end != '\0' || id < 0 || id >= limits.n_vocab) {
        *err = bad("logit_bias", "logit_bias key '" + kv.key() + "' is not a token id in [0, " +
                                     std::to_string(limits.n_vocab) + ")");
        return false;
      }
      if (!kv.value().is_number() || !std::isfinite(kv.value().get<double>()) || kv.value().get<double>() < -100.0 ||
          kv.value().get<double>() > 100.0) {
        *err = bad("logit_bias", "logit_bias values must be numbers in [-100, 100]");
        return false;
      }
      sp.logit_bias.emplace_back((int32_t)id, kv.value().get<float>());
    }
  }

  if (auto it = o.find("stop"); it != o.end() && !it->is_null()) {
    if (it->is_string()) {
      out->stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) {
          *err = bad("stop", "'stop' must be a string or an array of strings");
          return false;
        }
        out->stop.push_back(s.get<std::string>());
      }
    } else {
      *err = bad("stop", "'stop' must be a string or an array of strings");
      return false;
    }
    if (out->stop.size() > 4) {
      *err = bad("stop", "at most 4 stop sequences are allowed");
      return false;
    }
    for (const std::string& s : out->stop) {
      if (s.empty()) {
        *err = bad("stop", "stop sequences must not be empty");
        return false;
      }
    }
  }
  if (!get_bool(o, "stream", &out->stream, err)) return false;
  if (auto it = o.find("stream_options"); it != o.end() && !it->is_null()) {
    if (!it->is_object()) {
      *err = bad("stream_options", "'stream_options' must be an object");
      return false;
    }
    if (!get_bool(*it, "include_usage", &out->include_usage, err)) return false;
  }
  if (!get_string(o, "session_id", &out->session_id, err)) return false;
  if (auto it = o.find("logprobs"); it != o.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>())) {
    *err = bad("logprobs", "logprobs are not supported");
    return false;
  }
  bool echo = false;
  if (!get_bool(o, "echo", &echo, err)) return false;
  if (echo) {
    *err = bad("echo", "echo is not supported");
    return false;
  }
  Status st = validate(sp, limits.n_vocab);
  if (!st.ok()) {
    *err = bad("", st.message());
    return false;
  }
  return true;
}

namespace {

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

std::string completion_response(const std::string& id, int64_t created, const std::string& model,
                                const std::string& text, const std::string& finish_reason, const Usage& usage,
                                const std::string& session_id) {
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}})},
            {"usage", usage_json(usage)}};
  if (!session_id.empty()) j["session_id"] = session_id;
  return dump(j);
}

std::string chat_response(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                          const std::string& finish_reason, const Usage& usage, const std::string& session_id) {
  json j = {{"id", id},
            {"object", "chat.completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"index", 0},
                                      {"message", {{"role", "assistant"}, {"content", text}}},
                                      {"logprobs", nullptr},
                                      {"finish_reason", finish_reason}}})},
            {"usage", usage_json(usage)}};
  if (!session_id.empty()) j["session_id"] = session_id;
  return dump(j);
}

std::string completion_chunk(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                             const std::string& finish_reason) {
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", null_or(finish_reason)}}})}};
  return dump(j);
}

std::string chat_chunk(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                       bool first, const std::string& finish_reason) {
  json delta = json::object();
  if (first) {
    delta["role"] = "assistant";
    delta["content"] = text;
  } else if (finish_reason.empty() || !text.empty()) {
    delta["content"] = text;
  }
  json j = {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", model},
            {"choices", json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", null_or(finish_reason)}}})}};
  return dump(j);
}

std::string usage_chunk(const std::string& id, int64_t created, const std::string& model, bool chat, const Usage& usage) {
  json j = {{"id", id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array()},
            {"usage", usage_json(usage)}};
  return dump(j);
}

std::string models_response(const std::string& model_id, int64_t created) {
  json j = {{"object", "list"},
            {"data", json::array({{{"id", model_id}, {"object", "model"}, {"created", created}, {"owned_by", "rwkv-edge"}}})}};
  return dump(j);
}

}  // namespace rwkv::api
