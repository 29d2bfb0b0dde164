// HTTP/1.1 messages for kiln serve's own server (serve/http_server.h): an incremental request
// parser with a hard limit on every part a client controls (request line, header count and bytes,
// body bytes whether declared by Content-Length or sent chunked), so what one request can make the
// server hold is bounded whatever the client sends; and the response's wire form. Bodies with a
// Content-Encoding or a Transfer-Encoding other than chunked are refused, not decoded.
// Nothing here touches sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::serve {

struct HttpLimits {
  size_t max_request_line = 8192;   // method, target and version
  size_t max_header_bytes = 32768;  // all header lines (and chunked trailers) together
  size_t max_headers = 100;         // header lines (and trailer lines)
  size_t max_body_bytes = 6u << 20;
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: "/invocations?k=3"
  std::string path;    // the target's path, percent-decoded (may hold any byte: escape to log)
  std::string query;   // after '?', not decoded
  int minor_version = 1;  // HTTP/1.x
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;  // de-chunked
  size_t content_length = 0;  // declared (0 when chunked or absent)
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;

  // The first value of a header (names compare case-insensitively); "" if absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // A query parameter's percent-decoded value; nullopt if absent.
  std::optional<std::string> param(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond the framing ones
  bool close = false;  // send Connection: close and close after writing

  // A text/plain response of one line (the reason), as every refusal is.
  static HttpResponse error(int status, const std::string& reason);
};

// The status line, headers and (unless head_only) body. Content-Length is always sent.
std::string serialize_response(const HttpResponse& r, bool head_only);
const char* status_reason(int status);

// What a client sent, safe to show: bytes outside printable ASCII become \xHH (for a log line also
// blanks, quotes and backslashes, so it cannot forge or split lines); at most max_bytes are shown.
std::string printable(std::string_view s, size_t max_bytes, bool for_log);

// Percent-decodes a path or query component (`+` is a space only when `plus_is_space`); malformed
// escapes are kept as they are.
std::string percent_decode(std::string_view s, bool plus_is_space);

// Feed it the bytes of one connection as they arrive. It stops after the head (status head_done)
// so the caller can refuse a request before its body is read, and again at the end of the
// request (complete); bytes after that belong to the next request and are not consumed.
class RequestParser {
 public:
  enum class Status { need_more, head_done, body, complete, error };

  explicit RequestParser(HttpLimits limits = {});
  // Consumes from data[0, n) and returns how many bytes it took.
  size_t feed(const char* data, size_t n);
  // After head_done: read the body (status becomes body, or complete when there is none);
  // with keep = false its bytes are counted against the limit but not stored.
  void read_body(bool keep = true);
  // Body bytes received so far (stored or not).
  size_t body_bytes() const { return body_bytes_; }
  Status status() const { return status_; }
  // Whether any byte of the current request has arrived (false on an idle keep-alive connection).
  bool started() const { return started_; }
  HttpRequest& request() { return req_; }
  // For status error: the HTTP status to answer (400, 413, 415, 431, 501, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_reason() const { return error_reason_; }
  // Ready for the next request on the same connection.
  void reset();

 private:
  enum class Stage { request_line, headers, length_body, chunk_size, chunk_data, chunk_end,
                     trailers, done };
  bool fail(int status, std::string reason);
  bool take_line(std::string_view line);  // one complete line (without CRLF) of the current stage
  bool parse_request_line(std::string_view line);
  bool parse_header(std::string_view line);
  bool finish_head();
  bool grow_body(size_t n);

  HttpLimits limits_;
  Status status_ = Status::need_more;
  Stage stage_ = Stage::request_line;
  HttpRequest req_;
  std::string line_;  // the line being read (bounded by the limits)
  size_t header_bytes_ = 0, header_lines_ = 0, blank_lines_ = 0;
  uint64_t chunk_left_ = 0;
  size_t body_bytes_ = 0;
  bool keep_body_ = true;
  bool started_ = false;
  int error_status_ = 0;
  std::string error_reason_;
};

}  // namespace kiln::serve
