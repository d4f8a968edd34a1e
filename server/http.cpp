#include "server/http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>

namespace rwkv::server {

struct HttpServer::Impl {
  HttpOptions opt;
  httplib::Server svr;
  std::function<std::string(int)> error_body;
  int last_socket = -1;  // the socket of the latest bind attempt
};

namespace {

// Debian's cpp-httplib is a compiled library that listens with a backlog of 5: a burst of
// clients connecting at once (8 loadgen workers, a page of LAN clients) overflowed the accept
// queue, the kernel dropped their SYNs and TCP retried them only after 1 s. Linux lets listen()
// be called again on a listening socket to change its backlog (capped at net.core.somaxconn).
constexpr int kListenBacklog = 1024;

class SinkWriter : public StreamWriter {
 public:
  explicit SinkWriter(httplib::DataSink& sink) : sink_(sink) {}
  bool write(const std::string& data) override {
    if (!ok_) return false;
    if (sink_.is_writable && !sink_.is_writable()) {
      ok_ = false;
      return false;
    }
    ok_ = sink_.write(data.data(), data.size());
    return ok_;
  }
  bool ok() const { return ok_; }

 private:
  httplib::DataSink& sink_;
  bool ok_ = true;
};

}  // namespace

HttpServer::HttpServer(HttpOptions opt) : impl_(std::make_unique<Impl>()) {
  impl_->opt = opt;
  const int threads = std::max(4, opt.threads);
  impl_->svr.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
  impl_->svr.set_socket_options([impl = impl_.get()](socket_t sock) {
    httplib::default_socket_options(sock);
    impl->last_socket = sock;
  });
  impl_->svr.set_payload_max_length(opt.max_body_bytes);
  impl_->svr.set_read_timeout(opt.read_timeout_s, 0);
  impl_->svr.set_write_timeout(opt.write_timeout_s, 0);
  impl_->svr.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty() || !impl_->error_body) return;
    res.set_content(impl_->error_body(res.status), "application/json");
  });
  impl_->svr.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(impl_->error_body ? impl_->error_body(500) : "", "application/json");
  });
}

HttpServer::~HttpServer() = default;

void HttpServer::set_error_body(std::function<std::string(int)> f) { impl_->error_body = std::move(f); }

void HttpServer::route(const std::string& method, const std::string& pattern, HttpHandler h) {
  auto wrapped = [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.method = req.method;
    r.path = req.path;
    r.body = req.body;
    for (const auto& [k, v] : req.headers) {
      std::string lk = k;
      std::transform(lk.begin(), lk.end(), lk.begin(), [](unsigned char c) { return (char)std::tolower(c); });
      r.headers[lk] = v;
    }
    for (size_t i = 1; i < req.matches.size(); ++i) r.matches.push_back(req.matches[i].str());
    auto out = std::make_shared<HttpResponse>();
    h(r, *out);
    res.status = out->status;
    for (const auto& [k, v] : out->headers) res.set_header(k, v);
    if (!out->stream) {
      res.set_content(out->body, out->content_type.c_str());
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(out->content_type.c_str(), [out](size_t, httplib::DataSink& sink) {
      SinkWriter w(sink);
      out->stream(w);
      if (w.ok()) sink.done();
      return w.ok();
    });
  };
  if (method == "GET") impl_->svr.Get(pattern, wrapped);
  else if (method == "POST") impl_->svr.Post(pattern, wrapped);
  else if (method == "DELETE") impl_->svr.Delete(pattern, wrapped);
  else if (method == "PUT") impl_->svr.Put(pattern, wrapped);
}

Result<int> HttpServer::bind(const std::string& host, int port) {
  int bound = -1;
  if (port == 0) {
    bound = impl_->svr.bind_to_any_port(host);
  } else {
    bound = impl_->svr.bind_to_port(host, port) ? port : -1;
  }
  if (bound < 0) {
    return Status::IOError("cannot listen on " + host + ":" + std::to_string(port) + " (address in use or not local?)");
  }
  // The bound socket is the last one created (a failed attempt's socket is closed before the
  // next is made); check that it is the listening one before widening its queue.
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (impl_->last_socket >= 0 && getsockopt(impl_->last_socket, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 &&
      accepting != 0) {
    ::listen(impl_->last_socket, kListenBacklog);
  }
  return bound;
}

void HttpServer::run() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() {
  for (int i = 0; i < 500 && !impl_->svr.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->svr.stop();
}

}  // namespace rwkv::server
