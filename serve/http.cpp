// The HTTP/1.1 request parser and response writer (limits and refusals described in http.h).
// Framing follows RFC 9112: Transfer-Encoding with Content-Length is refused (request smuggling),
// as are differing Content-Lengths, obsolete line folding and anything but chunked transfer coding.
#include "kiln/serve/http.h"

#include <algorithm>
#include <cstring>

namespace kiln::serve {

namespace {

char lower_char(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower_char(a[i]) != lower_char(b[i])) return false;
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110's tchar: what a method or a header name may be made of.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (std::isalnum(c)) continue;
    if (!std::strchr("!#$%&'*+-.^_`|~", c) || c == 0) return false;
  }
  return true;
}

// Does a comma-separated header value list `token` (case-insensitively)?
bool lists_token(std::string_view value, std::string_view token) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    std::string_view item = value.substr(pos, comma == std::string_view::npos ? value.npos : comma - pos);
    if (iequals(trim_ows(item), token)) return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower_char(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

bool HttpRequest::has_header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.first, name)) return true;
  return false;
}

std::optional<std::string> HttpRequest::param(std::string_view name) const {
  std::string_view q = query;
  size_t pos = 0;
  while (pos <= q.size()) {
    size_t amp = q.find('&', pos);
    std::string_view item = q.substr(pos, amp == std::string_view::npos ? q.npos : amp - pos);
    size_t eq = item.find('=');
    if (percent_decode(item.substr(0, eq), true) == name)
      return eq == std::string_view::npos ? std::string() : percent_decode(item.substr(eq + 1), true);
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return std::nullopt;
}

std::string printable(std::string_view s, size_t max_bytes, bool for_log) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const bool plain = for_log ? (c > 0x20 && c < 0x7f && c != '"' && c != '\\') : (c >= 0x20 && c < 0x7f);
    if (plain) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max_bytes) out += "...";
  return out;
}

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

HttpResponse HttpResponse::error(int status, const std::string& reason) {
  HttpResponse r;
  r.status = status;
  r.body = reason + "\n";
  return r;
}

const char* status_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize_response(const HttpResponse& r, bool head_only) {
  std::string out;
  out.reserve(160 + r.body.size());
  out += "HTTP/1.1 " + std::to_string(r.status) + " " + status_reason(r.status) + "\r\n";
  if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  if (r.close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

RequestParser::RequestParser(HttpLimits limits) : limits_(limits) {}

void RequestParser::reset() {
  status_ = Status::need_more;
  stage_ = Stage::request_line;
  req_ = HttpRequest{};
  line_.clear();
  line_.shrink_to_fit();
  header_bytes_ = header_lines_ = blank_lines_ = 0;
  chunk_left_ = 0;
  body_bytes_ = 0;
  keep_body_ = true;
  started_ = false;
  error_status_ = 0;
  error_reason_.clear();
}

bool RequestParser::fail(int status, std::string reason) {
  status_ = Status::error;
  error_status_ = status;
  error_reason_ = std::move(reason);
  return false;
}

void RequestParser::read_body(bool keep) {
  if (status_ != Status::head_done) return;
  keep_body_ = keep;
  if (keep) req_.body.reserve(req_.content_length);
  status_ = stage_ == Stage::done ? Status::complete : Status::body;
}

size_t RequestParser::feed(const char* data, size_t n) {
  size_t used = 0;
  while (used < n && (status_ == Status::need_more || status_ == Status::body)) {
    if (stage_ == Stage::length_body || stage_ == Stage::chunk_data) {
      const size_t take = static_cast<size_t>(
          std::min<uint64_t>(n - used, stage_ == Stage::length_body
                                           ? req_.content_length - body_bytes_
                                           : chunk_left_));
      if (keep_body_) req_.body.append(data + used, take);
      body_bytes_ += take;
      used += take;
      if (stage_ == Stage::length_body) {
        if (body_bytes_ == req_.content_length) {
          stage_ = Stage::done;
          status_ = Status::complete;
        }
      } else if ((chunk_left_ -= take) == 0) {
        stage_ = Stage::chunk_end;
      }
      continue;
    }
    // Line-oriented stages: gather up to the next LF within the stage's bound.
    if (!started_ && data[used] != '\r' && data[used] != '\n') started_ = true;
    const char* lf = static_cast<const char*>(std::memchr(data + used, '\n', n - used));
    const size_t piece = lf ? static_cast<size_t>(lf - (data + used)) : n - used;
    size_t bound = 1024;  // chunk-size lines (with extensions) and the CRLF after chunk data
    if (stage_ == Stage::request_line) bound = limits_.max_request_line;
    if (stage_ == Stage::headers || stage_ == Stage::trailers)
      bound = limits_.max_header_bytes - std::min(header_bytes_, limits_.max_header_bytes);
    if (line_.size() + piece > bound + 1) {  // +1: the CR before the LF
      if (stage_ == Stage::request_line)
        fail(414, "request line is longer than " + std::to_string(limits_.max_request_line) +
                      " bytes");
      else if (stage_ == Stage::headers || stage_ == Stage::trailers)
        fail(431, "request headers are larger than " + std::to_string(limits_.max_header_bytes) +
                      " bytes");
      else
        fail(400, "malformed chunked body: chunk-size line too long");
      return used;
    }
    line_.append(data + used, piece);
    used += piece;
    if (!lf) break;
    ++used;  // the LF
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!take_line(line)) return used;
    line_.clear();
  }
  return used;
}

bool RequestParser::take_line(std::string_view line) {
  switch (stage_) {
    case Stage::request_line:
      if (line.empty()) {  // RFC 9112 2.2: tolerate empty lines before the request line
        if (++blank_lines_ > 4) return fail(400, "expected a request line, got empty lines");
        return true;
      }
      return parse_request_line(line);
    case Stage::headers:
    case Stage::trailers: {
      if (!line.empty()) {
        header_bytes_ += line.size() + 2;
        if (++header_lines_ > limits_.max_headers)
          return fail(431, "request has more than " + std::to_string(limits_.max_headers) +
                               " header lines");
        if (stage_ == Stage::trailers) return true;  // trailers are counted, not kept
        return parse_header(line);
      }
      if (stage_ == Stage::trailers) {
        stage_ = Stage::done;
        status_ = Status::complete;
        return true;
      }
      return finish_head();
    }
    case Stage::chunk_size: {
      std::string_view size = line.substr(0, line.find(';'));
      size = trim_ows(size);
      if (size.empty() || size.size() > 15)
        return fail(400, "malformed chunked body: chunk size '" + printable(size, 60, false) + "'");
      uint64_t v = 0;
      for (char c : size) {
        const int h = hex_value(c);
        if (h < 0) return fail(400, "malformed chunked body: chunk size '" + printable(size, 60, false) + "'");
        v = v * 16 + static_cast<uint64_t>(h);
      }
      if (v == 0) {
        stage_ = Stage::trailers;
        return true;
      }
      if (!grow_body(v)) return false;
      chunk_left_ = v;
      stage_ = Stage::chunk_data;
      return true;
    }
    case Stage::chunk_end:
      if (!line.empty()) return fail(400, "malformed chunked body: no CRLF after a chunk's data");
      stage_ = Stage::chunk_size;
      return true;
    default:
      return fail(400, "internal parser state");
  }
}

bool RequestParser::parse_request_line(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == line.npos ? line.npos : line.find(' ', sp1 + 1);
  if (sp2 == line.npos || line.find(' ', sp2 + 1) != line.npos)
    return fail(400, "malformed request line '" + printable(line, 60, false) + "' (expected METHOD TARGET HTTP/1.1)");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "malformed method '" + printable(method, 60, false) + "'");
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9')
    return fail(version.substr(0, 5) == "HTTP/" ? 505 : 400,
                "unsupported protocol '" + printable(version, 60, false) + "' (expected HTTP/1.0 or HTTP/1.1)");
  for (unsigned char c : target)
    if (c <= 0x20 || c == 0x7f) return fail(400, "request target holds a control byte");
  // Absolute form (a proxy's request): keep the path.
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == target.npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.empty() || (target[0] != '/' && target != "*"))
    return fail(400, "request target '" + printable(target, 60, false) + "' is not a path");
  req_.method = std::string(method);
  req_.target = std::string(target);
  const size_t q = target.find('?');
  req_.path = percent_decode(target.substr(0, q), false);
  if (q != target.npos) req_.query = std::string(target.substr(q + 1));
  req_.minor_version = version[7] - '0';
  stage_ = Stage::headers;
  return true;
}

bool RequestParser::parse_header(std::string_view line) {
  if (line[0] == ' ' || line[0] == '\t')
    return fail(400, "obsolete header line folding is not accepted");
  const size_t colon = line.find(':');
  if (colon == line.npos || !is_token(line.substr(0, colon)))
    return fail(400, "malformed header line '" + printable(line, 60, false) + "'");
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(400, "header value holds a control byte");
  req_.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  return true;
}

bool RequestParser::finish_head() {
  HttpRequest& r = req_;
  std::optional<uint64_t> length;
  bool transfer_encoding = false;
  for (const auto& [k, v] : r.headers) {
    if (iequals(k, "Content-Length")) {
      if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
        return fail(400, "malformed Content-Length '" + printable(v, 60, false) + "'");
      const uint64_t n = std::stoull(v);
      if (length && *length != n) return fail(400, "conflicting Content-Length headers");
      length = n;
    } else if (iequals(k, "Transfer-Encoding")) {
      if (transfer_encoding || !iequals(trim_ows(v), "chunked"))
        return fail(501, "Transfer-Encoding '" + printable(v, 60, false) +
                             "' is not supported (only chunked; send the body uncompressed)");
      transfer_encoding = true;
    } else if (iequals(k, "Content-Encoding")) {
      if (!iequals(trim_ows(v), "identity"))
        return fail(415, "Content-Encoding '" + printable(v, 60, false) +
                             "' is not accepted: send the body uncompressed");
    } else if (iequals(k, "Connection")) {
      if (lists_token(v, "close")) r.keep_alive = false;
      if (lists_token(v, "keep-alive") && r.minor_version == 0) r.keep_alive = true;
    } else if (iequals(k, "Expect")) {
      if (!iequals(trim_ows(v), "100-continue"))
        return fail(417, "Expect '" + printable(v, 60, false) + "' is not supported (only 100-continue)");
      r.expect_continue = r.minor_version >= 1;
    }
  }
  if (r.minor_version == 0 && !r.has_header("Connection")) r.keep_alive = false;
  if (r.minor_version == 0 && r.has_header("Connection") &&
      !lists_token(r.header("Connection"), "keep-alive"))
    r.keep_alive = false;
  if (transfer_encoding && length)
    return fail(400, "a request may not carry both Transfer-Encoding and Content-Length");
  if (transfer_encoding && r.minor_version == 0)
    return fail(400, "chunked Transfer-Encoding needs HTTP/1.1");
  status_ = Status::head_done;
  if (transfer_encoding) {
    r.chunked = true;
    stage_ = Stage::chunk_size;
  } else if (length && *length > 0) {
    if (*length > limits_.max_body_bytes)
      return fail(413, "request body of " + std::to_string(*length) + " bytes is larger than " +
                           std::to_string(limits_.max_body_bytes) + " bytes");
    r.content_length = static_cast<size_t>(*length);
    stage_ = Stage::length_body;
  } else {
    stage_ = Stage::done;
  }
  return true;
}

bool RequestParser::grow_body(size_t n) {
  if (n > limits_.max_body_bytes || body_bytes_ + n > limits_.max_body_bytes)
    return fail(413, "request body is larger than " + std::to_string(limits_.max_body_bytes) +
                         " bytes (counted while reading chunks)");
  return true;
}

}  // namespace kiln::serve
