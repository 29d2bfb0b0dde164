// STS, CloudWatch Logs and what `kiln sagemaker` builds on them, against moto_server (signatures
// checked) and local stand-ins: GetCallerIdentity; the SDK's default bucket (account from the
// role ARN or STS, created once, LocationConstraint outside us-east-1, another account's bucket
// refused); DescribeLogStreams / GetLogEvents paging; the training-log follower printing every
// event of every host once, in order, and never throwing; the training/billable seconds lines.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "kiln/aws/logs.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sagemaker_json.h"
#include "kiln/aws/sts.h"
#include "kiln/core/error.h"
#include "moto_fixture.h"

using namespace kiln::aws;
using kiln_test::MotoServer;
using kiln_test::ScopedEnv;
using nlohmann::json;

namespace {

ClientConfig moto_cfg(const std::string& secret_override = {}) {
  MotoServer& m = MotoServer::get();
  ClientConfig cfg;
  cfg.region = "us-east-1";
  cfg.endpoint_url = m.url;
  cfg.credentials = CredentialChain::fixed({m.key, secret_override.empty() ? m.secret : secret_override, "", {}, "moto"});
  cfg.retry.base_delay_s = 0.01;
  return cfg;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A follower whose printed lines and warnings are collected.
struct Collected {
  std::vector<std::string> lines, warnings;
  TrainingLogFollower make(const ClientConfig& cfg, const std::string& job, int64_t instances) {
    return TrainingLogFollower(
        cfg, job, instances, [this](const std::string& l) { lines.push_back(l); },
        [this](const std::string& w) { warnings.push_back(w); });
  }
};

}  // namespace

TEST_CASE("STS GetCallerIdentity: the account, ARN and user id of the signing key (moto checks SigV4)") {
  ScopedEnv env;
  CallerIdentity id = StsClient(moto_cfg()).get_caller_identity();
  CHECK(id.account == "123456789012");  // moto's account
  CHECK(id.arn == "arn:aws:iam::123456789012:user/kiln-test");  // the IAM user moto_helper.py setup made
  CHECK_FALSE(id.user_id.empty());
  try {
    StsClient(moto_cfg("wrong-secret-wrong-secret")).get_caller_identity();
    FAIL("a wrong secret was accepted by STS");
  } catch (const AwsError& e) {
    CHECK(e.status() == 403);
  }
}

TEST_CASE("STS request shape: form-encoded POST, Version 2011-06-15, regional endpoint and scope") {
  ScopedEnv env;
  ClientConfig cfg = moto_cfg();
  cfg.endpoint_url.clear();
  cfg.region = "eu-west-1";
  std::string seen;
  cfg.dry_run = [&](const std::string& t) { seen = t; };
  CallerIdentity id = StsClient(cfg).get_caller_identity();
  CHECK(id.account.empty());  // nothing was sent
  CHECK(seen.rfind("POST https://sts.eu-west-1.amazonaws.com/", 0) == 0);
  CHECK(seen.find("body: Action=GetCallerIdentity&Version=2011-06-15") != std::string::npos);
  CHECK(seen.find("/eu-west-1/sts/aws4_request") != std::string::npos);
  CHECK(seen.find("application/x-www-form-urlencoded") != std::string::npos);
  // An answer without an account is an error that says so.
  kiln_test::LocalServer s;
  s.svr.Post("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>x</Arn></GetCallerIdentityResult>"
                    "</GetCallerIdentityResponse>", "text/xml");
  });
  s.start();
  ClientConfig local = moto_cfg();
  local.endpoint_url = s.url();
  try {
    StsClient(local).get_caller_identity();
    FAIL("an identity without an account was accepted");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("Account") != std::string::npos);
  }
}

TEST_CASE("default bucket: sagemaker-REGION-ACCOUNT from the role ARN, else STS; created once, then found") {
  ScopedEnv env;
  ClientConfig cfg = moto_cfg();
  DefaultBucket from_role = default_bucket(cfg, "arn:aws:iam::111122223333:role/service-role/SageMakerRole");
  CHECK(from_role.name == "sagemaker-us-east-1-111122223333");
  CHECK(from_role.account_source == "role ARN");
  DefaultBucket from_sts = default_bucket(cfg, "");
  CHECK(from_sts.name == "sagemaker-us-east-1-123456789012");
  CHECK(from_sts.account == "123456789012");
  CHECK(from_sts.account_source == "STS GetCallerIdentity");
  S3Client s3(cfg);
  REQUIRE_FALSE(s3.bucket_exists(from_role.name));
  CHECK(ensure_bucket(s3, from_role.name));        // created
  CHECK(s3.bucket_exists(from_role.name));
  CHECK_FALSE(ensure_bucket(s3, from_role.name));  // the second time it is found
  s3.put_object(from_role.name, "k", "v");
  CHECK(s3.get_object(from_role.name, "k") == "v");
}

TEST_CASE("ensure_bucket: LocationConstraint outside us-east-1 only; another account's bucket is an error") {
  ScopedEnv env;
  kiln_test::LocalServer s;
  std::mutex mu;
  std::vector<std::string> puts;  // bodies of CreateBucket
  std::string head_answer = "404", put_answer = "200";
  s.svr.Get(R"(/([^/]+))", [&](const httplib::Request&, httplib::Response& res) {  // HEAD goes here too
    std::lock_guard<std::mutex> lock(mu);
    res.status = std::stoi(head_answer);
  });
  s.svr.Put(R"(/([^/]+))", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    puts.push_back(req.body);
    if (put_answer != "200") {
      res.status = 409;
      res.set_content("<Error><Code>" + put_answer + "</Code><Message>m</Message></Error>", "application/xml");
    }
  });
  s.start();
  ClientConfig cfg = moto_cfg();
  cfg.endpoint_url = s.url();
  {
    S3Client s3(cfg);
    CHECK(ensure_bucket(s3, "sagemaker-us-east-1-123456789012"));
    REQUIRE(puts.size() == 1);
    CHECK(puts[0].empty());  // us-east-1: no CreateBucketConfiguration
  }
  cfg.region = "eu-west-1";
  {
    S3Client s3(cfg);
    CHECK(ensure_bucket(s3, "sagemaker-eu-west-1-123456789012"));
    REQUIRE(puts.size() == 2);
    CHECK(puts[1].find("<LocationConstraint>eu-west-1</LocationConstraint>") != std::string::npos);
    put_answer = "BucketAlreadyOwnedByYou";  // success: it is ours
    CHECK_NOTHROW(ensure_bucket(s3, "sagemaker-eu-west-1-123456789012"));
    put_answer = "BucketAlreadyExists";  // someone else's
    try {
      ensure_bucket(s3, "sagemaker-eu-west-1-123456789012");
      FAIL("another account's bucket was accepted");
    } catch (const kiln::Error& e) {
      CHECK(std::string(e.what()).find("sagemaker-eu-west-1-123456789012") != std::string::npos);
      CHECK(e.hint().find("--bucket") != std::string::npos);
    }
    head_answer = "200";
    size_t before = puts.size();
    CHECK_FALSE(ensure_bucket(s3, "sagemaker-eu-west-1-123456789012"));  // exists: nothing created
    CHECK(puts.size() == before);
    head_answer = "403";
    CHECK_THROWS_AS(ensure_bucket(s3, "sagemaker-eu-west-1-123456789012"), kiln::Error);
  }
}

TEST_CASE("CloudWatch Logs: streams by prefix over several pages, events over several pages") {
  ScopedEnv env;
  LogsClient logs(moto_cfg());
  const std::string group = "/kiln/test-paging";
  logs.create_log_group(group);
  logs.create_log_group(group);  // existing: not an error
  for (int i = 1; i <= 55; ++i) logs.create_log_stream(group, "many/algo-" + std::to_string(i) + "-1700000000");
  logs.create_log_stream(group, "many/algo-1-1700000000");  // existing: not an error
  logs.create_log_stream(group, "other/algo-1-1700000000");
  std::vector<LogStreamInfo> streams = logs.describe_log_streams(group, "many/");
  CHECK(streams.size() == 55);  // two pages of at most 50
  for (const auto& st : streams) CHECK(st.name.rfind("many/", 0) == 0);
  CHECK(logs.describe_log_streams(group, "other/").size() == 1);

  // 10001 events: GetLogEvents answers at most 10000 at a time
  std::vector<LogEvent> batch;
  int64_t t0 = now_ms() - 60000;
  for (int i = 0; i < 10000; ++i) batch.push_back({t0 + i / 10, "event " + std::to_string(i)});
  logs.put_log_events(group, "many/algo-1-1700000000", batch);
  logs.put_log_events(group, "many/algo-1-1700000000", {{t0 + 2000, "event 10000"}});
  LogEventsPage p1 = logs.get_log_events(group, "many/algo-1-1700000000", "");
  CHECK(p1.events.size() == 10000);
  LogEventsPage p2 = logs.get_log_events(group, "many/algo-1-1700000000", p1.next_forward_token);
  REQUIRE(p2.events.size() == 1);
  CHECK(p2.events[0].message == "event 10000");
  LogEventsPage p3 = logs.get_log_events(group, "many/algo-1-1700000000", p2.next_forward_token);
  CHECK(p3.events.empty());
  CHECK(p3.next_forward_token == p2.next_forward_token);  // the end: the token repeats
  try {
    logs.get_log_events("/kiln/no-such-group", "x", "");
    FAIL("a missing group was not reported");
  } catch (const AwsError& e) {
    CHECK(e.code() == "ResourceNotFoundException");
  }
}

TEST_CASE("training log follower: every host's events printed once, in order, as they arrive") {
  ScopedEnv env;
  const std::string group = TrainingLogFollower::kLogGroup;
  const std::string job = "kiln-follow-" + std::to_string(now_ms());
  LogsClient logs(moto_cfg());
  Collected c;
  TrainingLogFollower f = c.make(moto_cfg(), job, 2);
  f.poll();  // no group or stream yet: "not yet", silently (the group may exist from another test)
  CHECK(c.lines.empty());
  CHECK(c.warnings.empty());
  logs.create_log_group(group);
  const std::string s1 = job + "/algo-1-1700000001", s2 = job + "/algo-2-1700000002";
  logs.create_log_stream(group, s1);
  logs.create_log_stream(group, job + "x/algo-1-1700000001");  // another job whose name starts alike
  logs.put_log_events(group, job + "x/algo-1-1700000001", {{now_ms(), "not this job"}});
  int64_t t = now_ms() - 100000;
  logs.put_log_events(group, s1, {{t + 1000, "a1"}, {t + 2000, "a2"}, {t + 3000, "a3"}});
  f.poll();
  CHECK(c.lines == std::vector<std::string>{"[algo-1] a1", "[algo-1] a2", "[algo-1] a3"});
  CHECK(f.streams() == 1);
  // the second host starts later; both streams get new events
  logs.create_log_stream(group, s2);
  logs.put_log_events(group, s2, {{t + 2500, "b1"}, {t + 3500, "b2"}});
  logs.put_log_events(group, s1, {{t + 4000, "a4"}});
  f.poll();
  CHECK(f.streams() == 2);
  f.poll();  // nothing new: nothing printed twice
  logs.put_log_events(group, s1, {{t + 5000, "a5"}});
  logs.put_log_events(group, s2, {{t + 5000, "b3"}, {t + 6000, "b4"}});
  f.drain();
  f.drain();
  std::vector<std::string> want = {"[algo-1] a1", "[algo-1] a2", "[algo-1] a3", "[algo-2] b1", "[algo-2] b2",
                                   "[algo-1] a4", "[algo-1] a5", "[algo-2] b3", "[algo-2] b4"};
  CHECK(c.lines == want);
  CHECK(f.events_printed() == 9);
  CHECK(c.warnings.empty());

  // one host: the messages as they are, no prefix
  Collected one;
  TrainingLogFollower g = one.make(moto_cfg(), job + "x", 1);
  g.drain();
  CHECK(one.lines == std::vector<std::string>{"not this job"});
}

TEST_CASE("training log follower: errors never escape, and are reported once") {
  ScopedEnv env;
  // nothing listens on this port: every request fails to connect
  ClientConfig dead = moto_cfg();
  dead.endpoint_url = "http://127.0.0.1:" + std::to_string(kiln_test::free_port());
  dead.retry.max_attempts = 1;
  Collected c;
  TrainingLogFollower f = c.make(dead, "kiln-dead", 1);
  CHECK_NOTHROW(f.poll());
  CHECK_NOTHROW(f.poll());
  CHECK_NOTHROW(f.drain());
  CHECK(c.warnings.size() == 1);
  CHECK(c.lines.empty());
  if (!c.warnings.empty()) CHECK(c.warnings[0].find("/aws/sagemaker/TrainingJobs") != std::string::npos);
  // a refused signature is not "not yet": one warning as well
  Collected bad;
  TrainingLogFollower b = bad.make(moto_cfg("wrong-secret-wrong-secret"), "kiln-bad", 1);
  CHECK_NOTHROW(b.poll());
  CHECK_NOTHROW(b.drain());
  CHECK(bad.warnings.size() == 1);
}

TEST_CASE("training log stream names: the host part") {
  CHECK(training_log_host("job/algo-1-1700000000", "job") == "algo-1");
  CHECK(training_log_host("job/algo-12-1700000000", "job") == "algo-12");
  CHECK(training_log_host("job/algo-2", "job") == "algo-2");
  CHECK(training_log_host("job-a/b/algo-3-17", "job-a/b") == "algo-3");
  CHECK(training_log_host("job/other-stream", "job") == "other-stream");
}

TEST_CASE("training time lines as the SageMaker SDK prints them after a job") {
  json spot = {{"TrainingTimeInSeconds", 1000}, {"BillableTimeInSeconds", 300}, {"EnableManagedSpotTraining", true},
               {"ResourceConfig", {{"InstanceCount", 1}, {"InstanceType", "ml.c5.9xlarge"}}}};
  CHECK(training_time_summary(spot) ==
        std::vector<std::string>{"Training seconds: 1000", "Billable seconds: 300", "Managed Spot Training savings: 70.0%"});
  json third = {{"TrainingTimeInSeconds", 3}, {"BillableTimeInSeconds", 1}, {"EnableManagedSpotTraining", true}};
  CHECK(training_time_summary(third).back() == "Managed Spot Training savings: 66.7%");
  json two = spot;
  two["ResourceConfig"]["InstanceCount"] = 2;  // the SDK multiplies the times by the instance count
  CHECK(training_time_summary(two) ==
        std::vector<std::string>{"Training seconds: 2000", "Billable seconds: 600", "Managed Spot Training savings: 70.0%"});
  json on_demand = spot;
  on_demand["EnableManagedSpotTraining"] = false;
  on_demand["BillableTimeInSeconds"] = 1000;
  CHECK(training_time_summary(on_demand) == std::vector<std::string>{"Training seconds: 1000", "Billable seconds: 1000"});
  json zero = {{"TrainingTimeInSeconds", 0}, {"BillableTimeInSeconds", 0}, {"EnableManagedSpotTraining", true}};
  CHECK(training_time_summary(zero) == std::vector<std::string>{"Training seconds: 0", "Billable seconds: 0"});
  CHECK(training_time_summary(json{{"TrainingJobStatus", "Completed"}}).empty());  // moto's answer has neither
}
