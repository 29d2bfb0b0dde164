// STS query-API client (see sts.h).
#include "kiln/aws/sts.h"

#include "kiln/core/error.h"

namespace kiln::aws {

StsClient::StsClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

XmlNode StsClient::call(const std::string& action, const std::vector<std::pair<std::string, std::string>>& params) {
  AwsRequest r;
  r.service_name = "STS";
  r.operation = action;
  r.signing_name = "sts";
  r.signing_region = cfg_.region.empty() ? "us-east-1" : cfg_.region;
  std::string o = endpoint_override(cfg_, "sts");
  if (!o.empty()) {
    r.endpoint = Url::parse(o, "STS endpoint URL");
    if (!r.endpoint.path.empty() && r.endpoint.path.back() == '/') r.endpoint.path.pop_back();
  } else {
    r.endpoint.host = cfg_.region.empty() ? "sts.amazonaws.com" : "sts." + cfg_.region + ".amazonaws.com";
  }
  r.method = "POST";
  r.path = "/";
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  r.body = "Action=" + uri_encode(action, false) + "&Version=2011-06-15";
  for (const auto& [k, v] : params) r.body += "&" + uri_encode(k, false) + "=" + uri_encode(v, false);
  HttpResponse resp = send_request(cfg_, std::move(r));
  if (cfg_.dry_run) return XmlNode{};
  return parse_xml(resp.body, "STS " + action + " response");
}

CallerIdentity StsClient::get_caller_identity() {
  XmlNode x = call("GetCallerIdentity", {});
  CallerIdentity id;
  if (cfg_.dry_run) return id;
  const XmlNode* res = x.find("GetCallerIdentityResult");
  if (!res) fail("STS GetCallerIdentity response", "a <GetCallerIdentityResult> element", "none");
  id.account = res->child_text("Account");
  id.arn = res->child_text("Arn");
  id.user_id = res->child_text("UserId");
  if (id.account.empty()) fail("STS GetCallerIdentity response", "an <Account>", "none");
  return id;
}

}  // namespace kiln::aws
