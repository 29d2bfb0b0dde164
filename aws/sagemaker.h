// SageMaker (JSON 1.1 protocol, X-Amz-Target: SageMaker.<Op>) and SageMaker Runtime
// (InvokeEndpoint, REST). Request bodies are built by free functions so tests can check them
// against botocore's service model without sending anything. Also the SageMaker SDK's default
// bucket and the training-time lines it prints after a job.
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
  // Called after each status poll that did not finish and then every `tick` while waiting (to
  // follow the job's logs between status polls that grow apart); should not throw.
  std::function<void()> on_tick;
  std::chrono::milliseconds tick{5000};
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

// The lines the SageMaker SDK prints after a completed training job (estimator.fit's wait), from
// its DescribeTrainingJob answer: "Training seconds: N" (TrainingTimeInSeconds), "Billable
// seconds: N" (BillableTimeInSeconds), both times ResourceConfig.InstanceCount as the SDK does,
// and for spot jobs "Managed Spot Training savings: X%" = (1 - billable/training) * 100 with one
// decimal. A field that is absent gives no line (no savings line when training time is 0).
std::vector<std::string> training_time_summary(const nlohmann::json& describe_training_job);

class S3Client;

// The SageMaker SDK's default bucket (Session.default_bucket()): sagemaker-REGION-ACCOUNT, the
// account taken from the execution role's ARN, else from STS GetCallerIdentity.
struct DefaultBucket {
  std::string name, account;
  std::string account_source;  // "role ARN" or "STS GetCallerIdentity"
};
DefaultBucket default_bucket(const ClientConfig& cfg, const std::string& role_arn);
// Creates `bucket` when HeadBucket says it does not exist (CreateBucket without a body in
// us-east-1, with CreateBucketConfiguration/LocationConstraint elsewhere); BucketAlreadyOwnedByYou
// and a concurrent creation (OperationAborted) count as success. Returns true when it created
// the bucket. Throws kiln::Error naming the bucket when it belongs to another account.
bool ensure_bucket(S3Client& s3, const std::string& bucket);

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
