// SageMaker without JSON: the specs of a training job and an endpoint, resource names, the
// Service Quotas and PassRole hints, the polling policy, the SageMaker SDK's default bucket and
// SageMaker Runtime (InvokeEndpoint, REST). The control-plane client and the request bodies speak
// nlohmann/json and live in the internal aws/sagemaker_json.h (not installed).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kiln/aws/client.h"

namespace kiln::aws {

struct TrainingJobSpec {
  std::string job_name, role_arn, image_uri;
  std::string instance_type = "ml.c5.9xlarge";
  int64_t instance_count = 1, volume_size_gb = 30;
  std::string input_s3_uri;   // the "training" channel (S3Prefix, File mode)
  bool input_sharded = false;  // its S3DataDistributionType: ShardedByS3Key, else FullyReplicated
  std::string test_s3_uri;     // the "test" channel (FullyReplicated); "" = none
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

// Is this AWS error SageMaker's "not found" (ValidationException "Could not find ..." / "does not exist")?
bool is_not_found(const AwsError& e);

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
