// SageMaker Create* calls retried after a lost answer (a stand-in that processes the first
// request, then drops the connection before answering): the retry's "already exists" is success
// when the resource is ours, an error otherwise.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "kiln/aws/http.h"
#include "kiln/aws/sagemaker_json.h"
#include "test_util.h"

using namespace kiln::aws;
using nlohmann::json;

namespace {

struct LossySageMaker {
  kiln_test::LocalServer s;
  std::mutex mu;
  std::map<std::string, json> jobs;
  std::atomic<int> creates{0};
  bool drop_first = true;
  LossySageMaker() {
    s.svr.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      std::string target = req.get_header_value("X-Amz-Target");
      json b = json::parse(req.body);
      std::lock_guard<std::mutex> lock(mu);
      if (target == "SageMaker.CreateTrainingJob") {
        int n = ++creates;
        std::string name = b["TrainingJobName"];
        if (jobs.count(name)) {
          res.status = 400;
          res.set_content(json({{"__type", "ResourceInUse"}, {"message", "Training job names must be unique within an AWS account and region, and a training job with this name already exists (" + name + ")"}}).dump(),
                          "application/x-amz-json-1.1");
          return;
        }
        b["TrainingJobArn"] = "arn:aws:sagemaker:us-east-1:111122223333:training-job/" + name;
        jobs[name] = b;
        if (n == 1 && drop_first) {  // processed, then the answer is lost
          res.set_content_provider(100, "application/x-amz-json-1.1", [](size_t, size_t, httplib::DataSink& sink) {
            sink.write("{\"Tr", 4);
            return false;
          });
          return;
        }
        res.set_content(json({{"TrainingJobArn", b["TrainingJobArn"]}}).dump(), "application/x-amz-json-1.1");
      } else if (target == "SageMaker.DescribeTrainingJob") {
        auto it = jobs.find(b["TrainingJobName"]);
        if (it == jobs.end()) {
          res.status = 400;
          res.set_content(R"({"__type":"ValidationException","message":"Requested resource not found."})", "application/x-amz-json-1.1");
          return;
        }
        res.set_content(it->second.dump(), "application/x-amz-json-1.1");
      } else {
        res.status = 400;
        res.set_content(R"({"__type":"ValidationException","message":"unexpected"})", "application/x-amz-json-1.1");
      }
    });
    s.start();
  }
  ClientConfig config() {
    ClientConfig c;
    c.region = "us-east-1";
    c.endpoint_url = s.url();
    c.credentials = CredentialChain::fixed({"AKIDEXAMPLE", "secret", "", {}, "test"});
    c.retry.base_delay_s = 0.01;
    return c;
  }
};

TrainingJobSpec spec(const std::string& name, const std::string& image) {
  TrainingJobSpec t;
  t.job_name = name;
  t.role_arn = "arn:aws:iam::111122223333:role/R";
  t.image_uri = image;
  t.input_s3_uri = "s3://b/in";
  t.output_s3_uri = "s3://b/out";
  return t;
}

}  // namespace

TEST_CASE("CreateTrainingJob retried after a lost answer: ResourceInUse for our own job is success") {
  kiln_test::ScopedEnv env;
  LossySageMaker sm;
  SageMakerClient c(sm.config());
  std::string arn = c.create_training_job(spec("kiln-lost", "img:1"));
  CHECK(arn == "arn:aws:sagemaker:us-east-1:111122223333:training-job/kiln-lost");
  CHECK(sm.creates == 2);
}

TEST_CASE("CreateTrainingJob retried after a lost answer: a job of that name that is not ours is an error") {
  kiln_test::ScopedEnv env;
  LossySageMaker sm;  // (only for its config)
  // The first create is processed but its answer lost; the retry finds the name taken by a job
  // with another image (someone else's), which DescribeTrainingJob shows.
  kiln_test::LocalServer other;
  other.svr.Post("/", [&](const httplib::Request& req, httplib::Response& res) {
    std::string target = req.get_header_value("X-Amz-Target");
    static std::atomic<int> n{0};
    if (target == "SageMaker.CreateTrainingJob" && ++n == 1) {
      res.set_content_provider(100, "application/x-amz-json-1.1", [](size_t, size_t, httplib::DataSink& sink) {
        sink.write("{\"Tr", 4);
        return false;
      });
    } else if (target == "SageMaker.CreateTrainingJob") {
      res.status = 400;
      res.set_content(R"({"__type":"ResourceInUse","message":"a training job with this name already exists"})", "application/x-amz-json-1.1");
    } else {
      res.set_content(create_training_job_body(spec("kiln-taken", "other:image")).dump(), "application/x-amz-json-1.1");
    }
  });
  other.start();
  ClientConfig cfg = sm.config();
  cfg.endpoint_url = other.url();
  try {
    SageMakerClient(cfg).create_training_job(spec("kiln-taken", "img:1"));
    FAIL("a job that is not ours was accepted");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()).find("its TrainingImage is 'other:image', not 'img:1'") != std::string::npos);
  }
}

TEST_CASE("CreateTrainingJob without a retry: ResourceInUse stays an error") {
  kiln_test::ScopedEnv env;
  LossySageMaker sm;
  sm.drop_first = false;
  SageMakerClient c(sm.config());
  c.create_training_job(spec("kiln-dup", "img:1"));
  CHECK_THROWS_AS(c.create_training_job(spec("kiln-dup", "img:1")), AwsError);
}
