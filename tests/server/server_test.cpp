// Black-box tests of `rwkv-edge serve` on loopback: the OpenAI endpoints, SSE framing,
// sessions (continuation, isolation, eviction to disk, restart), every error status, drain.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/formats/model_file.h"
#include "engine/model.h"
#include "server/session_store.h"
#include "tests/server/server_process.h"

namespace rwkv {
namespace {

using json = nlohmann::json;

// The tiny v5.2 model as a GGUF with the byte tokenizer, made once per test binary run.
const std::string& tiny_gguf() {
  static test::TempDir* dir = new test::TempDir();  // lives for the whole run
  static std::string path = [] {
    Result<ModelFile> mf = open_model_file(test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin"));
    REQUIRE(mf.ok());
    GgufWriteOptions opt;
    opt.keep_types = true;
    const std::string p = dir->file("tiny.gguf");
    REQUIRE(write_gguf(mf.value(), p, opt).ok());
    return p;
  }();
  return path;
}

struct Sse {
  std::vector<json> chunks;
  bool done = false;       // saw data: [DONE] as its own event
  bool well_framed = true;  // every event is exactly one "data: ..." line
};

Sse parse_sse(const std::string& body) {
  Sse s;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      s.well_framed = false;
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind(":", 0) == 0) continue;  // comment / ping
    if (ev.rfind("data: ", 0) != 0 || ev.find('\n') != std::string::npos) {
      s.well_framed = false;
      continue;
    }
    const std::string data = ev.substr(6);
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    if (s.done) s.well_framed = false;  // nothing after [DONE]
    s.chunks.push_back(json::parse(data));
  }
  return s;
}

json post(httplib::Client& c, const std::string& path, const json& body, const httplib::Headers& h = {}) {
  auto r = c.Post(path.c_str(), h, body.dump(), "application/json");
  REQUIRE(r);
  json j = json::parse(r->body);
  j["_status"] = r->status;
  return j;
}

// POSTs and hands the streamed body to `on_data` as it arrives; returning false hangs up.
void post_stream(httplib::Client& c, const std::string& path, const json& body,
                 std::function<bool(const char*, size_t)> on_data) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [on_data](const char* data, size_t n, uint64_t, uint64_t) { return on_data(data, n); };
  c.send(req);
}

std::string completion_text(const json& j) { return j["choices"][0]["text"].get<std::string>(); }

std::string new_session(httplib::Client& c, const httplib::Headers& h = {}) {
  auto r = c.Post("/v1/sessions", h, "{}", "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 201);
  return json::parse(r->body)["id"].get<std::string>();
}

// The real server on the tiny model with its state in dir, plus `extra` arguments; ready.
std::unique_ptr<test::ServerProcess> serve_tiny(const test::TempDir& dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--model", tiny_gguf(), "--state-dir", dir.file("state")};
  args.insert(args.end(), extra.begin(), extra.end());
  auto srv = std::make_unique<test::ServerProcess>(args, dir.file("log"));
  REQUIRE(srv->wait_ready());
  return srv;
}

}  // namespace

TEST_CASE("completions and chat, streaming and not") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", dir.file("state")}, dir.file("log"));
  REQUIRE(srv.wait_ready());
  httplib::Client c = srv.client();

  auto models = c.Get("/v1/models");
  REQUIRE(models);
  CHECK(models->status == 200);
  const json m = json::parse(models->body);
  CHECK(m["object"] == "list");
  const std::string model_id = m["data"][0]["id"];

  json r = post(c, "/v1/completions", {{"model", model_id}, {"prompt", "First Citizen:"}, {"max_tokens", 12}, {"temperature", 0}});
  CHECK(r["_status"] == 200);
  CHECK(r["object"] == "text_completion");
  CHECK(r["choices"][0]["finish_reason"] == "length");
  CHECK(r["usage"]["completion_tokens"] == 12);
  CHECK(r["usage"]["prompt_tokens"] == 14);
  CHECK(completion_text(r).size() == 12);  // byte tokenizer: one byte per token

  // Streaming completion: same greedy text, chunked.
  auto sr = c.Post("/v1/completions", json({{"prompt", "First Citizen:"}, {"max_tokens", 12}, {"temperature", 0}, {"stream", true}}).dump(),
                   "application/json");
  REQUIRE(sr);
  CHECK(sr->status == 200);
  CHECK(sr->get_header_value("Content-Type").find("text/event-stream") == 0);
  Sse s = parse_sse(sr->body);
  CHECK(s.well_framed);
  CHECK(s.done);
  std::string streamed;
  for (const json& ch : s.chunks) streamed += ch["choices"][0]["text"].get<std::string>();
  CHECK(streamed == completion_text(r));
  CHECK(s.chunks.back()["choices"][0]["finish_reason"] == "length");

  // Chat, not streaming.
  json chat = post(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 8}});
  CHECK(chat["_status"] == 200);
  CHECK(chat["object"] == "chat.completion");
  CHECK(chat["choices"][0]["message"]["role"] == "assistant");
  CHECK(chat["choices"][0]["message"]["content"].is_string());

  // Chat, streaming with usage.
  auto cs = c.Post("/v1/chat/completions",
                   json({{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 8}, {"stream", true},
                         {"stream_options", {{"include_usage", true}}}})
                       .dump(),
                   "application/json");
  REQUIRE(cs);
  Sse cse = parse_sse(cs->body);
  CHECK(cse.well_framed);
  CHECK(cse.done);
  REQUIRE(cse.chunks.size() >= 3);
  CHECK(cse.chunks.front()["choices"][0]["delta"]["role"] == "assistant");
  const json& fin = cse.chunks[cse.chunks.size() - 2];
  CHECK(fin["choices"][0]["finish_reason"].is_string());
  CHECK(cse.chunks.back()["choices"].empty());
  CHECK(cse.chunks.back()["usage"]["total_tokens"].get<int>() > 0);

  // Health and metrics.
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  auto met = c.Get("/metrics");
  REQUIRE(met);
  CHECK(met->body.find("rwkv_edge_generated_tokens_total") != std::string::npos);
  CHECK(met->body.find("rwkv_edge_queue_depth") != std::string::npos);
}

TEST_CASE("a session continued over several requests equals one long request (greedy)") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", dir.file("state")}, dir.file("log"));
  REQUIRE(srv.wait_ready());
  httplib::Client c = srv.client();
  // One long request.
  const json whole = post(c, "/v1/completions", {{"prompt", "First Citizen:"}, {"max_tokens", 30}, {"temperature", 0}});
  const std::string want = completion_text(whole);
  REQUIRE(want.size() == 30);
  // The same in a session, three requests of 10 tokens; follow-ups send no new text.
  const std::string sid = new_session(c);
  std::string got = completion_text(post(c, "/v1/completions", {{"session_id", sid}, {"prompt", "First Citizen:"}, {"max_tokens", 10}, {"temperature", 0}}));
  got += completion_text(post(c, "/v1/completions", {{"max_tokens", 10}, {"temperature", 0}}, {{"X-Session-Id", sid}}));
  json third = post(c, "/v1/completions", {{"session_id", sid}, {"max_tokens", 10}, {"temperature", 0}});
  got += completion_text(third);
  CHECK(got == want);
  CHECK(third["usage"]["prompt_tokens"] == 0);  // a follow-up costs only its new tokens
  // New text in the session: equals one request over the concatenated token ids.
  const std::vector<int> a = {70, 105, 114, 115, 116}, b = {32, 67, 105, 116};
  const std::string sid2 = new_session(c);
  const std::string g1 = completion_text(post(c, "/v1/completions", {{"session_id", sid2}, {"prompt", a}, {"max_tokens", 5}, {"temperature", 0}}));
  const std::string g2 = completion_text(post(c, "/v1/completions", {{"session_id", sid2}, {"prompt", b}, {"max_tokens", 5}, {"temperature", 0}}));
  std::vector<int> all = a;
  for (unsigned char ch : g1) all.push_back(ch);
  all.insert(all.end(), b.begin(), b.end());
  const std::string ref = completion_text(post(c, "/v1/completions", {{"prompt", all}, {"max_tokens", 5}, {"temperature", 0}}));
  CHECK(g2 == ref);
  auto info = c.Get(("/v1/sessions/" + sid2).c_str());
  REQUIRE(info);
  CHECK(json::parse(info->body)["tokens"] == 5 + 5 + 4 + 5);
}

TEST_CASE("sessions belong to their API key; evicted and restarted sessions continue identically") {
  test::TempDir dir;
  const std::string state = dir.file("state");
  const httplib::Headers ka = {{"Authorization", "Bearer key-a"}}, kb = {{"Authorization", "Bearer key-b"}};
  std::string want;
  std::string s1, s2;
  {
    test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", state, "--api-key", "key-a", "--api-key", "key-b",
                             "--max-sessions", "1"},
                            dir.file("log1"));
    REQUIRE(srv.wait_ready());
    httplib::Client c = srv.client();
    want = completion_text(post(c, "/v1/completions", {{"prompt", "Before we proceed"}, {"max_tokens", 24}, {"temperature", 0}}, ka));
    s1 = new_session(c, ka);
    CHECK(completion_text(post(c, "/v1/completions", {{"session_id", s1}, {"prompt", "Before we proceed"}, {"max_tokens", 8}, {"temperature", 0}}, ka)) ==
          want.substr(0, 8));
    // Another key cannot see it.
    CHECK(post(c, "/v1/completions", {{"session_id", s1}, {"max_tokens", 2}}, kb)["_status"] == 404);
    auto g = c.Get(("/v1/sessions/" + s1).c_str(), kb);
    REQUIRE(g);
    CHECK(g->status == 404);
    auto d = c.Delete(("/v1/sessions/" + s1).c_str(), kb);
    REQUIRE(d);
    CHECK(d->status == 404);
    // A second session pushes s1 out of memory (--max-sessions 1) onto disk.
    s2 = new_session(c, ka);
    post(c, "/v1/completions", {{"session_id", s2}, {"prompt", "x"}, {"max_tokens", 2}}, ka);
    auto info = c.Get(("/v1/sessions/" + s1).c_str(), ka);
    REQUIRE(info);
    CHECK(info->status == 200);
    CHECK(completion_text(post(c, "/v1/completions", {{"session_id", s1}, {"max_tokens", 8}, {"temperature", 0}}, ka)) ==
          want.substr(8, 8));
    auto m = c.Get("/metrics", ka);
    REQUIRE(m);
    CHECK(m->body.find("rwkv_edge_session_evictions_total 0\n") == std::string::npos);
    CHECK(srv.terminate() == 0);
  }
  {
    // After a clean restart the session carries on where it stopped.
    test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", state, "--api-key", "key-a", "--api-key", "key-b"},
                            dir.file("log2"));
    REQUIRE(srv.wait_ready());
    httplib::Client c = srv.client();
    CHECK(completion_text(post(c, "/v1/completions", {{"session_id", s1}, {"max_tokens", 8}, {"temperature", 0}}, ka)) ==
          want.substr(16, 8));
    CHECK(post(c, "/v1/completions", {{"session_id", s1}, {"max_tokens", 2}}, kb)["_status"] == 404);
    CHECK(srv.terminate() == 0);
  }
}

TEST_CASE("every error case returns its status and OpenAI error JSON") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", dir.file("state"), "--api-key", "k",
                           "--max-tokens-limit", "100", "--max-prompt-tokens", "50", "--max-body-bytes", "4096"},
                          dir.file("log"));
  REQUIRE(srv.wait_ready());
  httplib::Client c = srv.client();
  const httplib::Headers k = {{"Authorization", "Bearer k"}};
  auto expect = [&](const std::string& path, const std::string& body, int status, const std::string& param,
                    const httplib::Headers& h) {
    CAPTURE(body);
    auto r = c.Post(path.c_str(), h, body, "application/json");
    REQUIRE(r);
    CHECK(r->status == status);
    const json j = json::parse(r->body, nullptr, false);
    REQUIRE(!j.is_discarded());
    REQUIRE(j.contains("error"));
    CHECK(j["error"]["message"].is_string());
    CHECK(j["error"]["type"].is_string());
    CHECK(j["error"].contains("param"));
    CHECK(j["error"].contains("code"));
    if (!param.empty()) CHECK(j["error"]["param"] == param);
  };
  const std::string cp = "/v1/completions";
  expect(cp, "{not json", 400, "", k);
  expect(cp, "[1,2]", 400, "", k);
  expect(cp, R"({"prompt":"a","max_tokens":"ten"})", 400, "max_tokens", k);
  expect(cp, R"({"prompt":"a","max_tokens":0})", 400, "max_tokens", k);
  expect(cp, R"({"prompt":"a","max_tokens":101})", 400, "max_tokens", k);
  expect(cp, R"({"prompt":"a","temperature":-0.5})", 400, "temperature", k);
  expect(cp, R"({"prompt":"a","top_p":1.5})", 400, "top_p", k);
  expect(cp, R"({"prompt":"a","top_p":0})", 400, "top_p", k);
  expect(cp, R"({"prompt":"a","n":2})", 400, "n", k);
  expect(cp, R"({"prompt":"a","stream":"yes"})", 400, "stream", k);
  expect(cp, R"({"prompt":123})", 400, "prompt", k);
  expect(cp, R"({"prompt":[1,2,99999]})", 400, "prompt", k);
  expect(cp, R"({"model":"gpt-4","prompt":"a"})", 404, "model", k);
  expect(cp, "{\"prompt\":\"" + std::string(60, 'a') + "\"}", 400, "prompt", k);  // 60 tokens > 50
  expect(cp, std::string("{\"prompt\":\"a\xff\xfe\"}"), 400, "", k);             // invalid UTF-8
  expect(cp, "{\"prompt\":\"" + std::string(5000, 'a') + "\"}", 413, "", k);     // body > 4096
  expect(cp, R"({"prompt":"a"})", 401, "", {});
  expect(cp, R"({"prompt":"a"})", 401, "", {{"Authorization", "Bearer wrong"}});
  expect(cp, R"({"prompt":"a","session_id":"sess_doesnotexist"})", 404, "session_id", k);
  expect("/v1/chat/completions", R"({"messages":"hi"})", 400, "messages", k);
  expect("/v1/chat/completions", R"({"messages":[{"role":"wizard","content":"x"}]})", 400, "messages[0].role", k);
  auto g = c.Get("/v1/sessions/sess_nope", k);
  REQUIRE(g);
  CHECK(g->status == 404);
  auto nf = c.Get("/v1/nothing", k);
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(json::parse(nf->body).contains("error"));
  // /health needs no key.
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  // The server survived all of it.
  CHECK(post(c, cp, {{"prompt", "ok"}, {"max_tokens", 2}}, k)["_status"] == 200);
}

TEST_CASE("a full queue answers 429 with Retry-After; SIGTERM ends open streams and exits 0") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", dir.file("state"), "--max-batch", "1", "--max-queue", "0",
                           "--max-tokens-limit", "100000", "--drain-seconds", "1"},
                          dir.file("log"));
  REQUIRE(srv.wait_ready());
  std::atomic<bool> got_first{false};
  std::string body;
  std::thread streamer([&] {
    httplib::Client c = srv.client();
    post_stream(c, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 100000}, {"stream", true}},
                [&](const char* data, size_t n) {
                  body.append(data, n);
                  got_first = true;
                  return true;
                });
  });
  while (!got_first) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  httplib::Client c = srv.client();
  auto r = c.Post("/v1/completions", json({{"prompt", "b"}, {"max_tokens", 5}}).dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 429);
  CHECK(r->get_header_value("Retry-After") == "1");
  CHECK(json::parse(r->body)["error"]["type"] == "rate_limit_error");
  CHECK(srv.terminate() == 0);
  streamer.join();
  const Sse s = parse_sse(body);
  CAPTURE(body.size());
  CAPTURE(body.substr(body.size() > 400 ? body.size() - 400 : 0));
  CHECK(s.well_framed);
  CHECK(s.done);
  REQUIRE(!s.chunks.empty());
  CHECK(s.chunks.back()["choices"][0]["finish_reason"] == "length");
}

TEST_CASE("a client that disconnects mid-stream frees its session, which stays usable") {
  test::TempDir dir;
  auto server = serve_tiny(dir, {"--max-tokens-limit", "100000"});
  test::ServerProcess& srv = *server;
  httplib::Client c = srv.client();
  const std::string sid = new_session(c);
  int events = 0;
  {
    httplib::Client sc = srv.client();
    post_stream(sc, "/v1/completions", {{"session_id", sid}, {"prompt", "First"}, {"max_tokens", 100000}, {"stream", true}},
                [&](const char*, size_t) { return ++events < 5; });  // hang up after 5 reads
  }
  // The scheduler notices at the next write and releases the session.
  json r;
  for (int i = 0; i < 100; ++i) {
    r = post(c, "/v1/completions", {{"session_id", sid}, {"prompt", "!"}, {"max_tokens", 3}});
    if (r["_status"] != 409) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(r["_status"] == 200);
  auto info = c.Get(("/v1/sessions/" + sid).c_str());
  REQUIRE(info);
  const int64_t tokens = json::parse(info->body)["tokens"];
  // History = "First" (5) + what was delivered (< 100000) + "!" (1) + 3 generated.
  CHECK(tokens >= 9);
  CHECK(tokens < 1000);
  auto m = c.Get("/metrics");
  REQUIRE(m);
  CHECK(m->body.find("rwkv_edge_requests_cancelled_total 1") != std::string::npos);
}

}  // namespace rwkv

namespace rwkv {

TEST_CASE("a seed makes sampling reproducible; without one requests differ") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", tiny_gguf(), "--state-dir", dir.file("state")}, dir.file("log"));
  REQUIRE(srv.wait_ready());
  httplib::Client c = srv.client();
  const json req = {{"prompt", "First Citizen:"}, {"max_tokens", 40}, {"temperature", 1.0}};
  json seeded = req;
  seeded["seed"] = 1234;
  CHECK(completion_text(post(c, "/v1/completions", seeded)) == completion_text(post(c, "/v1/completions", seeded)));
  CHECK(completion_text(post(c, "/v1/completions", req)) != completion_text(post(c, "/v1/completions", req)));
}

}  // namespace rwkv

namespace rwkv {

TEST_CASE("a model that cannot be loaded ends the server with exit code 1") {
  test::TempDir dir;
  test::ServerProcess srv({"--model", dir.file("missing.gguf"), "--state-dir", dir.file("state")}, dir.file("log"));
  CHECK_FALSE(srv.wait_ready(10));
  CHECK(srv.terminate(10) == 1);
}

}  // namespace rwkv

namespace rwkv {

// A burst of clients connecting at once (8 loadgen workers, a page of LAN clients) must all be
// accepted at once: with a listen backlog of 5 (cpp-httplib's default) the kernel dropped the
// SYNs beyond the queue and those clients waited for TCP's 1 s retransmission.
TEST_CASE("a burst of simultaneous connections is accepted without SYN drops") {
  test::TempDir dir;
  auto server = serve_tiny(dir);
  test::ServerProcess& srv = *server;
  constexpr int kClients = 128;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)srv.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<pollfd> fds;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kClients; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    REQUIRE(fd >= 0);
    const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    REQUIRE((rc == 0 || errno == EINPROGRESS));
    fds.push_back(pollfd{fd, POLLOUT, 0});
  }
  // Every handshake completes in the kernel when the accept queue has room; a dropped SYN is
  // retried after 1 s. Wait up to 3 s and see how long the slowest took.
  int pending = kClients;
  while (pending > 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
    std::vector<pollfd> wait;
    for (const pollfd& p : fds) {
      if (p.events != 0) wait.push_back(p);
    }
    if (poll(wait.data(), wait.size(), 50) <= 0) continue;
    for (const pollfd& w : wait) {
      if (w.revents == 0) continue;
      for (pollfd& p : fds) {
        if (p.fd == w.fd && p.events != 0) {
          int err = 0;
          socklen_t len = sizeof err;
          getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len);
          CHECK(err == 0);
          p.events = 0;
          --pending;
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const pollfd& p : fds) close(p.fd);
  CHECK(pending == 0);
  CHECK(secs < 0.9);  // under TCP's 1 s SYN retransmission
  // And the server still answers.
  httplib::Client c = srv.client();
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
}

}  // namespace rwkv

namespace rwkv {

TEST_CASE("sessions idle past the TTL are deleted from memory and from the state directory") {
  test::TempDir dir;
  auto m = Model::load(tiny_gguf(), {});
  REQUIRE(m.ok());
  server::SessionStore store(dir.file("state"), 1, m.value()->hparams());
  REQUIRE(store.open().ok());
  Result<std::string> a = store.create("o");
  Result<std::string> b = store.create("o");  // evicts a to disk (one in memory)
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const std::string a_file = dir.file("state") + "/" + a.value() + ".session";
  REQUIRE(std::ifstream(a_file).good());
  const int64_t now = (int64_t)std::time(nullptr);
  CHECK(store.expire_idle(3600, now) == 0);  // nothing is an hour old
  // a on disk, last written two hours ago: deleted; b in memory, just used: kept.
  struct timeval old[2] = {{now - 7200, 0}, {now - 7200, 0}};
  REQUIRE(utimes(a_file.c_str(), old) == 0);
  CHECK(store.expire_idle(3600, now) == 1);
  CHECK_FALSE(std::ifstream(a_file).good());
  CHECK(store.acquire(a.value(), "o").status().code() == StatusCode::kNotFound);
  CHECK(store.info(b.value(), "o").ok());
  // Two hours later b is idle too, unless a request holds it.
  REQUIRE(store.acquire(b.value(), "o").ok());
  CHECK(store.expire_idle(3600, now + 7200) == 0);
  store.release(b.value());
  CHECK(store.expire_idle(3600, now + 7200) == 1);
  CHECK(store.info(b.value(), "o").status().code() == StatusCode::kNotFound);
  CHECK(store.expired() == 2);
  CHECK(store.in_memory() == 0);
}

}  // namespace rwkv

namespace rwkv {

TEST_CASE("serve --session-ttl-hours deletes an idle session; /metrics counts it") {
  test::TempDir dir;
  // 0.0005 h = 1.8 s; the server checks every second.
  auto srv = serve_tiny(dir, {"--session-ttl-hours", "0.0005"});
  httplib::Client c = srv->client();
  const std::string id = new_session(c);
  json r = post(c, "/v1/completions", {{"prompt", "First"}, {"max_tokens", 2}, {"session_id", id}});
  CHECK(r["_status"] == 200);
  int status = 200;
  for (int i = 0; i < 100 && status == 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto g = c.Get(("/v1/sessions/" + id).c_str());
    REQUIRE(g);
    status = g->status;
  }
  CHECK(status == 404);
  auto met = c.Get("/metrics");
  REQUIRE(met);
  CHECK(met->body.find("rwkv_edge_sessions_expired_total 1") != std::string::npos);
}

}  // namespace rwkv
