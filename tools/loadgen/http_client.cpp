#include "tools/loadgen/http_client.h"

namespace rwkv::loadgen {

Result<Endpoints> resolve_endpoints(const Url& url) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  asio::error_code ec;
  const auto results = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return Status::Unavailable("cannot resolve " + url.host + ": " + ec.message());
  Endpoints eps;
  for (const auto& r : results) eps.push_back(r.endpoint());
  if (eps.empty()) return Status::Unavailable("cannot resolve " + url.host + ": no addresses");
  return eps;
}

HttpCall::HttpCall(Strand strand, Endpoints endpoints, Url url)
    : strand_(strand), endpoints_(std::move(endpoints)), url_(std::move(url)), socket_(strand), timer_(strand) {}

void HttpCall::start(const HttpRequest& req, std::chrono::milliseconds timeout, Callbacks cb) {
  const uint64_t gen = ++gen_;
  cb_ = std::move(cb);
  parser_ = ResponseParser();
  timed_out_ = false;
  head_reported_ = false;

  out_ = req.method + " " + req.path + " HTTP/1.1\r\nHost: " + url_.host_header() +
         "\r\nUser-Agent: rwkv-edge-loadgen\r\nConnection: close\r\n";
  for (const auto& [name, value] : req.headers) out_ += name + ": " + value + "\r\n";
  if (!req.body.empty()) out_ += "Content-Type: application/json\r\n";
  if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
    out_ += "Content-Length: " + std::to_string(req.body.size()) + "\r\n";
  }
  out_ += "\r\n";
  out_ += req.body;

  timer_.expires_after(timeout);
  timer_.async_wait([this, gen](const asio::error_code& ec) {
    if (ec || gen != gen_) return;
    // Closing the socket makes the pending operation fail; its handler reports kTimeout.
    timed_out_ = true;
    asio::error_code ignored;
    socket_.close(ignored);
  });
  asio::async_connect(socket_, endpoints_, [this, gen](const asio::error_code& ec, const asio::ip::tcp::endpoint&) {
    on_connect(gen, ec);
  });
}

void HttpCall::on_connect(uint64_t gen, const asio::error_code& ec) {
  if (ec) return finish(failure_kind(), timed_out_ ? "timeout while connecting" : "connect: " + ec.message());
  asio::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  asio::async_write(socket_, asio::buffer(out_),
                    [this, gen](const asio::error_code& wec, size_t) { on_write(gen, wec); });
}

void HttpCall::on_write(uint64_t gen, const asio::error_code& ec) {
  if (ec) return finish(failure_kind(), timed_out_ ? "timeout while sending" : "send: " + ec.message());
  read_more(gen);
}

void HttpCall::read_more(uint64_t gen) {
  socket_.async_read_some(asio::buffer(in_),
                          [this, gen](const asio::error_code& ec, size_t n) { on_read(gen, ec, n); });
}

bool HttpCall::sink(std::string_view piece) {
  report_head();
  return cb_.on_body ? cb_.on_body(piece) : true;
}

void HttpCall::report_head() {
  if (head_reported_ || !parser_.headers_done()) return;
  head_reported_ = true;
  if (cb_.on_head) cb_.on_head(parser_);
}

void HttpCall::on_read(uint64_t gen, const asio::error_code& ec, size_t n) {
  const ResponseParser::BodySink body = [this](std::string_view piece) { return sink(piece); };
  if (n > 0) {
    Status st = parser_.feed(in_.data(), n, body);
    if (!st.ok()) return finish(CallEnd::kTransport, "bad response: " + st.message());
    report_head();
    if (parser_.aborted()) return finish(CallEnd::kAborted, "");
    if (parser_.complete()) return finish(CallEnd::kComplete, "");
  }
  if (ec == asio::error::eof) {
    Status st = parser_.finish_eof();
    report_head();
    if (!st.ok()) return finish(CallEnd::kTransport, st.message());
    return finish(CallEnd::kComplete, "");
  }
  if (ec) {
    return finish(failure_kind(), timed_out_ ? "timeout while receiving" : "receive: " + ec.message());
  }
  read_more(gen);
}

void HttpCall::finish(CallEnd end, std::string error) {
  ++gen_;  // the timer handler, if already queued, now sees a stale generation
  timer_.cancel();
  asio::error_code ignored;
  if (end == CallEnd::kAborted) {
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  }
  socket_.close(ignored);
  // on_done may start the next exchange, which resets cb_ and parser_.
  Callbacks cb = std::move(cb_);
  cb_ = Callbacks();
  ResponseParser parser = std::move(parser_);
  parser_ = ResponseParser();
  if (cb.on_done) cb.on_done(CallResult{end, std::move(error)}, parser);
}

Result<FetchResult> http_fetch(const Url& url, const HttpRequest& req, std::chrono::milliseconds timeout) {
  Result<Endpoints> eps = resolve_endpoints(url);
  if (!eps.ok()) return eps.status();
  asio::io_context io;
  Strand strand = asio::make_strand(io);
  HttpCall call(strand, eps.value(), url);
  FetchResult out;
  CallResult result;
  HttpCall::Callbacks cb;
  cb.on_body = [&out](std::string_view piece) {
    // One-off fetches are small; cap them so a runaway body cannot eat memory.
    if (out.body.size() < (16u << 20)) out.body.append(piece);
    return true;
  };
  cb.on_done = [&](const CallResult& r, const ResponseParser& p) {
    result = r;
    out.status = p.status();
    out.headers = p.headers();
  };
  asio::post(strand, [&] { call.start(req, timeout, cb); });
  asio::error_code ec;
  io.run(ec);
  if (ec) return Status::Internal("io_context: " + ec.message());
  if (result.end == CallEnd::kTimeout) return Status::Unavailable(url.host_header() + req.path + ": " + result.error);
  if (result.end != CallEnd::kComplete) {
    return Status::Unavailable(url.host_header() + req.path + ": " + result.error);
  }
  return out;
}

}  // namespace rwkv::loadgen
