// SigV4 signing (see sigv4.h). Layout of the canonical request:
//   METHOD \n canonical URI \n canonical query \n canonical headers (name:value\n each) \n
//   signed header names joined by ';' \n payload hash
#include "kiln/aws/sigv4.h"

#include <algorithm>
#include <cctype>

#include "kiln/aws/crypto.h"
#include "kiln/core/error.h"

namespace kiln::aws {

static std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string SignableRequest::header(std::string_view name) const {
  std::string n = lower(name);
  for (const auto& h : headers)
    if (lower(h.name) == n) return h.value;
  return {};
}

void SignableRequest::set_header(const std::string& name, const std::string& value) {
  std::string n = lower(name);
  std::erase_if(headers, [&](const Header& h) { return lower(h.name) == n; });
  headers.push_back({name, value});
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string uri_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && val(s[i + 1]) >= 0 && val(s[i + 2]) >= 0) {
      out += static_cast<char>(val(s[i + 1]) * 16 + val(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string canonical_path(std::string_view path, bool normalize) {
  if (path.empty()) return "/";
  if (!normalize) return uri_encode(path, true);
  // RFC 3986 remove_dot_segments, and empty segments ("//") dropped as AWS's signers do.
  std::vector<std::string_view> segs;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.push_back(seg);
    }
    i = j + 1;
  }
  bool trailing = path.back() == '/' || path.ends_with("/.") || path.ends_with("/..");
  std::string out;
  for (auto s : segs) out += "/" + uri_encode(s, false);
  if (out.empty() || trailing) out += "/";
  return out;
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) enc.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

std::string amz_date(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// Trim, and collapse every run of whitespace (folded lines included) into one space.
static std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

struct CanonicalHeaders {
  std::string block, signed_names;
};

static CanonicalHeaders canonical_headers(const std::vector<Header>& headers) {
  std::vector<std::pair<std::string, std::string>> merged;  // name -> values joined by ','
  for (const auto& h : headers) {
    std::string n = lower(h.name);
    auto it = std::find_if(merged.begin(), merged.end(), [&](const auto& p) { return p.first == n; });
    if (it == merged.end())
      merged.emplace_back(n, canonical_value(h.value));
    else
      it->second += "," + canonical_value(h.value);
  }
  std::stable_sort(merged.begin(), merged.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  CanonicalHeaders c;
  for (const auto& [n, v] : merged) {
    c.block += n + ":" + v + "\n";
    if (!c.signed_names.empty()) c.signed_names += ';';
    c.signed_names += n;
  }
  return c;
}

static std::string scope(const std::string& date, const SigningConfig& cfg) {
  return date.substr(0, 8) + "/" + cfg.region + "/" + cfg.service + "/aws4_request";
}

static SigningResult finish(const std::string& canonical, const std::string& date,
                            const Credentials& creds, const SigningConfig& cfg) {
  SigningResult r;
  r.canonical_request = canonical;
  r.string_to_sign = "AWS4-HMAC-SHA256\n" + date + "\n" + scope(date, cfg) + "\n" + sha256_hex(canonical);
  std::string k = hmac_sha256("AWS4" + creds.secret_access_key, date.substr(0, 8));
  k = hmac_sha256(k, cfg.region);
  k = hmac_sha256(k, cfg.service);
  k = hmac_sha256(k, "aws4_request");
  r.signature = to_hex(hmac_sha256(k, r.string_to_sign));
  return r;
}

static void check_request(const SignableRequest& req, const SigningConfig& cfg) {
  if (req.header("host").empty()) fail("request to sign", "a Host header", "none");
  KILN_ASSERT(!cfg.region.empty() && !cfg.service.empty(), "SigV4 needs a region and a service");
}

SigningResult sign_headers(SignableRequest& req, const Credentials& creds, const SigningConfig& cfg) {
  check_request(req, cfg);
  std::string date = amz_date(cfg.time);
  req.set_header("X-Amz-Date", date);
  bool token = !creds.session_token.empty();
  if (token && !cfg.omit_session_token) req.set_header("X-Amz-Security-Token", creds.session_token);
  if (cfg.add_content_sha256) req.set_header("x-amz-content-sha256", req.payload_hash);
  CanonicalHeaders ch = canonical_headers(req.headers);
  std::string canonical = req.method + "\n" + canonical_path(req.path, cfg.normalize_path) + "\n" +
                          canonical_query(req.query) + "\n" + ch.block + "\n" + ch.signed_names +
                          "\n" + req.payload_hash;
  SigningResult r = finish(canonical, date, creds, cfg);
  req.set_header("Authorization", "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" +
                                      scope(date, cfg) + ", SignedHeaders=" + ch.signed_names +
                                      ", Signature=" + r.signature);
  if (token && cfg.omit_session_token) req.set_header("X-Amz-Security-Token", creds.session_token);
  return r;
}

SigningResult presign_query(SignableRequest& req, const Credentials& creds, const SigningConfig& cfg) {
  check_request(req, cfg);
  std::string date = amz_date(cfg.time);
  CanonicalHeaders ch = canonical_headers(req.headers);
  req.query.emplace_back("X-Amz-Algorithm", "AWS4-HMAC-SHA256");
  req.query.emplace_back("X-Amz-Credential", creds.access_key_id + "/" + scope(date, cfg));
  req.query.emplace_back("X-Amz-Date", date);
  req.query.emplace_back("X-Amz-Expires", std::to_string(cfg.expires_s));
  bool token = !creds.session_token.empty();
  if (token && !cfg.omit_session_token) req.query.emplace_back("X-Amz-Security-Token", creds.session_token);
  req.query.emplace_back("X-Amz-SignedHeaders", ch.signed_names);
  std::string canonical = req.method + "\n" + canonical_path(req.path, cfg.normalize_path) + "\n" +
                          canonical_query(req.query) + "\n" + ch.block + "\n" + ch.signed_names +
                          "\n" + req.payload_hash;
  SigningResult r = finish(canonical, date, creds, cfg);
  if (token && cfg.omit_session_token) req.query.emplace_back("X-Amz-Security-Token", creds.session_token);
  req.query.emplace_back("X-Amz-Signature", r.signature);
  return r;
}

}  // namespace kiln::aws
