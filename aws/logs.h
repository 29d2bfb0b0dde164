// Amazon CloudWatch Logs (JSON 1.1, X-Amz-Target: Logs_20140328.<Op>, signing name "logs"):
// reading a log group's streams (DescribeLogStreams, GetLogEvents) and, for tests and tools,
// writing them (CreateLogGroup, CreateLogStream, PutLogEvents). TrainingLogFollower prints a
// SageMaker training job's output from /aws/sagemaker/TrainingJobs while the job runs, as the
// SageMaker SDK's estimator.fit(logs=True) does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kiln/aws/client.h"

namespace kiln::aws {

struct LogStreamInfo {
  std::string name;
  int64_t creation_time = 0, last_event_timestamp = 0;  // ms since the epoch; 0 when absent
};

struct LogEvent {
  int64_t timestamp = 0;  // ms since the epoch
  std::string message;
};

struct LogEventsPage {
  std::vector<LogEvent> events;
  std::string next_forward_token, next_backward_token;
};

class LogsClient {
 public:
  explicit LogsClient(ClientConfig cfg);

  // Every stream of `group` whose name starts with `prefix`, ordered by name (follows nextToken,
  // at most 1000 pages). ResourceNotFoundException (no such group) comes through as AwsError.
  std::vector<LogStreamInfo> describe_log_streams(const std::string& group, const std::string& prefix);
  // One page of a stream's events, oldest first from next_token ("" = the stream's start: startFromHead).
  LogEventsPage get_log_events(const std::string& group, const std::string& stream, const std::string& next_token);

  // Writing (tests, tools). An existing group / stream is not an error.
  void create_log_group(const std::string& group);
  void create_log_stream(const std::string& group, const std::string& stream);
  // Events must be in timestamp order (CloudWatch's rule); at most 10,000 per call.
  void put_log_events(const std::string& group, const std::string& stream, const std::vector<LogEvent>& events);

  const ClientConfig& config() const { return cfg_; }

 private:
  ClientConfig cfg_;
};

// "JOB/algo-1-1700000000" -> "algo-1": the host part of a SageMaker training log stream name
// (the part after "JOB/", less the trailing "-<epoch seconds>"); the name after "JOB/" when it
// has no such suffix.
std::string training_log_host(const std::string& stream_name, const std::string& job_name);

// Follows every stream "JOB/..." (one per host) of /aws/sagemaker/TrainingJobs. Each poll() reads
// every stream from where it stopped until its forward token repeats, and hands each new event's
// message to `print` once, merging streams by timestamp (a stream's own order is kept); with
// several hosts (instance_count > 1 or several streams seen) each line is prefixed "[algo-N] ".
// A missing group or stream (ResourceNotFoundException) means "not yet". Other errors never
// escape: the first one is reported through `warn`, later ones are silent, and the next poll
// tries again.
class TrainingLogFollower {
 public:
  static constexpr const char* kLogGroup = "/aws/sagemaker/TrainingJobs";
  using Print = std::function<void(const std::string&)>;

  TrainingLogFollower(ClientConfig cfg, std::string job_name, int64_t instance_count, Print print, Print warn);
  void poll();
  // After the job ended: look for streams once more and read every stream to its end.
  void drain();

  int64_t events_printed() const { return printed_; }
  size_t streams() const { return streams_.size(); }
  bool warned() const { return warned_; }

 private:
  struct Stream {
    std::string name, host, token;
  };
  void discover();
  void report(const std::string& what, const std::exception& e);
  LogsClient client_;
  std::string job_;
  int64_t instance_count_;
  Print print_, warn_;
  std::vector<Stream> streams_;
  int64_t printed_ = 0;
  bool warned_ = false;
};

}  // namespace kiln::aws
