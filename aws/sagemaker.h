// SageMaker (JSON 1.1 protocol, X-Amz-Target: SageMaker.<Op>) and SageMaker Runtime
// (InvokeEndpoint, REST). Request bodies are built by free functions so tests can check them
// against botocore's service model without sending anything. Also the SageMaker SDK's default
// bucket and the training-time lines it prints after a job.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/client.h"

namespace kiln::aws {

struct TrainingJobSpec {
  std::string job_name, role_arn, image_uri;
  std::string instance_type = "ml.c5.9xlarge";
  int64_t instance_count = 1, volume_size_gb = 30;
  std::string input_s3_uri;   // the "training" channel (S3Prefix, FullyReplicated, File mode)
  std::string pretrained_s3_uri;  // the "pretrained" channel (torchvision's weights file); "" = none
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
// A poll that fails transiently (TransportError, HTTP 5xx, 429 or a throttling code, after the
// client's own retries) does not end the wait: the first failure of each run of failures is
// reported through on_warning (stderr when unset) and polling goes on until the bound.
struct PollPolicy {
  std::chrono::milliseconds initial{5000}, max{60000};
  std::chrono::seconds timeout{72 * 3600};
  // Training waits only: when true, the bound is the job's own (CreationTime + MaxRuntimeInSeconds
  // + MaxWaitTimeInSeconds + 1 h, from its DescribeTrainingJob; `timeout` until that is known).
  // false (--wait-timeout given): `timeout` alone.
  bool bound_by_job = true;
  std::function<void(const std::string&)> on_warning;
  std::function<bool()> cancelled;  // checked every 100 ms while waiting; true stops with an Error
  // Called after each status poll that did not finish and then every `tick` while waiting (to
  // follow the job's logs between status polls that grow apart); should not throw.
  std::function<void()> on_tick;
  std::chrono::milliseconds tick{5000};
};

// A poll failure worth waiting out: TransportError, HTTP 5xx, 429, throttling/transient codes.
bool is_transient_failure(const std::exception& e);

// The latest time a training job can still be running, from its DescribeTrainingJob: CreationTime
// (epoch seconds or ISO 8601) + StoppingCondition.MaxRuntimeInSeconds + MaxWaitTimeInSeconds (when
// present) + 1 h for SageMaker to stop it and upload its output; nullopt when a field is missing.
std::optional<std::chrono::system_clock::time_point> training_job_bound(const nlohmann::json& describe_training_job);

// Fresh resource names for one deploy: BASE-m-SUFFIX (model), BASE-c-SUFFIX (endpoint config),
// BASE-e-SUFFIX (endpoint), SUFFIX = UTC YYYYMMDDHHMMSS-XXXX (4 random hex digits); BASE is cut
// and cleaned so each name is at most 63 characters and matches [a-zA-Z0-9](-*[a-zA-Z0-9])*.
struct DeployNames {
  std::string model, config, endpoint;
};
DeployNames fresh_deploy_names(const std::string& base);
// Does `name` fit SageMaker's resource names (1-63 characters, [a-zA-Z0-9](-*[a-zA-Z0-9])*)?
bool valid_sagemaker_name(const std::string& name);

// The hint for a failed CreateTrainingJob / CreateEndpoint: ResourceLimitExceeded names the
// Service Quotas entry ("ml.c5.9xlarge for spot training job usage", "... for endpoint usage"),
// AccessDenied mentioning PassRole names iam:PassRole on the role. "" when neither applies.
std::string create_failure_hint(const AwsError& e, const std::string& instance_type, bool training, bool spot,
                                const std::string& role_arn);
// The Service Quotas names SageMaker checks for an instance type.
std::string training_quota_name(const std::string& instance_type, bool spot);
std::string endpoint_quota_name(const std::string& instance_type);

class SageMakerClient {
 public:
  explicit SageMakerClient(ClientConfig cfg);
  nlohmann::json call(const std::string& op, const nlohmann::json& body);

  // Create calls are idempotent across lost answers: when the client had to retry (the first
  // request may have reached SageMaker) and the retry is told the name exists (ResourceInUse,
  // "already existing"), the resource is described and accepted when it is ours (a job: same
  // role, image, output path and instance type; a model: same role, image and model data; a
  // config: same model and instance type; an endpoint: same config); otherwise kiln::Error.
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
  nlohmann::json describe_endpoint_config(const std::string& name);
  nlohmann::json describe_model(const std::string& name);
  // DeleteEndpoint, waiting out the states in which SageMaker refuses it (Creating, Updating,
  // SystemUpdating, RollingBack) and transient failures: retried at the poll's intervals until
  // it is accepted or the endpoint is gone (returns ""), or until poll.timeout / poll.cancelled
  // or a refusal that waiting cannot cure (returns why, with the endpoint's last status).
  std::string delete_endpoint_waiting(const std::string& name, const PollPolicy& poll,
                                      const std::function<void(const std::string&)>& on_event);

  const ClientConfig& config() const { return cfg_; }

 private:
  // `op` with the idempotency rule above; `ours` says why an existing resource is not ours ("" = it is).
  nlohmann::json create_call(const std::string& op, const std::string& name, const nlohmann::json& body,
                             const std::function<std::string()>& ours);
  ClientConfig cfg_;
};

// Is this AWS error SageMaker's "not found" (ValidationException "Could not find ..." / "does not exist")?
bool is_not_found(const AwsError& e);

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
