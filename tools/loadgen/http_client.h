// One HTTP/1.1 exchange over a fresh TCP connection, driven by Asio: connect, send, stream the
// response body to a callback, close. No keep-alive, no TLS, no redirects.
//
//   asio::io_context io;
//   auto strand = asio::make_strand(io);
//   HttpCall call(strand, endpoints, url);
//   asio::post(strand, [&] { call.start(req, std::chrono::seconds(30), callbacks); });
//   io.run();
//
// Thread-safety: an HttpCall and its callbacks run on its strand; start() must be called on that
// strand (or before the io_context runs). One exchange at a time per HttpCall.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <asio.hpp>

#include "engine/common/status.h"
#include "tools/loadgen/http_parse.h"

namespace rwkv::loadgen {

using Endpoints = std::vector<asio::ip::tcp::endpoint>;
using Strand = asio::strand<asio::io_context::executor_type>;

// Resolves the URL's host and port (blocking). Unavailable when the name does not resolve.
Result<Endpoints> resolve_endpoints(const Url& url);

struct HttpRequest {
  std::string method = "GET";
  std::string path = "/";  // origin-form, e.g. "/v1/completions"
  // Extra headers. Host, Connection: close, Content-Length and (with a body) Content-Type:
  // application/json are added by HttpCall.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

enum class CallEnd {
  kComplete,   // the whole response arrived
  kAborted,    // the body callback returned false; the client closed the connection
  kTransport,  // connect / send / receive failed, the peer closed early, or the response was malformed
  kTimeout,    // the whole exchange took longer than the timeout
};

struct CallResult {
  CallEnd end = CallEnd::kComplete;
  std::string error;  // why, for kTransport and kTimeout
};

class HttpCall {
 public:
  struct Callbacks {
    // Once, as soon as the status line and headers are parsed (before any body bytes).
    std::function<void(const ResponseParser&)> on_head;
    // Decoded body bytes; return false to close the connection (ends as kAborted).
    ResponseParser::BodySink on_body;
    // Exactly once per start(). May call start() again for the next exchange.
    std::function<void(const CallResult&, const ResponseParser&)> on_done;
  };

  HttpCall(Strand strand, Endpoints endpoints, Url url);
  HttpCall(const HttpCall&) = delete;
  HttpCall& operator=(const HttpCall&) = delete;

  // Starts one exchange. REQUIRES: on the strand; the previous exchange has ended.
  void start(const HttpRequest& req, std::chrono::milliseconds timeout, Callbacks cb);

 private:
  void on_connect(uint64_t gen, const asio::error_code& ec);
  void on_write(uint64_t gen, const asio::error_code& ec);
  void read_more(uint64_t gen);
  void on_read(uint64_t gen, const asio::error_code& ec, size_t n);
  bool sink(std::string_view piece);
  void report_head();
  void finish(CallEnd end, std::string error);
  CallEnd failure_kind() const { return timed_out_ ? CallEnd::kTimeout : CallEnd::kTransport; }

  // Constant after construction.
  Strand strand_;
  const Endpoints endpoints_;
  const Url url_;

  // Touched only on strand_.
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  uint64_t gen_ = 0;  // bumped per exchange so stale timer handlers do nothing
  bool timed_out_ = false;
  bool head_reported_ = false;
  std::string out_;
  std::array<char, 16384> in_{};
  ResponseParser parser_;
  Callbacks cb_;
};

// A whole response, for one-off requests (health checks, /v1/models, session setup).
struct FetchResult {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Runs one exchange on a private io_context and waits for it. Unavailable on transport errors
// and timeouts (message says which); any HTTP status is a successful fetch.
Result<FetchResult> http_fetch(const Url& url, const HttpRequest& req, std::chrono::milliseconds timeout);

}  // namespace rwkv::loadgen
