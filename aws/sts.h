// AWS STS (query protocol: form-encoded POST, XML answers): GetCallerIdentity, which says whose
// credentials these are (account, ARN, user id) and needs no IAM permission. Sent to the
// regional endpoint sts.REGION.amazonaws.com (the SDKs' default), or sts.amazonaws.com signed
// for us-east-1 when no region is configured; AWS_ENDPOINT_URL_STS / --endpoint-url override it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/client.h"
#include "kiln/aws/xml.h"

namespace kiln::aws {

struct CallerIdentity {
  std::string account;  // "123456789012"
  std::string arn;      // "arn:aws:iam::123456789012:user/alice", "arn:aws:sts::123456789012:assumed-role/R/s"
  std::string user_id;  // "AIDA..." or "AROA...:session"
};

class StsClient {
 public:
  explicit StsClient(ClientConfig cfg);
  XmlNode call(const std::string& action, const std::vector<std::pair<std::string, std::string>>& params);

  // Throws AwsError / TransportError, or kiln::Error when the answer lacks the account.
  // Under --dry-run the request is printed and an empty identity returned.
  CallerIdentity get_caller_identity();

 private:
  ClientConfig cfg_;
};

}  // namespace kiln::aws
