// AWS's JSON 1.1 protocol (SageMaker, ECR, CloudWatch Logs): a signed POST to "/" with
// X-Amz-Target: <target_prefix>.<Operation> and a JSON body; the answer is a JSON document.
// Internal to aws/ (it exposes nlohmann/json); service clients wrap it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kiln/aws/client.h"

namespace kiln::aws {

struct JsonService {
  std::string service_name;   // for messages: "SageMaker", "ECR", "CloudWatch Logs"
  std::string service_id;     // endpoint override key: AWS_ENDPOINT_URL_<SERVICE_ID> ("sagemaker", "ecr", "logs")
  std::string signing_name;   // "sagemaker", "ecr", "logs"
  std::string target_prefix;  // "SageMaker", "AmazonEC2ContainerRegistry_V20150921", "Logs_20140328"
  std::string host_prefix;    // AWS's host is <host_prefix>.<region>.amazonaws.com: "api.sagemaker", "api.ecr", "logs"
};

// The endpoint for a service: the configured override (AWS_ENDPOINT_URL_<ID>, --endpoint-url) or
// https://<host>.
Url service_endpoint(const ClientConfig& cfg, const std::string& service_id, const std::string& host);
// Throws a kiln::Error with a hint when no region is configured.
void need_region(const ClientConfig& cfg, const std::string& what);

// Sends `op` with `body`; throws AwsError / TransportError (aws/client.h) or kiln::Error when the
// answer is not JSON.
nlohmann::json json_rpc_call(const ClientConfig& cfg, const JsonService& svc, const std::string& op,
                             const nlohmann::json& body);

}  // namespace kiln::aws
