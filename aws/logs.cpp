// CloudWatch Logs client and the training-job log follower (see logs.h).
#include "kiln/aws/logs.h"

#include <algorithm>
#include <cctype>

#include "kiln/aws/json_rpc.h"
#include "kiln/core/error.h"

namespace kiln::aws {

using nlohmann::json;

namespace {
const JsonService kLogs{"CloudWatch Logs", "logs", "logs", "Logs_20140328", "logs"};

bool is_not_found(const AwsError& e) { return e.code() == "ResourceNotFoundException"; }

int64_t int_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

std::string string_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
}  // namespace

LogsClient::LogsClient(ClientConfig cfg) : cfg_(std::move(cfg)) {}

std::vector<LogStreamInfo> LogsClient::describe_log_streams(const std::string& group, const std::string& prefix) {
  std::vector<LogStreamInfo> out;
  std::string token;
  for (int page = 0; page < 1000; ++page) {
    json body = {{"logGroupName", group}, {"orderBy", "LogStreamName"}, {"limit", 50}};
    if (!prefix.empty()) body["logStreamNamePrefix"] = prefix;
    if (!token.empty()) body["nextToken"] = token;
    json r = json_rpc_call(cfg_, kLogs, "DescribeLogStreams", body);
    if (r.contains("logStreams")) {
      if (!r["logStreams"].is_array())
        fail("CloudWatch Logs DescribeLogStreams response", "a logStreams list", std::string(r["logStreams"].type_name()));
      for (const json& s : r["logStreams"]) {
        if (!s.is_object()) continue;
        out.push_back({string_field(s, "logStreamName"), int_field(s, "creationTime"), int_field(s, "lastEventTimestamp")});
      }
    }
    std::string next = string_field(r, "nextToken");
    if (next.empty() || next == token) break;
    token = next;
  }
  return out;
}

LogEventsPage LogsClient::get_log_events(const std::string& group, const std::string& stream, const std::string& next_token) {
  json body = {{"logGroupName", group}, {"logStreamName", stream}, {"startFromHead", true}};
  if (!next_token.empty()) body["nextToken"] = next_token;
  json r = json_rpc_call(cfg_, kLogs, "GetLogEvents", body);
  LogEventsPage p;
  if (r.contains("events")) {
    if (!r["events"].is_array())
      fail("CloudWatch Logs GetLogEvents response", "an events list", std::string(r["events"].type_name()));
    for (const json& e : r["events"]) {
      if (!e.is_object()) continue;
      p.events.push_back({int_field(e, "timestamp"), string_field(e, "message")});
    }
  }
  p.next_forward_token = string_field(r, "nextForwardToken");
  p.next_backward_token = string_field(r, "nextBackwardToken");
  return p;
}

void LogsClient::create_log_group(const std::string& group) {
  try {
    json_rpc_call(cfg_, kLogs, "CreateLogGroup", {{"logGroupName", group}});
  } catch (const AwsError& e) {
    if (e.code() != "ResourceAlreadyExistsException") throw;
  }
}

void LogsClient::create_log_stream(const std::string& group, const std::string& stream) {
  try {
    json_rpc_call(cfg_, kLogs, "CreateLogStream", {{"logGroupName", group}, {"logStreamName", stream}});
  } catch (const AwsError& e) {
    if (e.code() != "ResourceAlreadyExistsException") throw;
  }
}

void LogsClient::put_log_events(const std::string& group, const std::string& stream, const std::vector<LogEvent>& events) {
  if (events.size() > 10000)
    fail("PutLogEvents for " + group + " " + stream, "at most 10000 events per call", std::to_string(events.size()));
  json list = json::array();
  for (const LogEvent& e : events) list.push_back({{"timestamp", e.timestamp}, {"message", e.message}});
  json_rpc_call(cfg_, kLogs, "PutLogEvents", {{"logGroupName", group}, {"logStreamName", stream}, {"logEvents", list}});
}

std::string training_log_host(const std::string& stream_name, const std::string& job_name) {
  std::string host = stream_name;
  std::string prefix = job_name + "/";
  if (host.rfind(prefix, 0) == 0) host = host.substr(prefix.size());
  auto dash = host.rfind('-');
  if (dash != std::string::npos && dash > 0 && dash + 1 < host.size() &&
      std::all_of(host.begin() + static_cast<std::ptrdiff_t>(dash) + 1, host.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }) &&
      host.compare(0, 5, "algo-") == 0 && dash > 5)
    host.resize(dash);
  return host;
}

TrainingLogFollower::TrainingLogFollower(ClientConfig cfg, std::string job_name, int64_t instance_count, Print print,
                                         Print warn)
    : client_(std::move(cfg)), job_(std::move(job_name)), instance_count_(instance_count), print_(std::move(print)),
      warn_(std::move(warn)) {}

void TrainingLogFollower::report(const std::string& what, const std::exception& e) {
  if (warned_) return;
  warned_ = true;
  if (warn_)
    warn_("warning: cannot read the training job's logs (" + what + "): " + e.what() +
          "; still waiting for the job (its output is in CloudWatch log group " + kLogGroup + ")");
}

void TrainingLogFollower::discover() {
  std::vector<LogStreamInfo> found;
  try {
    found = client_.describe_log_streams(kLogGroup, job_ + "/");
  } catch (const AwsError& e) {
    if (!is_not_found(e)) report("DescribeLogStreams", e);
    return;
  } catch (const Error& e) {
    report("DescribeLogStreams", e);
    return;
  }
  for (const LogStreamInfo& s : found) {
    bool known = std::any_of(streams_.begin(), streams_.end(), [&](const Stream& k) { return k.name == s.name; });
    if (!known) streams_.push_back({s.name, training_log_host(s.name, job_), ""});
  }
}

void TrainingLogFollower::poll() {
  if (streams_.size() < static_cast<size_t>(std::max<int64_t>(1, instance_count_))) discover();
  std::vector<std::vector<LogEvent>> fresh(streams_.size());
  bool failed = false;
  for (size_t i = 0; i < streams_.size() && !failed; ++i) {
    Stream& s = streams_[i];
    for (int page = 0; page < 1000; ++page) {
      LogEventsPage p;
      try {
        p = client_.get_log_events(kLogGroup, s.name, s.token);
      } catch (const AwsError& e) {
        if (!is_not_found(e)) {
          report("GetLogEvents " + s.name, e);
          failed = true;
        }
        break;
      } catch (const Error& e) {
        report("GetLogEvents " + s.name, e);
        failed = true;
        break;
      }
      for (LogEvent& e : p.events) fresh[i].push_back(std::move(e));
      if (p.next_forward_token.empty() || p.next_forward_token == s.token) break;
      s.token = p.next_forward_token;
    }
  }
  // Merge by timestamp; each stream's own order is kept, ties go to the earlier stream.
  bool several = instance_count_ > 1 || streams_.size() > 1;
  std::vector<size_t> pos(fresh.size(), 0);
  for (;;) {
    size_t best = fresh.size();
    for (size_t i = 0; i < fresh.size(); ++i)
      if (pos[i] < fresh[i].size() &&
          (best == fresh.size() || fresh[i][pos[i]].timestamp < fresh[best][pos[best]].timestamp))
        best = i;
    if (best == fresh.size()) break;
    const LogEvent& e = fresh[best][pos[best]++];
    ++printed_;
    if (print_) print_(several ? "[" + streams_[best].host + "] " + e.message : e.message);
  }
}

void TrainingLogFollower::drain() {
  discover();
  poll();
}

}  // namespace kiln::aws
