// AWS's JSON 1.1 protocol, shared by the SageMaker, ECR and CloudWatch Logs clients.
#include "kiln/aws/json_rpc.h"

#include "kiln/core/error.h"

namespace kiln::aws {

using nlohmann::json;

Url service_endpoint(const ClientConfig& cfg, const std::string& service_id, const std::string& host) {
  std::string o = endpoint_override(cfg, service_id);
  if (!o.empty()) {
    Url u = Url::parse(o, service_id + " endpoint URL");
    if (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
    return u;
  }
  Url u;
  u.host = host;
  return u;
}

void need_region(const ClientConfig& cfg, const std::string& what) {
  if (cfg.region.empty())
    throw Error(what + ": no region configured", "pass --region, or set AWS_REGION or a region in your AWS profile");
}

json json_rpc_call(const ClientConfig& cfg, const JsonService& svc, const std::string& op, const json& body) {
  need_region(cfg, svc.service_name + " " + op);
  AwsRequest r;
  r.service_name = svc.service_name;
  r.operation = op;
  r.signing_name = svc.signing_name;
  r.signing_region = cfg.region;
  r.endpoint = service_endpoint(cfg, svc.service_id, svc.host_prefix + "." + cfg.region + ".amazonaws.com");
  r.method = "POST";
  r.path = "/";
  r.headers = {{"Content-Type", "application/x-amz-json-1.1"}, {"X-Amz-Target", svc.target_prefix + "." + op}};
  r.body = body.dump();
  HttpResponse resp = send_request(cfg, std::move(r));
  if (resp.body.empty()) return json::object();
  try {
    return json::parse(resp.body);
  } catch (const std::exception&) {
    // Never quote the body: it may echo what the request carried.
    fail(svc.service_name + " " + op + " response", "a JSON document",
         std::to_string(resp.body.size()) + " bytes that do not parse as JSON");
  }
}

}  // namespace kiln::aws
