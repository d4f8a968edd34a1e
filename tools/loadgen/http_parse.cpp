#include "tools/loadgen/http_parse.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace rwkv::loadgen {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxLineBytes = 8 * 1024;

std::string to_lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string Url::host_header() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Url> parse_url(const std::string& text) {
  const std::string lower = to_lower(text);
  if (lower.rfind("https://", 0) == 0) {
    return Status::Unsupported(text + ": https is not supported (the load generator speaks plain HTTP)");
  }
  if (lower.rfind("http://", 0) != 0) return Status::InvalidArgument(text + ": expected http://host[:port][/path]");
  const std::string rest = text.substr(7);
  const size_t slash = rest.find_first_of("/?#");
  const std::string authority = rest.substr(0, slash);
  Url u;
  if (slash != std::string::npos) {
    u.path = rest.substr(slash);
    const size_t hash = u.path.find('#');
    if (hash != std::string::npos) u.path.resize(hash);
    if (u.path.empty() || u.path[0] != '/') u.path = "/" + u.path;
  }
  if (authority.find('@') != std::string::npos) {
    return Status::InvalidArgument(text + ": credentials in the URL are not supported (use --api-key)");
  }
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return Status::InvalidArgument(text + ": unterminated IPv6 literal");
    u.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Status::InvalidArgument(text + ": junk after the IPv6 literal");
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return Status::InvalidArgument(text + ": no host");
  if (!port_text.empty()) {
    char* end = nullptr;
    errno = 0;
    const long p = std::strtol(port_text.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || p < 1 || p > 65535) {
      return Status::InvalidArgument(text + ": bad port '" + port_text + "'");
    }
    u.port = (uint16_t)p;
  }
  return u;
}

std::string api_root(const Url& u) {
  std::string p = u.path;
  const size_t q = p.find('?');
  if (q != std::string::npos) p.resize(q);
  while (!p.empty() && p.back() == '/') p.pop_back();
  for (const char* suffix : {"/v1/chat/completions", "/v1/completions", "/v1"}) {
    if (ends_with(p, suffix)) {
      p.resize(p.size() - std::string(suffix).size());
      break;
    }
  }
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p;
}

double retry_after_seconds(const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers) {
    if (name != "retry-after") continue;
    char* end = nullptr;
    const double s = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || *end != '\0' || !std::isfinite(s) || s < 0) return -1;
    return s;
  }
  return -1;
}

// ---- ResponseParser ------------------------------------------------------------------------

std::string ResponseParser::header(const std::string& lower_name) const {
  for (const auto& [name, value] : headers_) {
    if (name == lower_name) return value;
  }
  return "";
}

bool ResponseParser::take_line(std::string* line) {
  const size_t lf = buf_.find('\n');
  if (lf == std::string::npos) return false;
  size_t end = lf;
  if (end > 0 && buf_[end - 1] == '\r') --end;
  line->assign(buf_, 0, end);
  buf_.erase(0, lf + 1);
  return true;
}

bool ResponseParser::emit(std::string_view piece, const BodySink& sink) {
  if (piece.empty()) return true;
  if (!sink(piece)) {
    aborted_ = true;
    return false;
  }
  return true;
}

Status ResponseParser::parse_head() {
  // buf_ holds the complete header block up to and including the blank line.
  std::string line;
  if (!take_line(&line)) return Status::Internal("header block without a line");
  // "HTTP/1.1 200 OK"
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12 || line[8] != ' ') {
    return Status::InvalidArgument("bad status line '" + line.substr(0, 80) + "'");
  }
  const std::string code = line.substr(9, 3);
  if (!std::isdigit((unsigned char)code[0]) || !std::isdigit((unsigned char)code[1]) ||
      !std::isdigit((unsigned char)code[2])) {
    return Status::InvalidArgument("bad status code in '" + line.substr(0, 80) + "'");
  }
  status_ = std::atoi(code.c_str());
  while (take_line(&line)) {
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return Status::InvalidArgument("bad header line '" + line.substr(0, 80) + "'");
    headers_.emplace_back(to_lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
  }
  const std::string te = to_lower(header("transfer-encoding"));
  const std::string cl = header("content-length");
  chunked_ = te.find("chunked") != std::string::npos;
  if (status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200)) {
    // 1xx would need another head; we send no Expect, so treat it as bodyless and done.
    state_ = State::kDone;
  } else if (chunked_) {
    state_ = State::kChunkSize;
  } else if (!cl.empty()) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(cl.c_str(), &end, 10);
    if (*end != '\0' || errno != 0) return Status::InvalidArgument("bad Content-Length '" + cl + "'");
    remaining_ = n;
    state_ = n == 0 ? State::kDone : State::kLengthBody;
  } else {
    state_ = State::kEofBody;
  }
  return Status::OK();
}

Status ResponseParser::feed(const char* data, size_t n, const BodySink& sink) {
  if (aborted_ || state_ == State::kDone) return Status::OK();
  size_t pos = 0;
  if (state_ == State::kHeaders) {
    const size_t old = buf_.size();
    buf_.append(data, n);
    size_t end = buf_.find("\r\n\r\n");
    size_t end_len = 4;
    const size_t lf_end = buf_.find("\n\n");
    if (lf_end != std::string::npos && (end == std::string::npos || lf_end < end)) {
      end = lf_end;
      end_len = 2;
    }
    if (end == std::string::npos) {
      if (buf_.size() > kMaxHeaderBytes) return Status::InvalidArgument("response header block over 64 KiB");
      return Status::OK();
    }
    // Bytes of this call that follow the header block are body bytes.
    pos = end + end_len - old;
    buf_.resize(end + end_len);
    Status st = parse_head();
    if (!st.ok()) return st;
    buf_.clear();
  }
  while (pos < n && !aborted_ && state_ != State::kDone) {
    switch (state_) {
      case State::kLengthBody:
      case State::kChunkData: {
        const size_t take = (size_t)std::min<uint64_t>(remaining_, n - pos);
        remaining_ -= take;
        if (!emit(std::string_view(data + pos, take), sink)) return Status::OK();
        pos += take;
        if (remaining_ == 0) state_ = state_ == State::kLengthBody ? State::kDone : State::kChunkDataEnd;
        break;
      }
      case State::kEofBody: {
        if (!emit(std::string_view(data + pos, n - pos), sink)) return Status::OK();
        pos = n;
        break;
      }
      case State::kChunkSize:
      case State::kChunkDataEnd:
      case State::kTrailers: {
        // Line-oriented states: collect bytes up to the next LF.
        const char* lf = static_cast<const char*>(std::memchr(data + pos, '\n', n - pos));
        const size_t upto = lf ? (size_t)(lf - data) + 1 : n;
        buf_.append(data + pos, upto - pos);
        pos = upto;
        if (buf_.size() > kMaxLineBytes) return Status::InvalidArgument("chunk framing line over 8 KiB");
        std::string line;
        if (!take_line(&line)) break;
        if (state_ == State::kChunkDataEnd) {
          if (!line.empty()) return Status::InvalidArgument("chunk data not followed by CRLF");
          state_ = State::kChunkSize;
        } else if (state_ == State::kChunkSize) {
          const std::string size_text = trim(line.substr(0, line.find(';')));
          char* end = nullptr;
          errno = 0;
          const unsigned long long size = std::strtoull(size_text.c_str(), &end, 16);
          if (size_text.empty() || *end != '\0' || errno != 0) {
            return Status::InvalidArgument("bad chunk size '" + line.substr(0, 40) + "'");
          }
          remaining_ = size;
          state_ = size == 0 ? State::kTrailers : State::kChunkData;
        } else if (line.empty()) {  // kTrailers: the blank line ends the message
          state_ = State::kDone;
        }
        break;
      }
      case State::kHeaders:
      case State::kDone:
        break;
    }
  }
  return Status::OK();
}

Status ResponseParser::finish_eof() {
  if (state_ == State::kDone || aborted_) return Status::OK();
  if (state_ == State::kEofBody) {
    state_ = State::kDone;
    return Status::OK();
  }
  if (state_ == State::kHeaders) {
    return Status::Unavailable(buf_.empty() ? "connection closed before any response"
                                            : "connection closed inside the response headers");
  }
  if (state_ == State::kTrailers && buf_.empty()) {
    // The last chunk arrived; a server that closes before the final CRLF lost nothing.
    state_ = State::kDone;
    return Status::OK();
  }
  return Status::Unavailable("connection closed before the end of the response body");
}

// ---- SseParser -----------------------------------------------------------------------------

bool SseParser::on_line(const EventSink& sink) {
  if (line_.empty()) {
    // Blank line: dispatch.
    if (!has_data_) return true;
    std::string data;
    data.swap(data_);
    has_data_ = false;
    ++events_;
    if (!sink(data)) {
      stopped_ = true;
      return false;
    }
    return true;
  }
  if (line_[0] == ':') return true;  // comment, e.g. ": ping"
  const size_t colon = line_.find(':');
  const std::string field = line_.substr(0, colon);
  if (field != "data") return true;  // event:, id:, retry: do not matter here
  std::string value = colon == std::string::npos ? "" : line_.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  if (has_data_) data_ += '\n';
  data_ += value;
  has_data_ = true;
  return true;
}

bool SseParser::feed(std::string_view bytes, const EventSink& sink) {
  if (stopped_) return false;
  for (const char c : bytes) {
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      const bool go_on = on_line(sink);
      line_.clear();
      if (!go_on) return false;
      continue;
    }
    line_ += c;
  }
  return true;
}

double quantile_sorted(const std::vector<double>& values, double q) {
  const double pos = q * (double)(values.size() - 1);
  const size_t lo = (size_t)std::floor(pos);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = pos - (double)lo;
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double union_length(std::vector<std::pair<double, double>> spans) {
  std::sort(spans.begin(), spans.end());
  double total = 0.0;
  for (size_t i = 0; i < spans.size();) {
    const double begin = spans[i].first;
    double end = std::max(spans[i].first, spans[i].second);
    for (++i; i < spans.size() && spans[i].first <= end; ++i) end = std::max(end, spans[i].second);
    total += end - begin;
  }
  return total;
}

}  // namespace rwkv::loadgen
