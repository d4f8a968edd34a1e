// Tests for tools/loadgen/http_parse.{h,cpp}: URL handling, HTTP/1.1 response framing and SSE.
#include "tools/loadgen/http_parse.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace rwkv::loadgen {
namespace {

// Feeds `wire` in pieces of `step` bytes; returns the decoded body.
std::string feed_all(ResponseParser& p, const std::string& wire, size_t step, Status* st = nullptr) {
  std::string body;
  const ResponseParser::BodySink sink = [&](std::string_view piece) {
    body.append(piece);
    return true;
  };
  for (size_t i = 0; i < wire.size(); i += step) {
    Status s = p.feed(wire.data() + i, std::min(step, wire.size() - i), sink);
    if (!s.ok()) {
      if (st) *st = s;
      return body;
    }
  }
  return body;
}

std::vector<std::string> sse_events(const std::string& stream, size_t step) {
  SseParser p;
  std::vector<std::string> out;
  for (size_t i = 0; i < stream.size(); i += step) {
    p.feed(std::string_view(stream).substr(i, step), [&](const std::string& d) {
      out.push_back(d);
      return true;
    });
  }
  return out;
}

TEST_CASE("parse_url: host, port, path, IPv6 and refusals") {
  Result<Url> u = parse_url("http://127.0.0.1:8080/v1");
  REQUIRE(u.ok());
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 8080);
  CHECK(u->path == "/v1");
  CHECK(u->host_header() == "127.0.0.1:8080");

  u = parse_url("http://localhost");
  REQUIRE(u.ok());
  CHECK(u->port == 80);
  CHECK(u->path == "/");

  u = parse_url("http://[::1]:9000/health?x=1");
  REQUIRE(u.ok());
  CHECK(u->host == "::1");
  CHECK(u->host_header() == "[::1]:9000");
  CHECK(u->path == "/health?x=1");

  CHECK(parse_url("https://example.org").status().code() == StatusCode::kUnsupported);
  CHECK(parse_url("ftp://x").status().code() == StatusCode::kInvalidArgument);
  CHECK(parse_url("http://host:99999").status().code() == StatusCode::kInvalidArgument);
  CHECK(parse_url("http://:80").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("api_root strips the OpenAI suffixes but keeps a proxy prefix") {
  CHECK(api_root(*parse_url("http://h:1")) == "");
  CHECK(api_root(*parse_url("http://h:1/")) == "");
  CHECK(api_root(*parse_url("http://h:1/v1/")) == "");
  CHECK(api_root(*parse_url("http://h:1/v1/completions")) == "");
  CHECK(api_root(*parse_url("http://h:1/v1/chat/completions")) == "");
  CHECK(api_root(*parse_url("http://h:1/proxy/v1")) == "/proxy");
}

TEST_CASE("ResponseParser: Content-Length body in any split") {
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
  for (size_t step : {1, 3, 7, 1000}) {
    ResponseParser p;
    const std::string body = feed_all(p, wire, step);
    CHECK(p.complete());
    CHECK(p.status() == 200);
    CHECK(p.header("content-type") == "application/json");
    CHECK(body == "hello");
  }
}

TEST_CASE("ResponseParser: chunked with extensions and trailers") {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=v\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: 1\r\n\r\n";
  for (size_t step : {1, 2, 5, 1000}) {
    ResponseParser p;
    const std::string body = feed_all(p, wire, step);
    CHECK(p.chunked());
    CHECK(p.complete());
    CHECK(body == "hello, world!!!");
  }
}

TEST_CASE("ResponseParser: end of connection") {
  SUBCASE("ends a close-delimited body") {
    ResponseParser p;
    const std::string body = feed_all(p, "HTTP/1.0 200 OK\r\n\r\nabc", 4);
    CHECK_FALSE(p.complete());
    CHECK(p.finish_eof().ok());
    CHECK(p.complete());
    CHECK(body == "abc");
  }
  SUBCASE("cuts a chunked body short") {
    ResponseParser p;
    feed_all(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 100);
    CHECK(p.finish_eof().code() == StatusCode::kUnavailable);
  }
  SUBCASE("before any byte") {
    ResponseParser p;
    CHECK(p.finish_eof().code() == StatusCode::kUnavailable);
  }
}

TEST_CASE("ResponseParser: malformed input and abort") {
  Status st;
  ResponseParser p;
  feed_all(p, "SSH-2.0-OpenSSH\r\n\r\n", 100, &st);
  CHECK(st.code() == StatusCode::kInvalidArgument);

  ResponseParser q;
  st = Status::OK();
  feed_all(q, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100, &st);
  CHECK(st.code() == StatusCode::kInvalidArgument);

  ResponseParser a;
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  int calls = 0;
  CHECK(a.feed(wire.data(), wire.size(), [&](std::string_view) { return ++calls > 5; }).ok());
  CHECK(a.aborted());
  CHECK(calls == 1);
}

TEST_CASE("retry_after_seconds") {
  CHECK(retry_after_seconds({{"retry-after", "2"}}) == 2.0);
  CHECK(retry_after_seconds({{"retry-after", "0.5"}}) == 0.5);
  CHECK(retry_after_seconds({{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}) == -1);
  CHECK(retry_after_seconds({}) == -1);
}

TEST_CASE("SseParser: framing, comments, CRLF and multi-line data, in any split") {
  const std::string stream =
      ": ping\n\n"
      "data: {\"a\":1}\n\n"
      "event: x\r\ndata: line1\r\ndata:line2\r\n\r\n"
      "data: [DONE]\r\r"
      "data: unterminated";
  for (size_t step : {1, 2, 3, 1000}) {
    const std::vector<std::string> ev = sse_events(stream, step);
    REQUIRE(ev.size() == 3);
    CHECK(ev[0] == "{\"a\":1}");
    CHECK(ev[1] == "line1\nline2");
    CHECK(ev[2] == "[DONE]");
  }
}

TEST_CASE("SseParser: a sink returning false stops it") {
  SseParser p;
  int n = 0;
  CHECK_FALSE(p.feed("data: 1\n\ndata: 2\n\n", [&](const std::string&) { return ++n < 1; }));
  CHECK(n == 1);
  CHECK_FALSE(p.feed("data: 3\n\n", [&](const std::string&) { return true; }));
}

TEST_CASE("quantile_sorted interpolates like numpy") {
  const std::vector<double> v = {1, 2, 3, 4};
  CHECK(quantile_sorted(v, 0.0) == 1.0);
  CHECK(quantile_sorted(v, 0.5) == doctest::Approx(2.5));
  CHECK(quantile_sorted(v, 1.0) == 4.0);
  CHECK(quantile_sorted({7.0}, 0.99) == 7.0);
}

TEST_CASE("union_length counts overlapping and touching spans once") {
  CHECK(union_length({}) == 0.0);
  CHECK(union_length({{1.0, 3.0}}) == doctest::Approx(2.0));
  // Out of order, nested, overlapping, touching, disjoint.
  CHECK(union_length({{5.0, 6.0}, {1.0, 3.0}, {2.0, 2.5}, {2.5, 4.0}, {4.0, 4.5}}) == doctest::Approx(4.5));
  // A reversed span is empty and does not extend its neighbours.
  CHECK(union_length({{1.0, 2.0}, {1.5, 0.0}}) == doctest::Approx(1.0));
}

}  // namespace
}  // namespace rwkv::loadgen
