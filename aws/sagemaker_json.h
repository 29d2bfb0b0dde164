// The SageMaker control plane (JSON 1.1 protocol, X-Amz-Target: SageMaker.<Op>): the client
// whose requests and answers are JSON documents, the request bodies (built by free functions so
// tests can check them against botocore's service model without sending anything) and what is
// read from a DescribeTrainingJob answer.
// Internal, not installed: it exposes nlohmann/json, which kiln's installed headers never
// include. tools/ and the tests use it; the installed aws/sagemaker.h is the JSON-free part
// (job and endpoint specs, names, quotas, polling policy, SageMaker Runtime).
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/aws/client.h"
#include "kiln/aws/sagemaker.h"

namespace kiln::aws {

nlohmann::json create_training_job_body(const TrainingJobSpec& s);
nlohmann::json create_model_body(const EndpointSpec& s);
nlohmann::json create_endpoint_config_body(const EndpointSpec& s);
nlohmann::json create_endpoint_body(const EndpointSpec& s);

// The latest time a training job can still be running, from its DescribeTrainingJob: CreationTime
// (epoch seconds or ISO 8601) + StoppingCondition.MaxRuntimeInSeconds + MaxWaitTimeInSeconds (when
// present) + 1 h for SageMaker to stop it and upload its output; nullopt when a field is missing.
std::optional<std::chrono::system_clock::time_point> training_job_bound(const nlohmann::json& describe_training_job);

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

// The lines the SageMaker SDK prints after a completed training job (estimator.fit's wait), from
// its DescribeTrainingJob answer: "Training seconds: N" (TrainingTimeInSeconds), "Billable
// seconds: N" (BillableTimeInSeconds), both times ResourceConfig.InstanceCount as the SDK does,
// and for spot jobs "Managed Spot Training savings: X%" = (1 - billable/training) * 100 with one
// decimal. A field that is absent gives no line (no savings line when training time is 0).
std::vector<std::string> training_time_summary(const nlohmann::json& describe_training_job);

}  // namespace kiln::aws
