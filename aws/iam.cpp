// IAM query-API client and the execution-role check (see iam.h).
#include "kiln/aws/iam.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kiln/core/error.h"

namespace kiln::aws {

using nlohmann::json;

std::string role_name_from_arn(const std::string& arn) {
  if (arn.rfind("arn:", 0) != 0) return arn;
  auto slash = arn.rfind('/');
  if (slash == std::string::npos || arn.find(":role/") == std::string::npos)
    fail("role ARN", "arn:aws:iam::ACCOUNT:role/NAME", "'" + arn + "'");
  return arn.substr(slash + 1);
}

std::string account_from_arn(const std::string& arn) {
  // arn:partition:service:region:account:resource
  size_t p = 0;
  for (int i = 0; i < 4; ++i) {
    p = arn.find(':', p);
    if (p == std::string::npos) return {};
    ++p;
  }
  auto e = arn.find(':', p);
  return e == std::string::npos ? std::string() : arn.substr(p, e - p);
}

IamClient::IamClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

XmlNode IamClient::call(const std::string& action, const std::vector<std::pair<std::string, std::string>>& params) {
  AwsRequest r;
  r.service_name = "IAM";
  r.operation = action;
  r.signing_name = "iam";
  r.signing_region = "us-east-1";
  std::string o = endpoint_override(cfg_, "iam");
  if (!o.empty()) {
    r.endpoint = Url::parse(o, "IAM endpoint URL");
    if (!r.endpoint.path.empty() && r.endpoint.path.back() == '/') r.endpoint.path.pop_back();
  } else {
    r.endpoint.host = "iam.amazonaws.com";
  }
  r.method = "POST";
  r.path = "/";
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  r.body = "Action=" + uri_encode(action, false) + "&Version=2010-05-08";
  for (const auto& [k, v] : params) r.body += "&" + uri_encode(k, false) + "=" + uri_encode(v, false);
  HttpResponse resp = send_request(cfg_, std::move(r));
  if (cfg_.dry_run) return XmlNode{};
  return parse_xml(resp.body, "IAM " + action + " response");
}

RoleInfo IamClient::get_role(const std::string& role_name) {
  XmlNode x = call("GetRole", {{"RoleName", role_name}});
  RoleInfo info;
  info.name = role_name;
  if (const XmlNode* role = x.find("Role")) {
    info.arn = role->child_text("Arn");
    info.assume_role_policy = uri_decode(role->child_text("AssumeRolePolicyDocument"));
  }
  return info;
}

std::vector<AttachedPolicy> IamClient::list_attached_role_policies(const std::string& role_name) {
  std::vector<AttachedPolicy> out;
  std::string marker;
  for (int page = 0; page < 100; ++page) {
    std::vector<std::pair<std::string, std::string>> params = {{"RoleName", role_name}};
    if (!marker.empty()) params.emplace_back("Marker", marker);
    XmlNode x = call("ListAttachedRolePolicies", params);
    if (const XmlNode* list = x.find("AttachedPolicies"))
      for (const XmlNode* m : list->all("member")) out.push_back({m->child_text("PolicyName"), m->child_text("PolicyArn")});
    const XmlNode* res = x.find("ListAttachedRolePoliciesResult");
    if (!res || res->child_text("IsTruncated") != "true") break;
    marker = res->child_text("Marker");
    if (marker.empty()) break;
  }
  return out;
}

std::vector<std::string> IamClient::list_role_policies(const std::string& role_name) {
  std::vector<std::string> out;
  std::string marker;
  for (int page = 0; page < 100; ++page) {
    std::vector<std::pair<std::string, std::string>> params = {{"RoleName", role_name}};
    if (!marker.empty()) params.emplace_back("Marker", marker);
    XmlNode x = call("ListRolePolicies", params);
    if (const XmlNode* list = x.find("PolicyNames"))
      for (const XmlNode* m : list->all("member")) out.push_back(m->text);
    const XmlNode* res = x.find("ListRolePoliciesResult");
    if (!res || res->child_text("IsTruncated") != "true") break;
    marker = res->child_text("Marker");
    if (marker.empty()) break;
  }
  return out;
}

std::string IamClient::get_role_policy(const std::string& role_name, const std::string& policy_name) {
  XmlNode x = call("GetRolePolicy", {{"RoleName", role_name}, {"PolicyName", policy_name}});
  return uri_decode(x.find("PolicyDocument") ? x.find("PolicyDocument")->text : "");
}

std::string IamClient::get_policy_document(const std::string& policy_arn) {
  XmlNode p = call("GetPolicy", {{"PolicyArn", policy_arn}});
  const XmlNode* policy = p.find("Policy");
  std::string version = policy ? policy->child_text("DefaultVersionId") : "";
  if (version.empty()) return {};
  XmlNode v = call("GetPolicyVersion", {{"PolicyArn", policy_arn}, {"VersionId", version}});
  const XmlNode* doc = v.find("Document");
  return doc ? uri_decode(doc->text) : std::string();
}

static std::vector<std::string> as_list(const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) out.push_back(v);
  else if (v.is_array())
    for (const auto& e : v)
      if (e.is_string()) out.push_back(e);
  return out;
}

static std::vector<json> statements(const std::string& document) {
  json doc;
  try {
    doc = json::parse(document);
  } catch (const std::exception&) {
    return {};
  }
  if (!doc.is_object() || !doc.contains("Statement")) return {};
  if (doc["Statement"].is_object()) return {doc["Statement"]};
  if (doc["Statement"].is_array()) return std::vector<json>(doc["Statement"].begin(), doc["Statement"].end());
  return {};
}

PolicyGrants policy_grants(const std::string& document) {
  PolicyGrants g;
  for (const json& st : statements(document)) {
    if (!st.is_object() || st.value("Effect", "") != "Allow" || !st.contains("Action")) continue;
    for (const std::string& a : as_list(st["Action"])) {
      if (a == "*") g.s3 = g.sagemaker = true;
      if (a.rfind("s3:", 0) == 0) g.s3 = true;
      if (a.rfind("sagemaker:", 0) == 0) g.sagemaker = true;
    }
  }
  return g;
}

bool trusts_sagemaker(const std::string& trust_policy) {
  for (const json& st : statements(trust_policy)) {
    if (!st.is_object() || st.value("Effect", "") != "Allow") continue;
    bool assume = false;
    if (st.contains("Action"))
      for (const std::string& a : as_list(st["Action"]))
        if (a == "sts:AssumeRole" || a == "sts:*" || a == "*") assume = true;
    if (!assume || !st.contains("Principal")) continue;
    const json& p = st["Principal"];
    if (p.is_string() && p == "*") return true;
    if (p.is_object() && p.contains("Service"))
      for (const std::string& s : as_list(p["Service"]))
        if (s == "sagemaker.amazonaws.com") return true;
  }
  return false;
}

RoleCheck IamClient::check_sagemaker_role(const std::string& role_arn_or_name) {
  RoleCheck c;
  std::string name = role_name_from_arn(role_arn_or_name);
  RoleInfo role = get_role(name);
  c.assumable_by_sagemaker = trusts_sagemaker(role.assume_role_policy);
  c.notes.push_back(c.assumable_by_sagemaker
                        ? "trust policy lets sagemaker.amazonaws.com assume the role"
                        : "trust policy does NOT let sagemaker.amazonaws.com assume the role");
  for (const AttachedPolicy& p : list_attached_role_policies(name)) {
    if (p.name == "AdministratorAccess") c.s3_access = c.sagemaker_access = true;
    if (p.name == "AmazonSageMakerFullAccess") {
      c.sagemaker_access = true;
      c.s3_access = true;
      c.notes.push_back("AmazonSageMakerFullAccess attached (its S3 access covers buckets whose name contains 'sagemaker')");
    }
    if (p.name == "AmazonS3FullAccess" || p.name == "AmazonS3ReadOnlyAccess") c.s3_access = true;
    if (p.name == "AmazonS3ReadOnlyAccess") c.notes.push_back("AmazonS3ReadOnlyAccess cannot write the model to S3");
    if (p.arn.rfind("arn:aws:iam::aws:policy/", 0) == 0) {
      c.notes.push_back("attached AWS managed policy " + p.name);
      continue;
    }
    // A customer managed policy: read its default version's document.
    PolicyGrants g = policy_grants(get_policy_document(p.arn));
    c.s3_access = c.s3_access || g.s3;
    c.sagemaker_access = c.sagemaker_access || g.sagemaker;
    c.notes.push_back("attached policy " + p.name + (g.s3 ? " (allows s3)" : "") + (g.sagemaker ? " (allows sagemaker)" : ""));
  }
  for (const std::string& p : list_role_policies(name)) {
    PolicyGrants g = policy_grants(get_role_policy(name, p));
    c.s3_access = c.s3_access || g.s3;
    c.sagemaker_access = c.sagemaker_access || g.sagemaker;
    c.notes.push_back("inline policy " + p + (g.s3 ? " (allows s3)" : "") + (g.sagemaker ? " (allows sagemaker)" : ""));
  }
  if (!c.s3_access) c.notes.push_back("no policy found granting S3 access (attach AmazonS3FullAccess or an inline s3 policy)");
  if (!c.sagemaker_access) c.notes.push_back("no policy found granting SageMaker access (attach AmazonSageMakerFullAccess)");
  return c;
}

std::string sagemaker_trust_policy() {
  return json({{"Version", "2012-10-17"},
               {"Statement", json::array({{{"Effect", "Allow"},
                                           {"Principal", {{"Service", "sagemaker.amazonaws.com"}}},
                                           {"Action", "sts:AssumeRole"}}})}})
      .dump();
}

std::vector<std::string> sagemaker_role_policies() {
  return {"arn:aws:iam::aws:policy/AmazonSageMakerFullAccess", "arn:aws:iam::aws:policy/AmazonS3FullAccess"};
}

std::optional<RoleInfo> IamClient::find_role(const std::string& role_name) {
  try {
    return get_role(role_name);
  } catch (const AwsError& e) {
    if (e.code() == "NoSuchEntity") return std::nullopt;
    throw;
  }
}

RoleInfo IamClient::create_role(const std::string& role_name, const std::string& trust_policy,
                                const std::string& description) {
  std::vector<std::pair<std::string, std::string>> params = {{"RoleName", role_name},
                                                              {"AssumeRolePolicyDocument", trust_policy}};
  if (!description.empty()) params.emplace_back("Description", description);
  XmlNode x = call("CreateRole", params);
  RoleInfo info;
  info.name = role_name;
  info.assume_role_policy = trust_policy;
  if (const XmlNode* role = x.find("Role")) info.arn = role->child_text("Arn");
  return info;
}

void IamClient::attach_role_policy(const std::string& role_name, const std::string& policy_arn) {
  call("AttachRolePolicy", {{"RoleName", role_name}, {"PolicyArn", policy_arn}});
}

RoleInfo IamClient::ensure_sagemaker_role(const std::string& role_name,
                                          const std::function<void(const std::string&)>& log) {
  if (role_name.empty() || role_name.size() > 64)
    fail("role name", "1 to 64 characters ([A-Za-z0-9+=,.@_-])", "'" + role_name + "'");
  std::optional<RoleInfo> role = find_role(role_name);
  if (role) {
    log("role " + role_name + " exists (" + role->arn + ")");
  } else {
    try {
      role = create_role(role_name, sagemaker_trust_policy(), "");
      log("created role " + role_name + " (" + role->arn + ") trusting sagemaker.amazonaws.com");
    } catch (const AwsError& e) {
      if (e.code() != "EntityAlreadyExists") throw;  // created concurrently, or a lost answer retried
      role = get_role(role_name);
      log("role " + role_name + " exists (" + role->arn + ")");
    }
  }
  std::vector<AttachedPolicy> attached = cfg_.dry_run ? std::vector<AttachedPolicy>{} : list_attached_role_policies(role_name);
  for (const std::string& arn : sagemaker_role_policies()) {
    bool have = std::any_of(attached.begin(), attached.end(), [&](const AttachedPolicy& p) { return p.arn == arn; });
    if (have) {
      log(arn + " already attached");
      continue;
    }
    attach_role_policy(role_name, arn);
    log("attached " + arn);
  }
  return *role;
}

}  // namespace kiln::aws
