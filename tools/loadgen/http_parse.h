// Pure HTTP/1.1 and SSE parsing for the load generator: no sockets, no clocks.
//
//   Result<Url> u = parse_url("http://127.0.0.1:8080/v1");
//   ResponseParser rp;
//   rp.feed(bytes, n, [&](std::string_view body) { sse.feed(body, on_event); return true; });
//   if (rp.complete()) ...
//
// Everything here is single-threaded value code; each object belongs to one request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::loadgen {

// A parsed "http://host[:port][/path]" URL. https is refused (the load generator speaks plain TCP).
struct Url {
  std::string host;        // without brackets for IPv6 literals ("::1")
  uint16_t port = 80;      // Default: 80
  std::string path = "/";  // always starts with '/'; may carry a query

  // "host:port", with brackets around IPv6 literals: the value of the Host header.
  std::string host_header() const;
};

// InvalidArgument for anything but http://; Unsupported for https://.
Result<Url> parse_url(const std::string& text);

// The server root of a URL: its path with a trailing "/", "/v1", "/v1/completions" or
// "/v1/chat/completions" removed, so "http://h:1/v1" and "http://h:1/" both give "" and
// "http://h:1/proxy/v1" gives "/proxy". The API paths are `api_root(u) + "/v1/..."`.
std::string api_root(const Url& u);

// The value of the Retry-After header in seconds (delta-seconds form only); -1 when absent or
// not a number.
double retry_after_seconds(const std::vector<std::pair<std::string, std::string>>& headers);

// An incremental HTTP/1.1 response parser: status line, headers, then a body framed by
// Transfer-Encoding: chunked, Content-Length, or the end of the connection.
class ResponseParser {
 public:
  // Called with each piece of decoded body; returning false stops parsing (the caller is
  // abandoning the response, e.g. a deliberate client disconnect).
  using BodySink = std::function<bool(std::string_view)>;

  // Feeds received bytes. Returns InvalidArgument on a malformed response (bad status line,
  // bad chunk size, header block over 64 KiB). Bytes after the end of the message are ignored.
  Status feed(const char* data, size_t n, const BodySink& sink);
  // Call when the peer closed the connection. OK when that ends the message (close-delimited
  // body); Unavailable("connection closed ...") when the message was cut short.
  Status finish_eof();

  bool headers_done() const { return state_ > State::kHeaders; }
  bool complete() const { return state_ == State::kDone; }
  bool aborted() const { return aborted_; }
  int status() const { return status_; }
  // Header names lower-cased, values trimmed, in arrival order.
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }
  // The first header with this (lower-case) name, or "" when absent.
  std::string header(const std::string& lower_name) const;
  bool chunked() const { return chunked_; }

 private:
  enum class State { kHeaders, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kLengthBody, kEofBody, kDone };
  Status parse_head();
  // Consumes one line (without CR LF) from buf_ into *line; false when no full line yet.
  bool take_line(std::string* line);
  bool emit(std::string_view piece, const BodySink& sink);

  State state_ = State::kHeaders;
  std::string buf_;  // unconsumed bytes (headers, chunk-size lines)
  int status_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  bool chunked_ = false;
  bool aborted_ = false;
  uint64_t remaining_ = 0;  // bytes left in the current chunk or Content-Length body
};

// An incremental text/event-stream parser (the WHATWG rules: lines end in LF, CR LF or CR;
// "data:" lines accumulate; an empty line dispatches; lines starting with ':' are comments;
// other fields are ignored).
class SseParser {
 public:
  // Called with the data of each event (several data lines joined by '\n'); returning false
  // stops parsing for good.
  using EventSink = std::function<bool(const std::string& data)>;

  // Returns false once a sink call returned false.
  bool feed(std::string_view bytes, const EventSink& sink);
  // Events seen so far that carried data.
  int64_t events() const { return events_; }

 private:
  bool on_line(const EventSink& sink);

  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool after_cr_ = false;  // the previous byte was CR: a following LF belongs to it
  bool stopped_ = false;
  int64_t events_ = 0;
};

// The q-quantile (0..1) of the values by linear interpolation between order statistics (numpy's
// default). REQUIRES: values sorted ascending and non-empty.
double quantile_sorted(const std::vector<double>& values, double q);

// Total length of the union of [begin, end] spans (seconds, any order; overlapping and
// touching spans count once; spans with end < begin count as empty).
double union_length(std::vector<std::pair<double, double>> spans);

}  // namespace rwkv::loadgen
