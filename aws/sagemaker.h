// SageMaker (JSON 1.1 protocol, X-Amz-Target: SageMaker.<Op>) and SageMaker Runtime
// (InvokeEndpoint, REST). Request bodies are built by free functions so tests can check them
// against botocore's service model without sending anything.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "aws/client.h"

namespace kiln::aws {

struct TrainingJobSpec {
  std::string job_name, role_arn, image_uri;
  std::string instance_type = "ml.c5.9xlarge";
  int64_t instance_count = 1, volume_size_gb = 30;
  std::string input_s3_uri;   // the "training" channel (S3Prefix, FullyReplicated, File mode)
  std::string output_s3_uri;  // OutputDataConfig.S3OutputPath: SageMaker writes model.tar.gz there
  std::string checkpoint_s3_uri, checkpoint_local_path = "/opt/ml/checkpoints";  // empty uri: none
  bool spot = true;
  int64_t max_run_s = 24 * 3600, max_wait_s = 48 * 3600;  // max_wait only with spot, >= max_run
  std::map<std::string, std::string> hyperparameters;      // sent as strings
  std::vector<std::pair<std::string, std::string>> metric_definitions;  // name, regex
};

struct EndpointSpec {
  std::string model_name, config_name, endpoint_name, role_arn, image_uri, model_data_url;
  std::string instance_type = "ml.c4.8xlarge";
  int64_t instance_count = 1;
};

nlohmann::json create_training_job_body(const TrainingJobSpec& s);
nlohmann::json create_model_body(const EndpointSpec& s);
nlohmann::json create_endpoint_config_body(const EndpointSpec& s);
nlohmann::json create_endpoint_body(const EndpointSpec& s);

// The regexes SageMaker scrapes from the job's stdout (first capture group), matching the lines
// `kiln train` prints: "epoch=1 train_loss=4.1234 train_acc=0.0812 val_loss=3.9 val_acc=0.11"
// and "test_loss=... test_acc=...".
std::vector<std::pair<std::string, std::string>> kiln_metric_definitions();

// Waiting: poll interval starts at initial and grows by 1.5x up to max; total bounded by timeout.
struct PollPolicy {
  std::chrono::milliseconds initial{5000}, max{60000};
  std::chrono::seconds timeout{72 * 3600};
  std::function<bool()> cancelled;  // checked every 100 ms while waiting; true stops with an Error
};

class SageMakerClient {
 public:
  explicit SageMakerClient(ClientConfig cfg);
  nlohmann::json call(const std::string& op, const nlohmann::json& body);

  std::string create_training_job(const TrainingJobSpec& s);  // returns the job ARN
  nlohmann::json describe_training_job(const std::string& name);
  void stop_training_job(const std::string& name);
  // Polls until Completed/Failed/Stopped; on_event gets each status / secondary-status change.
  nlohmann::json wait_training_job(const std::string& name, const PollPolicy& poll,
                                   const std::function<void(const std::string&)>& on_event);

  void create_model(const EndpointSpec& s);
  void create_endpoint_config(const EndpointSpec& s);
  void create_endpoint(const EndpointSpec& s);
  nlohmann::json describe_endpoint(const std::string& name);
  // Polls until InService (returns) or Failed / OutOfService (throws with FailureReason).
  nlohmann::json wait_endpoint(const std::string& name, const PollPolicy& poll,
                               const std::function<void(const std::string&)>& on_event);
  void delete_endpoint(const std::string& name);
  void delete_endpoint_config(const std::string& name);
  void delete_model(const std::string& name);

  const ClientConfig& config() const { return cfg_; }

 private:
  ClientConfig cfg_;
};

struct InvokeResult {
  std::string body, content_type, invoked_variant;
};

class SageMakerRuntimeClient {
 public:
  explicit SageMakerRuntimeClient(ClientConfig cfg);
  InvokeResult invoke_endpoint(const std::string& endpoint_name, const std::string& body,
                               const std::string& content_type, const std::string& accept);

 private:
  ClientConfig cfg_;
};

}  // namespace kiln::aws
