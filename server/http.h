// A small HTTP server interface; http.cpp is the only file that includes httplib.h.
//
//   HttpServer http;
//   http.route("GET", "/health", [](const HttpRequest& req, HttpResponse& res) { res.body = "{}"; });
//   Result<int> port = http.bind("127.0.0.1", 8080);  // 0 picks a free port
//   http.run();                                        // blocks until stop()
//
// Handlers run on the server's worker threads. A handler that sets `res.stream` sends the status
// and headers at once and then calls the stream function on the same worker thread; writes
// return false once the client is gone.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::server {

struct HttpRequest {
  std::string method;
  std::string path;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::vector<std::string> matches;            // regex groups of the route pattern
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Writes and flushes; false once the client has disconnected.
  virtual bool write(const std::string& data) = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<void(StreamWriter&)> stream;  // set for streaming responses
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;

struct HttpOptions {
  size_t max_body_bytes = 1u << 20;  // larger bodies get 413
  int threads = 64;                  // worker threads (one per open connection)
  int read_timeout_s = 30;
  int write_timeout_s = 30;
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions opt);
  ~HttpServer();
  // `pattern` is a regex over the path (full match); groups go to HttpRequest::matches.
  void route(const std::string& method, const std::string& pattern, HttpHandler h);
  // Body for error statuses the HTTP layer produces itself (404 route, 413, 400 bad request).
  void set_error_body(std::function<std::string(int status)> f);
  // Binds; returns the port (useful with port 0). IOError if the address is taken.
  Result<int> bind(const std::string& host, int port);
  // Serves until stop(). REQUIRES: bind() succeeded.
  void run();
  // Stops accepting and returns once run() is winding down; safe from any thread. If run()
  // has not started yet, waits (up to a few seconds) for it to start, so the stop is not lost.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwkv::server
