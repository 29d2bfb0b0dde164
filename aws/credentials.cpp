// The credential providers and the chain (see credentials.h for the order and the variables).
#include "kiln/aws/credentials.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kiln/aws/http.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace kiln::aws {

static std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

static std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string mask_access_key(const std::string& id) {
  if (id.size() <= 8) return "****";
  return id.substr(0, 4) + std::string(id.size() - 8, '*') + id.substr(id.size() - 4);
}

std::string mask_secret(const std::string& secret) { return secret.empty() ? "" : "****"; }

static std::string iso8601(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// "2026-11-26T18:00:00Z" (fractions and offsets other than Z are not used by AWS here).
static Clock::time_point parse_iso8601(const std::string& s, const std::string& what) {
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail())  // not quoted: it comes from a credentials document
    fail(what, "an ISO 8601 time like 2026-11-26T18:00:00Z", std::to_string(s.size()) + " characters that are not one");
  // system_clock counts nanoseconds in 64 bits (years 1678-2262): a year outside would overflow
  // (found by fuzz_aws_config); AWS expirations are hours away.
  if (tm.tm_year + 1900 < 1970 || tm.tm_year + 1900 > 2200)
    fail(what, "a time between the years 1970 and 2200", "year " + std::to_string(tm.tm_year + 1900));
  return Clock::from_time_t(timegm(&tm));
}

std::string Credentials::describe() const {
  std::string d = mask_access_key(access_key_id) + " (" + source;
  if (!session_token.empty()) d += ", with session token";
  if (expiration) d += ", expires " + iso8601(*expiration);
  return d + ")";
}

IniFile parse_ini(const std::string& text) {
  IniFile ini;
  std::string section, line, last_key;
  std::istringstream in(text);
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(t.substr(1, t.size() - 2));
      ini[section];
      last_key.clear();
      continue;
    }
    // An indented line continues a nested block (s3 = \n  max_concurrency = 4): kept as "key.sub".
    bool indented = std::isspace(static_cast<unsigned char>(line[0]));
    auto eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(t.substr(0, eq)), value = trim(t.substr(eq + 1));
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (indented && !last_key.empty()) {
      ini[section][last_key + "." + key] = value;
    } else {
      ini[section][key] = value;
      last_key = value.empty() ? key : std::string();
    }
  }
  return ini;
}

std::string resolve_profile_name(const ProfileOptions& opts) {
  if (!opts.profile.empty()) return opts.profile;
  std::string p = env("AWS_PROFILE");
  if (p.empty()) p = env("AWS_DEFAULT_PROFILE");
  return p.empty() ? "default" : p;
}

static std::string home_file(const char* var, const char* rel) {
  std::string v = env(var);
  if (!v.empty()) {
    if (v.rfind("~/", 0) == 0) return env("HOME") + v.substr(1);
    return v;
  }
  return env("HOME") + rel;
}

std::string config_file_path() { return home_file("AWS_CONFIG_FILE", "/.aws/config"); }
std::string credentials_file_path() { return home_file("AWS_SHARED_CREDENTIALS_FILE", "/.aws/credentials"); }

static IniFile read_ini(const std::string& path) {
  std::error_code ec;
  if (path.empty() || !std::filesystem::is_regular_file(path, ec)) return {};
  return parse_ini(read_file(path));
}

static const std::map<std::string, std::string>* config_section(const IniFile& ini, const std::string& profile) {
  auto it = ini.find(profile == "default" ? "default" : "profile " + profile);
  if (it == ini.end() && profile == "default") it = ini.find("profile default");
  if (it == ini.end()) it = ini.find(profile);  // tolerated, as the CLI does for [default]
  return it == ini.end() ? nullptr : &it->second;
}

std::string config_setting(const ProfileOptions& opts, const std::string& key) {
  IniFile ini = read_ini(config_file_path());
  auto* sec = config_section(ini, resolve_profile_name(opts));
  if (!sec) return {};
  auto it = sec->find(key);
  return it == sec->end() ? std::string() : it->second;
}

std::string resolve_region(const std::string& cli_region, const ProfileOptions& opts) {
  if (!cli_region.empty()) return cli_region;
  for (const char* v : {"AWS_REGION", "AWS_DEFAULT_REGION"})
    if (std::string r = env(v); !r.empty()) return r;
  return config_setting(opts, "region");
}

Credentials credentials_from_env() {
  Credentials c;
  c.access_key_id = env("AWS_ACCESS_KEY_ID");
  c.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
  c.session_token = env("AWS_SESSION_TOKEN");
  if (c.session_token.empty()) c.session_token = env("AWS_SECURITY_TOKEN");
  if (c.access_key_id.empty() && c.secret_access_key.empty()) return {};
  if (c.empty())
    throw Error("environment credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set",
                "set both, or unset both to use a profile");
  c.source = "environment";
  return c;
}

static Credentials from_section(const std::map<std::string, std::string>& sec, const std::string& where) {
  Credentials c;
  auto get = [&](const char* k) {
    auto it = sec.find(k);
    return it == sec.end() ? std::string() : it->second;
  };
  c.access_key_id = get("aws_access_key_id");
  c.secret_access_key = get("aws_secret_access_key");
  c.session_token = get("aws_session_token");
  if (c.access_key_id.empty() && c.secret_access_key.empty()) return {};
  if (c.empty())
    fail(where, "both aws_access_key_id and aws_secret_access_key",
         c.access_key_id.empty() ? "no aws_access_key_id" : "no aws_secret_access_key");
  c.source = where;
  return c;
}

Credentials credentials_from_profile(const ProfileOptions& opts) {
  std::string profile = resolve_profile_name(opts);
  std::string cred_path = credentials_file_path();
  IniFile creds = read_ini(cred_path);
  if (auto it = creds.find(profile); it != creds.end()) {
    Credentials c = from_section(it->second, "profile " + profile + " in " + cred_path);
    if (!c.empty()) return c;
  }
  std::string cfg_path = config_file_path();
  IniFile cfg = read_ini(cfg_path);
  if (auto* sec = config_section(cfg, profile)) {
    Credentials c = from_section(*sec, "profile " + profile + " in " + cfg_path);
    if (!c.empty()) return c;
  }
  return {};
}

// The body holds the secret: no error below quotes it (nor any of its values), only its shape.
Credentials parse_credentials_json(const std::string& body, const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const std::exception&) {
    fail(what, "a JSON credentials document", std::to_string(body.size()) + " bytes that do not parse as JSON");
  }
  if (!j.is_object()) fail(what, "a JSON object", std::string("a JSON ") + j.type_name());
  auto str = [&](const char* k) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
  };
  if (j.contains("Code") && str("Code") != "Success") {
    // An error code is an identifier ("AssumeRoleUnauthorizedAccess"); anything else is not shown.
    std::string code = str("Code");
    bool plain = !code.empty() && code.size() <= 64 &&
                 std::all_of(code.begin(), code.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
    fail(what, "Code \"Success\"", plain ? "Code \"" + code + "\"" : "another Code");
  }
  Credentials c;
  c.access_key_id = str("AccessKeyId");
  c.secret_access_key = str("SecretAccessKey");
  c.session_token = str("Token");
  if (c.empty()) fail(what, "AccessKeyId and SecretAccessKey", "a document without them");
  if (std::string e = str("Expiration"); !e.empty()) c.expiration = parse_iso8601(e, what + " Expiration");
  c.source = what;
  return c;
}

bool container_credentials_uri_allowed(const Url& url) {
  if (url.scheme == "https") return true;
  if (url.scheme != "http") return false;
  std::string h = url.host;
  if (!h.empty() && h.front() == '[') h = h.substr(1, h.find(']') - 1);  // "[::1]" (Url keeps "[::1]:9" whole)
  for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // botocore's list: the ECS and EKS Pod Identity agents, and loopback (127.0.0.0/8, ::1)
  if (h == "localhost" || h == "169.254.170.2" || h == "169.254.170.23" || h == "fd00:ec2::23" || h == "::1")
    return true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  char tail = 0;
  return std::sscanf(h.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 && c < 256 &&
         d < 256;
}

static HttpResponse metadata_request(const std::string& method, const Url& base, const std::string& target,
                                     std::vector<Header> headers, const ProfileOptions& opts) {
  HttpRequest req;
  req.method = method;
  req.url = base;
  req.target = base.path + target;
  req.headers = std::move(headers);
  req.headers.push_back({"Host", base.authority()});
  HttpOptions ho;
  ho.connect_timeout_ms = opts.metadata_timeout_ms;
  ho.read_timeout_ms = opts.metadata_timeout_ms;
  return http_send(req, ho);
}

Credentials credentials_from_container(const ProfileOptions& opts) {
  std::string rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  std::string full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (rel.empty() && full.empty()) return {};
  std::string url_text = rel.empty() ? full : "http://169.254.170.2" + rel;
  Url url = Url::parse(url_text, "container credentials URI");
  if (rel.empty() && !container_credentials_uri_allowed(url))
    fail("AWS_CONTAINER_CREDENTIALS_FULL_URI (" + url.scheme + "://" + url.authority() + ")",
         "https://, or http:// to loopback (127.0.0.0/8, ::1, localhost) or the ECS/EKS agents "
         "(169.254.170.2, 169.254.170.23, fd00:ec2::23)",
         "another host over plain http",
         "the authorization token would travel in clear to that host; use https or a local agent, as the AWS SDKs require");
  std::string target = url.path.empty() ? "/" : url.path;
  url.path.clear();
  std::vector<Header> headers;
  std::string token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  if (std::string f = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); !f.empty()) token = trim(read_file(f));
  if (!token.empty()) headers.push_back({"Authorization", token});
  HttpResponse r;
  try {
    r = metadata_request("GET", url, target, headers, opts);
  } catch (const TransportError& e) {
    throw Error(std::string("container credentials: ") + e.what(),
                "AWS_CONTAINER_CREDENTIALS_* is set but its endpoint does not answer");
  }
  if (r.status != 200)
    fail("container credentials from " + url.str() + target, "HTTP 200", "HTTP " + std::to_string(r.status));
  return parse_credentials_json(r.body, "container credentials");
}

Credentials credentials_from_imds(const ProfileOptions& opts) {
  std::string disabled = env("AWS_EC2_METADATA_DISABLED");
  for (auto& c : disabled) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (disabled == "true") return {};
  std::string ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  Url base = Url::parse(ep.empty() ? "http://169.254.169.254" : ep, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (!base.path.empty() && base.path.back() == '/') base.path.pop_back();
  HttpResponse tok;
  try {
    tok = metadata_request("PUT", base, "/latest/api/token",
                           {{"X-aws-ec2-metadata-token-ttl-seconds", "21600"}}, opts);
  } catch (const TransportError&) {
    return {};  // no metadata service here: the chain goes on
  }
  if (tok.status != 200)
    fail("instance metadata token (IMDSv2 PUT /latest/api/token)", "HTTP 200", "HTTP " + std::to_string(tok.status));
  std::vector<Header> auth = {{"X-aws-ec2-metadata-token", trim(tok.body)}};
  const std::string prefix = "/latest/meta-data/iam/security-credentials/";
  HttpResponse role = metadata_request("GET", base, prefix, auth, opts);
  if (role.status == 404) return {};  // an instance without a role
  if (role.status != 200)
    fail("instance metadata role name", "HTTP 200", "HTTP " + std::to_string(role.status));
  std::string name = trim(role.body.substr(0, role.body.find('\n')));
  if (name.empty()) return {};
  HttpResponse cr = metadata_request("GET", base, prefix + name, auth, opts);
  if (cr.status != 200)
    fail("instance metadata credentials of role " + name, "HTTP 200", "HTTP " + std::to_string(cr.status));
  return parse_credentials_json(cr.body, "instance metadata (role " + name + ")");
}

CredentialChain::CredentialChain(ProfileOptions opts) : opts_(std::move(opts)) {}

std::shared_ptr<CredentialChain> CredentialChain::fixed(Credentials creds) {
  auto c = std::make_shared<CredentialChain>();
  c->cached_ = std::move(creds);
  c->fixed_ = true;
  return c;
}

Credentials CredentialChain::resolve() {
  if (opts_.profile.empty()) {  // an explicit --profile negates the environment, as in the CLI
    if (Credentials c = credentials_from_env(); !c.empty()) return c;
  }
  if (Credentials c = credentials_from_profile(opts_); !c.empty()) return c;
  if (Credentials c = credentials_from_container(opts_); !c.empty()) return c;
  if (Credentials c = credentials_from_imds(opts_); !c.empty()) return c;
  throw Error("no AWS credentials found (looked at: " +
                  std::string(opts_.profile.empty() ? "environment, " : "") + "profile '" +
                  resolve_profile_name(opts_) + "' in " + credentials_file_path() + " and " +
                  config_file_path() + ", container credentials, instance metadata)",
              "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run `aws configure`, or pass --profile");
}

Credentials CredentialChain::get() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fixed_) return *cached_;
  bool stale = !cached_ || (cached_->expiration && Clock::now() + opts_.refresh_margin >= *cached_->expiration);
  if (stale) cached_ = resolve();
  return *cached_;
}

void CredentialChain::invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!fixed_) cached_.reset();
}

}  // namespace kiln::aws
