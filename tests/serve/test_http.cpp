// The HTTP/1.1 request parser on its own: framing (Content-Length, chunked, pipelining), the
// limits on request line, header count and bytes and body, and the refusals (smuggling shapes,
// encodings, versions), fed whole and byte by byte.
#include <doctest/doctest.h>

#include "kiln/serve/http.h"

using namespace kiln::serve;

namespace {

// Feeds `bytes` in pieces of `step`, reading bodies as soon as the head is done.
RequestParser parse(const std::string& bytes, size_t step = 1 << 20, HttpLimits limits = {},
                    size_t* used_out = nullptr) {
  RequestParser p(limits);
  size_t used = 0;
  while (used < bytes.size()) {
    const size_t n = std::min(step, bytes.size() - used);
    used += p.feed(bytes.data() + used, n);
    if (p.status() == RequestParser::Status::head_done) p.read_body();
    if (p.status() == RequestParser::Status::complete || p.status() == RequestParser::Status::error) break;
  }
  if (p.status() == RequestParser::Status::head_done) p.read_body();
  if (used_out) *used_out = used;
  return p;
}

}  // namespace

TEST_CASE("a request with a Content-Length body parses the same fed whole or byte by byte") {
  const std::string req = "POST /invocations?k=3&x=a%20b HTTP/1.1\r\nHost: h\r\ncontent-type: application/json\r\n"
                          "Content-Length: 5\r\n\r\nhello";
  for (size_t step : {size_t{1}, size_t{7}, req.size()}) {
    INFO(step);
    RequestParser p = parse(req, step);
    REQUIRE(p.status() == RequestParser::Status::complete);
    CHECK(p.request().method == "POST");
    CHECK(p.request().path == "/invocations");
    CHECK(p.request().param("k") == "3");
    CHECK(p.request().param("x") == "a b");
    CHECK(!p.request().param("y"));
    CHECK(p.request().header("Content-Type") == "application/json");
    CHECK(p.request().body == "hello");
    CHECK(p.request().keep_alive);
  }
}

TEST_CASE("chunked bodies are de-chunked; a pipelined request after them is left unconsumed") {
  const std::string first = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
  const std::string second = "GET /ping HTTP/1.1\r\n\r\n";
  size_t used = 0;
  RequestParser p = parse(first + second, 3, {}, &used);
  REQUIRE(p.status() == RequestParser::Status::complete);
  CHECK(p.request().body == "hello world");
  CHECK(used == first.size());
  p.reset();
  p.feed(second.data(), second.size());
  CHECK(p.status() == RequestParser::Status::head_done);
  CHECK(p.request().path == "/ping");
}

TEST_CASE("every limit is enforced while bytes arrive, and every refusal names its status") {
  HttpLimits small;
  small.max_request_line = 64;
  small.max_header_bytes = 256;
  small.max_headers = 5;
  small.max_body_bytes = 100;
  struct Case {
    const char* what;
    std::string bytes;
    int status;
  };
  std::string many;
  for (int i = 0; i < 6; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  const Case cases[] = {
      {"request line", "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", 414},
      {"request line without end", "GET /" + std::string(100, 'a'), 414},
      {"header bytes", "GET / HTTP/1.1\r\nX: " + std::string(300, 'v'), 431},
      {"header count", "GET / HTTP/1.1\r\n" + many + "\r\n", 431},
      {"declared body", "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
      {"chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'x') +
                           "\r\n40\r\n" + std::string(64, 'x') + "\r\n0\r\n\r\n", 413},
      {"huge chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"no CRLF after chunk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n", 400},
      {"trailer flood", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + many, 431},
      {"gzip body", "POST / HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx", 415},
      {"gzip transfer", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"both framings", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
      {"two lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
      {"bad length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"folding", "GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n", 400},
      {"no colon", "GET / HTTP/1.1\r\nnocolon\r\n\r\n", 400},
      {"control byte", std::string("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n"), 400},
      {"HTTP/2", "GET / HTTP/2.0\r\n\r\n", 505},
      {"not HTTP", "\x16\x03\x01 hello\r\n", 400},
      {"expectation", "POST / HTTP/1.1\r\nExpect: magic\r\n\r\n", 417},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    for (size_t step : {size_t{1}, c.bytes.size()}) {
      RequestParser p = parse(c.bytes, step, small);
      CHECK(p.status() == RequestParser::Status::error);
      CHECK(p.error_status() == c.status);
      CHECK(!p.error_reason().empty());
    }
  }
}

TEST_CASE("HTTP/1.0 closes unless keep-alive is asked; Connection: close; Expect: 100-continue") {
  CHECK(!parse("GET / HTTP/1.0\r\n\r\n").request().keep_alive);
  CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").request().keep_alive);
  CHECK(!parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").request().keep_alive);
  const std::string head = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  RequestParser q;
  CHECK(q.feed(head.data(), head.size()) == head.size());
  REQUIRE(q.status() == RequestParser::Status::head_done);
  CHECK(q.request().expect_continue);
  q.read_body(false);  // counted, not kept
  CHECK(q.feed("ab", 2) == 2);
  CHECK(q.status() == RequestParser::Status::complete);
  CHECK(q.request().body.empty());
  CHECK(q.body_bytes() == 2);
}

TEST_CASE("responses carry their length and Connection: close when asked") {
  HttpResponse r = HttpResponse::error(503, "busy");
  r.headers.emplace_back("Retry-After", "1");
  r.close = true;
  const std::string s = serialize_response(r, false);
  CHECK(s.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
  CHECK(s.find("Content-Length: 5\r\n") != std::string::npos);
  CHECK(s.find("Retry-After: 1\r\n") != std::string::npos);
  CHECK(s.find("Connection: close\r\n") != std::string::npos);
  CHECK(s.substr(s.size() - 9) == "\r\n\r\nbusy\n");
  CHECK(serialize_response(r, true).find("busy") == std::string::npos);  // HEAD
}
