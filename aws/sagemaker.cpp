// SageMaker and SageMaker Runtime clients (see sagemaker.h).
#include "kiln/aws/sagemaker.h"
#include "kiln/aws/sagemaker_json.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <thread>

#include "kiln/aws/iam.h"
#include "kiln/aws/http.h"
#include "kiln/aws/json_rpc.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sts.h"
#include "kiln/core/error.h"

namespace kiln::aws {

using nlohmann::json;

std::vector<std::pair<std::string, std::string>> kiln_metric_definitions() {
  // Agreed with the training side (the lines train/metrics_log.cpp prints): plain character classes, no
  // look-arounds or \b, so any regex engine SageMaker uses reads them the same way.
  std::vector<std::pair<std::string, std::string>> defs;
  for (const char* m : {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"})
    defs.emplace_back(m, std::string(m) + "=([0-9.eE+-]+)");
  defs.emplace_back("epoch", "^epoch=([0-9]+)");
  return defs;
}

json create_training_job_body(const TrainingJobSpec& s) {
  json hp = json::object();
  for (const auto& [k, v] : s.hyperparameters) hp[k] = v;
  json metrics = json::array();
  for (const auto& [n, re] : s.metric_definitions) metrics.push_back({{"Name", n}, {"Regex", re}});
  json stop = {{"MaxRuntimeInSeconds", s.max_run_s}};
  auto channel = [](const std::string& name, const std::string& uri, bool sharded = false) {
    return json{{"ChannelName", name},
                {"DataSource",
                 {{"S3DataSource",
                   {{"S3DataType", "S3Prefix"},
                    {"S3Uri", uri},
                    {"S3DataDistributionType", sharded ? "ShardedByS3Key" : "FullyReplicated"}}}}},
                {"InputMode", "File"}};
  };
  if (s.spot) stop["MaxWaitTimeInSeconds"] = s.max_wait_s;
  json b = {
      {"TrainingJobName", s.job_name},
      {"RoleArn", s.role_arn},
      {"AlgorithmSpecification",
       {{"TrainingImage", s.image_uri}, {"TrainingInputMode", "File"}, {"MetricDefinitions", metrics}}},
      {"HyperParameters", hp},
      {"InputDataConfig", json::array({channel("training", s.input_s3_uri, s.input_sharded)})},
      {"OutputDataConfig", {{"S3OutputPath", s.output_s3_uri}}},
      {"ResourceConfig",
       {{"InstanceType", s.instance_type},
        {"InstanceCount", s.instance_count},
        {"VolumeSizeInGB", s.volume_size_gb}}},
      {"StoppingCondition", stop},
      {"EnableManagedSpotTraining", s.spot},
  };
  if (!s.test_s3_uri.empty()) b["InputDataConfig"].push_back(channel("test", s.test_s3_uri));
  if (!s.pretrained_s3_uri.empty()) b["InputDataConfig"].push_back(channel("pretrained", s.pretrained_s3_uri));
  if (metrics.empty()) b["AlgorithmSpecification"].erase("MetricDefinitions");
  if (!s.checkpoint_s3_uri.empty())
    b["CheckpointConfig"] = {{"S3Uri", s.checkpoint_s3_uri}, {"LocalPath", s.checkpoint_local_path}};
  return b;
}

json create_model_body(const EndpointSpec& s) {
  return {{"ModelName", s.model_name},
          {"ExecutionRoleArn", s.role_arn},
          {"PrimaryContainer", {{"Image", s.image_uri}, {"ModelDataUrl", s.model_data_url}}}};
}

json create_endpoint_config_body(const EndpointSpec& s) {
  return {{"EndpointConfigName", s.config_name},
          {"ProductionVariants",
           json::array({{{"VariantName", "AllTraffic"},
                         {"ModelName", s.model_name},
                         {"InitialInstanceCount", s.instance_count},
                         {"InstanceType", s.instance_type},
                         {"InitialVariantWeight", 1.0}}})}};
}

json create_endpoint_body(const EndpointSpec& s) {
  return {{"EndpointName", s.endpoint_name}, {"EndpointConfigName", s.config_name}};
}

SageMakerClient::SageMakerClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

namespace {
const JsonService kSageMaker{"SageMaker", "sagemaker", "sagemaker", "SageMaker", "api.sagemaker"};
}  // namespace

json SageMakerClient::call(const std::string& op, const json& body) {
  return json_rpc_call(cfg_, kSageMaker, op, body);
}

bool is_transient_failure(const std::exception& e) {
  if (dynamic_cast<const TransportError*>(&e)) return true;
  if (const auto* a = dynamic_cast<const AwsError*>(&e))
    return a->status() >= 500 || a->status() == 429 || is_retryable(a->status(), a->code());
  return false;
}

bool is_not_found(const AwsError& e) {
  const std::string& m = e.aws_message();
  return e.code() == "ResourceNotFound" ||
         (e.code() == "ValidationException" && (m.find("Could not find") != std::string::npos ||
                                                m.find("does not exist") != std::string::npos));
}

static bool is_already_exists(const AwsError& e) {
  const std::string& m = e.aws_message();
  return e.code() == "ResourceInUse" || e.code() == "ResourceInUseException" ||
         (e.code() == "ValidationException" &&
          (m.find("already exist") != std::string::npos || m.find("Already Exists") != std::string::npos));
}

static std::optional<int64_t> epoch_seconds(const json& v) {
  // system_clock holds 64-bit nanoseconds (to the year 2262): larger times would overflow (UB),
  // as would casting a huge double (both found by fuzz_sagemaker_json)
  if (v.is_number()) {
    double d = v.get<double>();
    if (!(d >= 0 && d < 9e9)) return std::nullopt;
    return static_cast<int64_t>(d);
  }
  if (!v.is_string()) return std::nullopt;
  // "2026-12-03T07:01:58.123Z", "2026-12-03T07:01:58+00:00", "2026-12-03 07:01:58.123000+00:00"
  std::string t = v.get<std::string>();
  std::tm tm{};
  if (std::sscanf(t.c_str(), "%d-%d-%d%*c%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t secs = static_cast<int64_t>(timegm(&tm));
  // a numeric offset after the seconds (and fraction): +HH:MM / -HH:MM
  size_t p = t.find_first_of("+-", 19);
  if (p != std::string::npos && p + 6 <= t.size()) {
    int hh = 0, mm = 0;
    if (std::sscanf(t.c_str() + p + 1, "%d:%d", &hh, &mm) == 2) secs -= (t[p] == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
  }
  return secs;
}

std::optional<std::chrono::system_clock::time_point> training_job_bound(const json& d) {
  auto created = d.contains("CreationTime") ? epoch_seconds(d["CreationTime"]) : std::nullopt;
  if (!created || !d.contains("StoppingCondition") || !d["StoppingCondition"].is_object()) return std::nullopt;
  const json& sc = d["StoppingCondition"];
  int64_t run = sc.value("MaxRuntimeInSeconds", int64_t{0}), wait = sc.value("MaxWaitTimeInSeconds", int64_t{0});
  constexpr int64_t kMaxSeconds = 9'000'000'000;  // within system_clock's range
  if (run <= 0 || run > kMaxSeconds || wait < 0 || wait > kMaxSeconds || *created < 0 || *created > kMaxSeconds ||
      *created + run + wait + 3600 > kMaxSeconds)
    return std::nullopt;
  return std::chrono::system_clock::time_point(std::chrono::seconds(*created + run + wait + 3600));
}

static std::string utc_text(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool valid_sagemaker_name(const std::string& n) {
  if (n.empty() || n.size() > 63 || !std::isalnum(static_cast<unsigned char>(n.front())) ||
      !std::isalnum(static_cast<unsigned char>(n.back())))
    return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

DeployNames fresh_deploy_names(const std::string& base_in) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
  std::random_device rd;
  char rnd[8];
  std::snprintf(rnd, sizeof rnd, "%04x", static_cast<unsigned>(rd() & 0xFFFF));
  std::string suffix = std::string(stamp) + "-" + rnd;  // 19 characters
  std::string base;
  for (char c : base_in) base += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  const size_t room = 63 - 3 - suffix.size();  // "-m-"
  if (base.size() > room) base.resize(room);
  while (!base.empty() && base.back() == '-') base.pop_back();
  while (!base.empty() && base.front() == '-') base.erase(base.begin());
  if (base.empty()) base = "kiln";
  return {base + "-m-" + suffix, base + "-c-" + suffix, base + "-e-" + suffix};
}

std::string training_quota_name(const std::string& instance_type, bool spot) {
  return instance_type + (spot ? " for spot training job usage" : " for training job usage");
}
std::string endpoint_quota_name(const std::string& instance_type) { return instance_type + " for endpoint usage"; }

std::string create_failure_hint(const AwsError& e, const std::string& instance_type, bool training, bool spot,
                                const std::string& role_arn) {
  if (e.code() == "ResourceLimitExceeded") {
    std::string q = training ? training_quota_name(instance_type, spot) : endpoint_quota_name(instance_type);
    return "the account's SageMaker quota '" + q + "' is too low (new accounts often have 0): request an " +
           "increase in the Service Quotas console (Amazon SageMaker > " + q + "), or pick another instance type" +
           (training && spot ? " or --spot false ('" + training_quota_name(instance_type, false) + "')" : "");
  }
  const std::string& m = e.aws_message();
  if ((e.code() == "AccessDenied" || e.code() == "AccessDeniedException" || e.code() == "ValidationException") &&
      (m.find("PassRole") != std::string::npos || m.find("passrole") != std::string::npos))
    return "the identity sending the request needs iam:PassRole on the execution role " +
           (role_arn.empty() ? std::string("(--role-arn)") : role_arn) +
           " (e.g. a policy allowing iam:PassRole on it with iam:PassedToService sagemaker.amazonaws.com)";
  return "";
}

json SageMakerClient::create_call(const std::string& op, const std::string& name, const json& body,
                                  const std::function<std::string()>& ours) {
  ClientConfig c = cfg_;
  bool retried = false;
  c.on_retry = [&, prev = cfg_.on_retry](const std::string& why) {
    retried = true;
    if (prev) prev(why);
  };
  try {
    return json_rpc_call(c, kSageMaker, op, body);
  } catch (const AwsError& e) {
    if (!retried || !is_already_exists(e)) throw;
    std::string why = ours();
    if (!why.empty())
      throw Error(op + " " + name + ": the first request's answer was lost and the retry found " + name +
                      " already there, but it is not the one asked for: " + why,
                  "another run may use this name: pick another one (or delete it)");
    if (c.on_retry && cfg_.on_retry)
      cfg_.on_retry("SageMaker " + op + ": " + name + " exists and is ours: the lost first request created it");
    return json::object();
  }
}

static std::string differs(const std::string& what, const std::string& have, const std::string& want) {
  return have == want ? "" : what + " is '" + have + "', not '" + want + "'";
}

std::string SageMakerClient::create_training_job(const TrainingJobSpec& s) {
  json r = create_call("CreateTrainingJob", s.job_name, create_training_job_body(s), [&]() -> std::string {
    json d = describe_training_job(s.job_name);
    std::string image = d.contains("AlgorithmSpecification") ? d["AlgorithmSpecification"].value("TrainingImage", "") : "";
    std::string out = d.contains("OutputDataConfig") ? d["OutputDataConfig"].value("S3OutputPath", "") : "";
    std::string type = d.contains("ResourceConfig") ? d["ResourceConfig"].value("InstanceType", "") : "";
    for (const std::string& w : {differs("its RoleArn", d.value("RoleArn", ""), s.role_arn),
                                 differs("its TrainingImage", image, s.image_uri),
                                 differs("its S3OutputPath", out, s.output_s3_uri),
                                 differs("its InstanceType", type, s.instance_type)})
      if (!w.empty()) return w;
    return "";
  });
  if (!r.contains("TrainingJobArn")) {
    if (cfg_.dry_run) return "";
    return describe_training_job(s.job_name).value("TrainingJobArn", "");
  }
  return r.value("TrainingJobArn", "");
}

json SageMakerClient::describe_training_job(const std::string& name) {
  return call("DescribeTrainingJob", {{"TrainingJobName", name}});
}

void SageMakerClient::stop_training_job(const std::string& name) {
  call("StopTrainingJob", {{"TrainingJobName", name}});
}

// Polls describe() until done(); transient failures are waited out (see PollPolicy). bound(),
// when given and it knows, moves the deadline (the training job's own limit).
template <class Describe, class Done>
static json poll(const PollPolicy& p, const std::string& what, const std::string& op, Describe describe, Done done,
                 const std::function<std::optional<std::chrono::system_clock::time_point>(const json&)>& bound = {}) {
  auto deadline = std::chrono::steady_clock::now() + p.timeout;
  auto delay = p.initial;
  bool failing = false;
  std::string last_failure;
  for (;;) {
    std::optional<json> d;
    try {
      d = describe();
    } catch (const Error& e) {
      if (!is_transient_failure(e)) throw;
      last_failure = e.what();
      if (!failing) {
        std::string w = "warning: " + what + ": " + op + " failed (" + e.what() + "); still polling until " +
                        utc_text(std::chrono::system_clock::now() +
                                 std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                     deadline - std::chrono::steady_clock::now())) +
                        ": it may still be running";
        if (p.on_warning) p.on_warning(w);
        else std::fprintf(stderr, "%s\n", w.c_str());
      }
      failing = true;
    }
    if (d) {
      failing = false;
      if (done(*d)) return *d;
      if (bound)
        if (auto t = bound(*d))
          deadline = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(*t - std::chrono::system_clock::now());
    }
    if (std::chrono::steady_clock::now() + delay > deadline) {
      if (failing)
        throw Error(what + ": " + op + " kept failing until the wait's bound (last: " + last_failure + ")",
                    "it may still be running: check the AWS console, or wait again (kiln sagemaker attach)");
      throw Error(what + ": still not finished at the wait's bound (" + utc_text(std::chrono::system_clock::now()) + ")",
                  "it may still be running: check the AWS console, or wait again");
    }
    if (p.on_tick) p.on_tick();
    auto last_tick = std::chrono::steady_clock::now();
    for (auto slept = std::chrono::milliseconds(0); slept < delay; slept += std::chrono::milliseconds(100)) {
      if (p.cancelled && p.cancelled()) throw Error(what + ": interrupted while waiting");
      std::this_thread::sleep_for(std::min(std::chrono::milliseconds(100), delay - slept));
      if (p.on_tick && std::chrono::steady_clock::now() - last_tick >= p.tick) {
        p.on_tick();
        last_tick = std::chrono::steady_clock::now();
      }
    }
    delay = std::min(p.max, std::chrono::milliseconds(delay.count() * 3 / 2));
  }
}

json SageMakerClient::wait_training_job(const std::string& name, const PollPolicy& p,
                                        const std::function<void(const std::string&)>& on_event) {
  std::string status, secondary;
  size_t transitions = 0;
  std::function<std::optional<std::chrono::system_clock::time_point>(const json&)> bound;
  if (p.bound_by_job) bound = training_job_bound;
  json d = poll(
      p, "training job " + name, "DescribeTrainingJob", [&] { return describe_training_job(name); },
      [&](const json& j) {
        std::string st = j.value("TrainingJobStatus", ""), sec = j.value("SecondaryStatus", "");
        if (st != status || sec != secondary) {
          if (on_event) on_event("training job " + name + ": " + st + (sec.empty() ? "" : " / " + sec));
          status = st;
          secondary = sec;
        }
        if (j.contains("SecondaryStatusTransitions") && j["SecondaryStatusTransitions"].is_array()) {
          const auto& t = j["SecondaryStatusTransitions"];
          for (; transitions < t.size(); ++transitions)
            if (on_event && t[transitions].contains("StatusMessage"))
              on_event("  " + t[transitions].value("Status", "") + ": " + t[transitions].value("StatusMessage", ""));
        }
        return st == "Completed" || st == "Failed" || st == "Stopped";
      },
      bound);
  if (status == "Failed")
    throw Error("training job " + name + " failed: " + d.value("FailureReason", "(no FailureReason given)"),
                "the job's CloudWatch log group /aws/sagemaker/TrainingJobs has its output");
  if (status == "Stopped") throw Error("training job " + name + " was stopped");
  return d;
}

void SageMakerClient::create_model(const EndpointSpec& s) {
  create_call("CreateModel", s.model_name, create_model_body(s), [&]() -> std::string {
    json d = describe_model(s.model_name);
    json pc = d.value("PrimaryContainer", json::object());
    for (const std::string& w : {differs("its ExecutionRoleArn", d.value("ExecutionRoleArn", ""), s.role_arn),
                                 differs("its image", pc.value("Image", ""), s.image_uri),
                                 differs("its ModelDataUrl", pc.value("ModelDataUrl", ""), s.model_data_url)})
      if (!w.empty()) return w;
    return "";
  });
}

void SageMakerClient::create_endpoint_config(const EndpointSpec& s) {
  create_call("CreateEndpointConfig", s.config_name, create_endpoint_config_body(s), [&]() -> std::string {
    json d = describe_endpoint_config(s.config_name);
    json v = d.contains("ProductionVariants") && d["ProductionVariants"].is_array() && !d["ProductionVariants"].empty()
                 ? d["ProductionVariants"][0]
                 : json::object();
    for (const std::string& w : {differs("its variant's ModelName", v.value("ModelName", ""), s.model_name),
                                 differs("its variant's InstanceType", v.value("InstanceType", ""), s.instance_type)})
      if (!w.empty()) return w;
    return "";
  });
}

void SageMakerClient::create_endpoint(const EndpointSpec& s) {
  create_call("CreateEndpoint", s.endpoint_name, create_endpoint_body(s), [&]() -> std::string {
    json d = describe_endpoint(s.endpoint_name);
    return differs("its EndpointConfigName", d.value("EndpointConfigName", ""), s.config_name);
  });
}

json SageMakerClient::describe_endpoint(const std::string& name) {
  return call("DescribeEndpoint", {{"EndpointName", name}});
}
json SageMakerClient::describe_endpoint_config(const std::string& name) {
  return call("DescribeEndpointConfig", {{"EndpointConfigName", name}});
}
json SageMakerClient::describe_model(const std::string& name) { return call("DescribeModel", {{"ModelName", name}}); }

json SageMakerClient::wait_endpoint(const std::string& name, const PollPolicy& p,
                                    const std::function<void(const std::string&)>& on_event) {
  std::string status;
  json d = poll(p, "endpoint " + name, "DescribeEndpoint", [&] { return describe_endpoint(name); }, [&](const json& j) {
    std::string st = j.value("EndpointStatus", "");
    if (st != status && on_event) on_event("endpoint " + name + ": " + st);
    status = st;
    return st == "InService" || st == "Failed" || st == "OutOfService";
  });
  if (status != "InService")
    throw Error("endpoint " + name + " is " + status + ": " + d.value("FailureReason", "(no FailureReason given)"),
                "the endpoint's CloudWatch log group /aws/sagemaker/Endpoints/" + name + " has the container's output");
  return d;
}

std::string SageMakerClient::delete_endpoint_waiting(const std::string& name, const PollPolicy& p,
                                                     const std::function<void(const std::string&)>& on_event) {
  auto deadline = std::chrono::steady_clock::now() + p.timeout;
  auto delay = p.initial;
  std::string last, said;
  int settled_refusal = 0;
  for (;;) {
    try {
      delete_endpoint(name);
      return "";
    } catch (const AwsError& e) {
      if (is_not_found(e)) return "";
      last = e.what();
      if (!is_transient_failure(e)) {
        // Refused: wait only while the endpoint is in a state that refuses deletion (SageMaker
        // answers ValidationException then); AccessDenied and the like are final.
        if (e.code() != "ValidationException") return last;
        std::string st;
        try {
          st = describe_endpoint(name).value("EndpointStatus", "");
        } catch (const AwsError& d) {
          if (is_not_found(d)) return "";
          if (!is_transient_failure(d)) return last;
        } catch (const TransportError&) {
        }
        if (st == "Deleting") return "";
        bool busy = st.empty() || st == "Creating" || st == "Updating" || st == "SystemUpdating" || st == "RollingBack";
        // A refusal in a settled state is final, unless the endpoint was busy just before (it
        // may have settled between the refusal and the describe): then once more.
        if (!busy && (settled_refusal++ > 0 || said.empty())) return last + " (endpoint status " + st + ")";
        if (!st.empty()) last += " (endpoint status " + st + ")";
        if (on_event && said != st && busy) on_event("endpoint " + name + " is " + st + ": DeleteEndpoint refused; retrying");
        if (busy) said = st;
      }
    } catch (const TransportError& e) {
      last = e.what();
    }
    if (std::chrono::steady_clock::now() + delay > deadline) return last + " (gave up at the cleanup's time limit)";
    for (auto slept = std::chrono::milliseconds(0); slept < delay; slept += std::chrono::milliseconds(100)) {
      if (p.cancelled && p.cancelled()) return last + " (cleanup interrupted)";
      std::this_thread::sleep_for(std::min(std::chrono::milliseconds(100), delay - slept));
    }
    delay = std::min(p.max, std::chrono::milliseconds(delay.count() * 3 / 2));
  }
}

void SageMakerClient::delete_endpoint(const std::string& name) { call("DeleteEndpoint", {{"EndpointName", name}}); }
void SageMakerClient::delete_endpoint_config(const std::string& name) {
  call("DeleteEndpointConfig", {{"EndpointConfigName", name}});
}
void SageMakerClient::delete_model(const std::string& name) { call("DeleteModel", {{"ModelName", name}}); }

std::vector<std::string> training_time_summary(const json& d) {
  std::vector<std::string> out;
  auto seconds = [&](const char* name) -> std::optional<int64_t> {
    auto it = d.find(name);
    if (it == d.end() || !it->is_number()) return std::nullopt;
    return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
  };
  int64_t count = 1;
  if (auto rc = d.find("ResourceConfig"); rc != d.end() && rc->is_object())
    if (auto ic = rc->find("InstanceCount"); ic != rc->end() && ic->is_number_integer()) count = ic->get<int64_t>();
  std::optional<int64_t> training = seconds("TrainingTimeInSeconds"), billable = seconds("BillableTimeInSeconds");
  if (training) out.push_back("Training seconds: " + std::to_string(*training * count));
  if (billable) {
    out.push_back("Billable seconds: " + std::to_string(*billable * count));
    auto spot = d.find("EnableManagedSpotTraining");
    if (spot != d.end() && spot->is_boolean() && spot->get<bool>() && training && *training > 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "Managed Spot Training savings: %.1f%%",
                    (1.0 - static_cast<double>(*billable) / static_cast<double>(*training)) * 100.0);
      out.push_back(buf);
    }
  }
  return out;
}

DefaultBucket default_bucket(const ClientConfig& cfg, const std::string& role_arn) {
  need_region(cfg, "the default bucket sagemaker-REGION-ACCOUNT");
  DefaultBucket b;
  if (!role_arn.empty()) b.account = account_from_arn(role_arn);
  if (!b.account.empty()) {
    b.account_source = "role ARN";
  } else {
    b.account = StsClient(cfg).get_caller_identity().account;
    b.account_source = "STS GetCallerIdentity";
    if (b.account.empty() && cfg.dry_run) b.account = "ACCOUNT";  // --dry-run sent nothing
  }
  b.name = "sagemaker-" + cfg.region + "-" + b.account;
  return b;
}

bool ensure_bucket(S3Client& s3, const std::string& bucket) {
  bool exists = false;
  try {
    exists = s3.bucket_exists(bucket);
  } catch (const AwsError& e) {
    if (e.status() == 403)
      throw Error("bucket " + bucket + " exists but these credentials may not use it (HeadBucket: 403 " + e.code() + ")",
                  "it may belong to another account: pass --bucket with a bucket of yours");
    throw;
  }
  if (exists) return false;
  try {
    s3.create_bucket(bucket);  // BucketAlreadyOwnedByYou is success there
  } catch (const AwsError& e) {
    if (e.code() == "OperationAborted") return false;  // being created concurrently
    if (e.code() == "BucketAlreadyExists")
      throw Error("cannot create bucket " + bucket + ": the name is taken by another account",
                  "pass --bucket with a bucket of yours");
    throw;
  }
  return true;
}

SageMakerRuntimeClient::SageMakerRuntimeClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

InvokeResult SageMakerRuntimeClient::invoke_endpoint(const std::string& endpoint_name, const std::string& body,
                                                     const std::string& content_type, const std::string& accept) {
  need_region(cfg_, "SageMaker Runtime InvokeEndpoint");
  if (body.size() > (6u << 20))
    fail("InvokeEndpoint body", "at most 6 MiB (SageMaker's limit)", std::to_string(body.size()) + " bytes");
  AwsRequest r;
  r.service_name = "SageMaker Runtime";
  r.operation = "InvokeEndpoint";
  r.signing_name = "sagemaker";
  r.signing_region = cfg_.region;
  r.endpoint = service_endpoint(cfg_, "sagemaker_runtime", "runtime.sagemaker." + cfg_.region + ".amazonaws.com");
  r.method = "POST";
  r.path = "/endpoints/" + endpoint_name + "/invocations";
  r.headers = {{"Content-Type", content_type}, {"Accept", accept}};
  r.body = body;
  HttpResponse resp = send_request(cfg_, std::move(r));
  return {resp.body, resp.header("Content-Type"), resp.header("x-Amzn-Invoked-Production-Variant")};
}

}  // namespace kiln::aws
