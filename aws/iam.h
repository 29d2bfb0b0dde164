// IAM (query protocol: form-encoded POST, XML answers) — just what checking a SageMaker
// execution role needs: GetRole, ListAttachedRolePolicies, ListRolePolicies, GetRolePolicy,
// and what creating one needs (the notebook's step 1: CreateRole, AttachRolePolicy).
// IAM is global: signed for us-east-1 at iam.amazonaws.com.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/client.h"
#include "kiln/aws/xml.h"

namespace kiln::aws {

struct RoleInfo {
  std::string name, arn, assume_role_policy;  // the trust policy, decoded JSON text
};

struct AttachedPolicy {
  std::string name, arn;
};

// What the role check found; ok() when SageMaker may assume the role and it has S3 and
// SageMaker access. notes explain each verdict in words.
struct RoleCheck {
  bool assumable_by_sagemaker = false, s3_access = false, sagemaker_access = false;
  std::vector<std::string> notes;
  bool ok() const { return assumable_by_sagemaker && s3_access && sagemaker_access; }
};

std::string role_name_from_arn(const std::string& arn);  // arn:aws:iam::123:role/path/Name -> Name
std::string account_from_arn(const std::string& arn);    // -> 123

class IamClient {
 public:
  explicit IamClient(ClientConfig cfg);
  XmlNode call(const std::string& action, const std::vector<std::pair<std::string, std::string>>& params);

  RoleInfo get_role(const std::string& role_name);
  std::vector<AttachedPolicy> list_attached_role_policies(const std::string& role_name);
  std::vector<std::string> list_role_policies(const std::string& role_name);
  std::string get_role_policy(const std::string& role_name, const std::string& policy_name);  // JSON text
  // A managed policy's default version document (GetPolicy + GetPolicyVersion), JSON text.
  std::string get_policy_document(const std::string& policy_arn);

  RoleCheck check_sagemaker_role(const std::string& role_arn_or_name);

  // nullopt when the role does not exist (NoSuchEntity).
  std::optional<RoleInfo> find_role(const std::string& role_name);
  RoleInfo create_role(const std::string& role_name, const std::string& trust_policy, const std::string& description);
  void attach_role_policy(const std::string& role_name, const std::string& policy_arn);

  // The notebook's execution role, idempotently: creates `role_name` with sagemaker_trust_policy()
  // when missing, attaches each of sagemaker_role_policies() not attached yet. Returns the role;
  // `log` gets one line per action ("created role ...", "attached ...", "... already attached").
  // A role that exists without trusting SageMaker is left as it is (check_sagemaker_role says so).
  RoleInfo ensure_sagemaker_role(const std::string& role_name, const std::function<void(const std::string&)>& log);

 private:
  ClientConfig cfg_;
};

// {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service":
// "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
std::string sagemaker_trust_policy();
// arn:aws:iam::aws:policy/AmazonSageMakerFullAccess and arn:aws:iam::aws:policy/AmazonS3FullAccess
std::vector<std::string> sagemaker_role_policies();


// Which of s3 / sagemaker a policy document (JSON text) allows in an Allow statement
// ("*", "s3:*", "s3:GetObject", "sagemaker:*", ...). Deny statements are not evaluated.
struct PolicyGrants {
  bool s3 = false, sagemaker = false;
};
PolicyGrants policy_grants(const std::string& document);
// Does the trust policy let sagemaker.amazonaws.com call sts:AssumeRole?
bool trusts_sagemaker(const std::string& trust_policy);

}  // namespace kiln::aws
