// SageMaker and SageMaker Runtime clients (see sagemaker.h).
#include "aws/sagemaker.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <thread>

#include "aws/iam.h"
#include "aws/json_rpc.h"
#include "aws/s3.h"
#include "aws/sts.h"
#include "core/error.h"

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
  if (s.spot) stop["MaxWaitTimeInSeconds"] = s.max_wait_s;
  json b = {
      {"TrainingJobName", s.job_name},
      {"RoleArn", s.role_arn},
      {"AlgorithmSpecification",
       {{"TrainingImage", s.image_uri}, {"TrainingInputMode", "File"}, {"MetricDefinitions", metrics}}},
      {"HyperParameters", hp},
      {"InputDataConfig",
       json::array({{{"ChannelName", "training"},
                     {"DataSource",
                      {{"S3DataSource",
                        {{"S3DataType", "S3Prefix"},
                         {"S3Uri", s.input_s3_uri},
                         {"S3DataDistributionType", "FullyReplicated"}}}}},
                     {"InputMode", "File"}}})},
      {"OutputDataConfig", {{"S3OutputPath", s.output_s3_uri}}},
      {"ResourceConfig",
       {{"InstanceType", s.instance_type},
        {"InstanceCount", s.instance_count},
        {"VolumeSizeInGB", s.volume_size_gb}}},
      {"StoppingCondition", stop},
      {"EnableManagedSpotTraining", s.spot},
  };
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

std::string SageMakerClient::create_training_job(const TrainingJobSpec& s) {
  json r = call("CreateTrainingJob", create_training_job_body(s));
  return r.value("TrainingJobArn", "");
}

json SageMakerClient::describe_training_job(const std::string& name) {
  return call("DescribeTrainingJob", {{"TrainingJobName", name}});
}

void SageMakerClient::stop_training_job(const std::string& name) {
  call("StopTrainingJob", {{"TrainingJobName", name}});
}

template <class Describe, class Done>
static json poll(const PollPolicy& p, const std::string& what, Describe describe, Done done) {
  auto deadline = std::chrono::steady_clock::now() + p.timeout;
  auto delay = p.initial;
  for (;;) {
    json d = describe();
    if (done(d)) return d;
    if (std::chrono::steady_clock::now() + delay > deadline)
      throw Error(what + ": still not finished after " + std::to_string(p.timeout.count()) + " s",
                  "it may still be running: check the AWS console, or wait again");
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
  json d = poll(p, "training job " + name, [&] { return describe_training_job(name); }, [&](const json& j) {
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
  });
  if (status == "Failed")
    throw Error("training job " + name + " failed: " + d.value("FailureReason", "(no FailureReason given)"),
                "the job's CloudWatch log group /aws/sagemaker/TrainingJobs has its output");
  if (status == "Stopped") throw Error("training job " + name + " was stopped");
  return d;
}

void SageMakerClient::create_model(const EndpointSpec& s) { call("CreateModel", create_model_body(s)); }
void SageMakerClient::create_endpoint_config(const EndpointSpec& s) {
  call("CreateEndpointConfig", create_endpoint_config_body(s));
}
void SageMakerClient::create_endpoint(const EndpointSpec& s) { call("CreateEndpoint", create_endpoint_body(s)); }

json SageMakerClient::describe_endpoint(const std::string& name) {
  return call("DescribeEndpoint", {{"EndpointName", name}});
}

json SageMakerClient::wait_endpoint(const std::string& name, const PollPolicy& p,
                                    const std::function<void(const std::string&)>& on_event) {
  std::string status;
  json d = poll(p, "endpoint " + name, [&] { return describe_endpoint(name); }, [&](const json& j) {
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
