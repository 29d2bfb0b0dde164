// SageMaker and SageMaker Runtime clients (see sagemaker.h).
#include "aws/sagemaker.h"

#include <algorithm>
#include <thread>

#include "aws/json_rpc.h"
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
    for (auto slept = std::chrono::milliseconds(0); slept < delay; slept += std::chrono::milliseconds(100)) {
      if (p.cancelled && p.cancelled()) throw Error(what + ": interrupted while waiting");
      std::this_thread::sleep_for(std::min(std::chrono::milliseconds(100), delay - slept));
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
