// The SigV4 canonicaliser (aws/sigv4.h): the input is "method\npath\nquery\nheader: value..." and
// is signed both ways (headers, presigned query) with fixed credentials and time.
#include <string>

#include "kiln/aws/sigv4.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  auto next_line = [&input]() {
    size_t nl = input.find('\n');
    std::string_view line = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);
    return std::string(line);
  };
  kiln::aws::SignableRequest req;
  req.method = next_line();
  req.path = "/" + next_line();
  std::string query = next_line();
  for (size_t p = 0; p < query.size();) {  // k=v&k2=v2, decoded
    size_t amp = query.find('&', p);
    std::string kv = query.substr(p, amp == std::string::npos ? std::string::npos : amp - p);
    size_t eq = kv.find('=');
    req.query.emplace_back(kiln::aws::uri_decode(kv.substr(0, eq)),
                           eq == std::string::npos ? "" : kiln::aws::uri_decode(kv.substr(eq + 1)));
    p = amp == std::string::npos ? query.size() : amp + 1;
  }
  req.headers.push_back({"Host", "examplebucket.s3.amazonaws.com"});
  while (!input.empty()) {
    std::string h = next_line();
    size_t colon = h.find(':');
    if (colon != std::string::npos) req.headers.push_back({h.substr(0, colon), h.substr(colon + 1)});
  }
  kiln::aws::Credentials creds;
  creds.access_key_id = "AKIAIOSFODNN7EXAMPLE";
  creds.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  creds.session_token = "token";
  kiln::aws::SigningConfig cfg;
  cfg.region = "us-east-1";
  cfg.service = "s3";
  cfg.time = 1440938160;
  for (bool normalize : {false, true}) {
    cfg.normalize_path = normalize;
    kiln::aws::SignableRequest a = req, b = req;
    kiln::aws::sign_headers(a, creds, cfg);
    kiln::aws::presign_query(b, creds, cfg);
  }
}
