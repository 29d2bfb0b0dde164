// The `kiln s3` and `kiln sagemaker` commands end to end, as a user runs them: the built kiln
// (KILN_BIN) against moto_server (S3, SageMaker, IAM; signature checking on) and a local
// SageMaker Runtime stand-in that checks InvokeEndpoint's request (moto's runtime cannot take
// binary bodies) and answers (4,100) float32 .npy log-probabilities; the default bucket, the STS
// account in `check`, and a training job's CloudWatch logs and times (a SageMaker stand-in,
// since moto fills neither the job's times nor its logs).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/aws/ecr.h"
#include "kiln/aws/logs.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sagemaker_json.h"
#include "kiln/core/atomic_file.h"
#include "moto_fixture.h"

using namespace kiln::aws;
using kiln_test::MotoServer;
using kiln_test::ScopedEnv;
using kiln_test::TempDir;

static std::string kiln_bin() {
  const char* b = std::getenv("KILN_BIN");
  REQUIRE_MESSAGE(b != nullptr, "KILN_BIN is not set (run through meson test)");
  REQUIRE_MESSAGE(access(b, X_OK) == 0, "KILN_BIN " << b << " is not an executable: build kiln first");
  return b;
}

// Runs argv with stdout+stderr into `out`; returns the exit status (128+signal if killed).
// on_start gets the pid. Bounded: killed after timeout_s.
static int run_kiln(const std::vector<std::string>& args, std::string& out, int timeout_s = 120,
                    std::function<void(pid_t)> on_start = nullptr) {
  TempDir d;
  std::string log = (d / "out.txt").string();
  std::vector<std::string> argv = {kiln_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  if (on_start) on_start(pid);
  int status = 0;
  bool done = false;
  for (int i = 0; i < timeout_s * 20 && !done; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) done = true;
    else usleep(50000);
  }
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  out = kiln::read_file(log);
  REQUIRE_MESSAGE(done, "kiln did not finish within " << timeout_s << " s; output:\n" << out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool has(const std::string& out, const std::string& s) { return out.find(s) != std::string::npos; }

// AWS settings for a child kiln: moto for S3/SageMaker/IAM, credentials from the environment.
static void moto_env(ScopedEnv& env) {
  MotoServer& m = MotoServer::get();
  env.set("AWS_ACCESS_KEY_ID", m.key);
  env.set("AWS_SECRET_ACCESS_KEY", m.secret);
  env.set("AWS_REGION", "us-east-1");
  env.set("AWS_ENDPOINT_URL", m.url);
  // No test downloads torchvision's weights: `sagemaker train/run` start from random weights
  // unless a test asks for --pretrained itself.
  env.set("KILN_SAGEMAKER_PRETRAINED", "none");
}

TEST_CASE("kiln s3 mb/cp/ls/rm against moto, and --dry-run masks secrets") {
  ScopedEnv env;
  moto_env(env);
  TempDir d;
  std::string data(200000, 'k');
  kiln_test::write_text(d / "file.bin", data);
  std::string out;
  REQUIRE_MESSAGE(run_kiln({"s3", "mb", "s3://kiln-cli"}, out) == 0, out);
  REQUIRE_MESSAGE(run_kiln({"s3", "cp", (d / "file.bin").string(), "s3://kiln-cli/x/"}, out) == 0, out);
  CHECK(has(out, "upload: "));
  REQUIRE_MESSAGE(run_kiln({"s3", "ls", "s3://kiln-cli", "--recursive"}, out) == 0, out);
  CHECK(has(out, "200000 x/file.bin"));
  REQUIRE_MESSAGE(run_kiln({"s3", "cp", "s3://kiln-cli/x/file.bin", (d / "back.bin").string()}, out) == 0, out);
  CHECK(kiln::read_file(d / "back.bin") == data);
  REQUIRE_MESSAGE(run_kiln({"s3", "cp", (d / "file.bin").string(), "s3://kiln-cli/dry.bin", "--dry-run"}, out) == 0, out);
  CHECK(has(out, "PUT " + MotoServer::get().url + "/kiln-cli/dry.bin"));
  CHECK(has(out, "Signature=****"));
  CHECK_FALSE(has(out, MotoServer::get().secret));
  CHECK_FALSE(has(out, MotoServer::get().key));
  REQUIRE_MESSAGE(run_kiln({"s3", "rm", "s3://kiln-cli/x/file.bin"}, out) == 0, out);
  REQUIRE_MESSAGE(run_kiln({"s3", "ls", "s3://kiln-cli", "--recursive"}, out) == 0, out);
  CHECK_FALSE(has(out, "file.bin"));
  env.set("AWS_SECRET_ACCESS_KEY", "not-the-secret");
  CHECK(run_kiln({"s3", "ls", "s3://kiln-cli", "--recursive"}, out) == 1);
  CHECK(has(out, "SignatureDoesNotMatch"));
  CHECK_FALSE(has(out, "not-the-secret"));
}

// A synthetic dataset in CIFAR-100's binary layout, made by `kiln synth`.
struct SynthData {
  TempDir dir;
  std::vector<int> labels;
  std::vector<std::string> names;
  float first_value = 0;  // image 0, channel R, pixel 0, normalized
  SynthData() {
    std::string out;
    REQUIRE_MESSAGE(run_kiln({"synth", "--dir", dir.path().string(), "--train", "16", "--test", "8"}, out) == 0, out);
    std::string test = kiln::read_file(dir / "test.bin");
    REQUIRE(test.size() == 8u * 3074u);
    for (int i = 0; i < 4; ++i) labels.push_back(static_cast<unsigned char>(test[static_cast<size_t>(i) * 3074 + 1]));
    first_value = (static_cast<float>(static_cast<unsigned char>(test[2])) / 255.0f - 0.507f) / 0.267f;
    std::ifstream in(dir / "fine_label_names.txt");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) names.push_back(line);
  }
};

static std::string npy_f32(const std::vector<float>& v, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  uint16_t len = static_cast<uint16_t>(header.size());
  out += static_cast<char>(len & 0xFF);
  out += static_cast<char>(len >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  return out;
}

// SageMaker Runtime stand-in: checks the request as the notebook's predictor sends it.
struct FakeRuntime {
  kiln_test::LocalServer s;
  std::atomic<int> requests{0};
  std::mutex mu;
  std::vector<std::string> problems;
  std::string mode;  // "ok", "fail", "slow"
  std::atomic<pid_t> interrupt_pid{0};
  FakeRuntime(const SynthData& data, std::string m) : mode(std::move(m)) {
    s.svr.Post(R"(/endpoints/([^/]+)/invocations)", [this, &data](const httplib::Request& req, httplib::Response& res) {
      ++requests;
      auto problem = [&](const std::string& p) {
        std::lock_guard<std::mutex> lock(mu);
        problems.push_back(p);
      };
      if (req.get_header_value("Content-Type") != "application/x-npy") problem("Content-Type " + req.get_header_value("Content-Type"));
      if (req.get_header_value("Accept") != "application/x-npy") problem("Accept " + req.get_header_value("Accept"));
      if (req.get_header_value("Authorization").find("/sagemaker/aws4_request") == std::string::npos) problem("not signed for sagemaker");
      const std::string& b = req.body;
      if (b.rfind("\x93NUMPY", 0) != 0 || b.size() < 10) {
        problem("body is not .npy");
      } else {
        size_t hlen = static_cast<unsigned char>(b[8]) | (static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8);
        std::string header = b.substr(10, hlen);
        if (header.find("'<f4'") == std::string::npos) problem("dtype: " + header);
        if (header.find("(4, 3, 32, 32)") == std::string::npos) problem("shape: " + header);
        if (b.size() != 10 + hlen + 4 * 3072 * 4) problem("body size " + std::to_string(b.size()));
        float v0 = 0;
        std::memcpy(&v0, b.data() + 10 + hlen, 4);
        if (std::abs(v0 - data.first_value) > 1e-5f) problem("first value " + std::to_string(v0) + " != " + std::to_string(data.first_value));
      }
      if (mode == "fail") {
        res.status = 400;
        res.set_content("{\"__type\":\"ModelError\",\"message\":\"Received server error (500) from primary\"}", "application/json");
        return;
      }
      if (mode == "slow") {
        kill(interrupt_pid.load(), SIGINT);  // the user presses Ctrl-C while predict waits
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      std::vector<float> logp(400, -10.0f);
      for (int i = 0; i < 4; ++i) logp[static_cast<size_t>(i * 100 + data.labels[static_cast<size_t>(i)])] = -0.01f;
      res.set_content(npy_f32(logp, 4, 100), "application/x-npy");
    });
    s.start();
  }
};

static std::vector<std::string> run_args(const std::string& job, const SynthData& data) {
  return {"sagemaker", "run", "--job-name", job, "--data-dir", data.dir.path().string(), "--poll-seconds", "0.05"};
}

static void sagemaker_env(ScopedEnv& env, const FakeRuntime& rt) {
  moto_env(env);
  env.set("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", rt.s.url());
  // defaults from the environment, as documented in docs/aws.md
  env.set("KILN_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/KilnE2ERole");
  env.set("KILN_SAGEMAKER_IMAGE", "123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln:latest");
  env.set("KILN_SAGEMAKER_BUCKET", "kiln-e2e");
}

// The name printed after `prefix` (up to the end of its word), "" when absent.
static std::string name_after(const std::string& out, const std::string& prefix) {
  auto p = out.find(prefix);
  if (p == std::string::npos) return {};
  p += prefix.size();
  return out.substr(p, out.find_first_of(" \n:", p) - p);
}

// Fresh names: each deploy's model/config/endpoint are BASE-m-/-c-/-e-SUFFIX (from the output);
// all three must be gone.
static void expect_cleaned_up(const std::string& base, const std::string& out) {
  std::string model = name_after(out, "created model "), config = name_after(out, "created endpoint config "),
              endpoint = name_after(out, "created endpoint " + base);
  CHECK_MESSAGE(model.rfind(base + "-m-", 0) == 0, out);
  CHECK_MESSAGE(config.rfind(base + "-c-", 0) == 0, out);
  CHECK_MESSAGE(endpoint.rfind("-e-", 0) == 0, out);
  endpoint = base + endpoint;
  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
  SageMakerClient sm(cfg);
  CHECK_THROWS_AS(sm.describe_endpoint(endpoint), AwsError);
  CHECK_THROWS_AS(sm.call("DescribeEndpointConfig", {{"EndpointConfigName", config}}), AwsError);
  CHECK_THROWS_AS(sm.call("DescribeModel", {{"ModelName", model}}), AwsError);
  CHECK_MESSAGE(has(out, "deleted endpoint " + endpoint + "\n"), out);
  CHECK_MESSAGE(has(out, "deleted model " + model + "\n"), out);
}

TEST_CASE("kiln sagemaker run: upload, train, deploy, predict, delete against moto") {
  SynthData data;
  FakeRuntime rt(data, "ok");
  ScopedEnv env;
  sagemaker_env(env, rt);
  std::string out;
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-e2e"}, out) == 0);
  TempDir weights_dir;
  const std::filesystem::path weights = weights_dir / "my-resnet34.pth";
  kiln::write_file_atomic(weights, std::string(70000, 'w'));
  std::vector<std::string> args = run_args("kiln-e2e-ok", data);
  args.insert(args.end(), {"--pretrained", weights.string()});
  int rc = run_kiln(args, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK_MESSAGE(has(out, "pretrained: uploaded " + weights.string() + " to s3://kiln-e2e/kiln/pretrained/my-resnet34.pth"), out);
  for (const char* s : {"== upload", "uploaded 5 files to s3://kiln-e2e/kiln/data/cifar100", "created training job kiln-e2e-ok",
                        "training job kiln-e2e-ok: Completed", "created endpoint kiln-e2e-ok-e-", "endpoint kiln-e2e-ok-e-",": InService",
                        "deleted endpoint kiln-e2e-ok", "deleted endpoint config kiln-e2e-ok", "deleted model kiln-e2e-ok"})
    CHECK_MESSAGE(has(out, s), "missing '" << s << "' in:\n" << out);
  for (int i = 0; i < 4; ++i) {
    const std::string& name = data.names[static_cast<size_t>(data.labels[static_cast<size_t>(i)])];
    CHECK_MESSAGE(has(out, "image " + std::to_string(i) + ": predicted " + name), out);
  }
  CHECK(rt.requests == 1);
  CHECK_MESSAGE(rt.problems.empty(), rt.problems.size() << " problems, first: " << (rt.problems.empty() ? "" : rt.problems[0]));
  CHECK_FALSE(has(out, MotoServer::get().secret));
  expect_cleaned_up("kiln-e2e-ok", out);

  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
  nlohmann::json job = SageMakerClient(cfg).describe_training_job("kiln-e2e-ok");
  CHECK(job["HyperParameters"]["batch_size"] == "128");  // (moto does not echo MetricDefinitions)
  CHECK(job["CheckpointConfig"]["S3Uri"] == "s3://kiln-e2e/kiln/checkpoints/kiln-e2e-ok");
  CHECK(job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 172800);
  CHECK(S3Client(cfg).get_object("kiln-e2e", "kiln/data/cifar100/test.bin") == kiln::read_file(data.dir / "test.bin"));
  // the weights: uploaded once, given to the job as its `pretrained` channel, named in its hyperparameters
  CHECK(S3Client(cfg).get_object("kiln-e2e", "kiln/pretrained/my-resnet34.pth") == kiln::read_file(weights));
  CHECK(job["HyperParameters"]["pretrained"] == "/opt/ml/input/data/pretrained/my-resnet34.pth");
  std::map<std::string, std::string> channels;
  for (const auto& c : job["InputDataConfig"])
    channels[c["ChannelName"]] = c["DataSource"]["S3DataSource"]["S3Uri"];
  CHECK(channels["training"] == "s3://kiln-e2e/kiln/data/cifar100");
  CHECK(channels["pretrained"] == "s3://kiln-e2e/kiln/pretrained/my-resnet34.pth");
  rc = run_kiln({"sagemaker", "train", "--no-wait", "--job-name", "kiln-e2e-ok-2", "--pretrained", weights.string(),
                 "--train-instance-count", "2"}, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK_MESSAGE(has(out, "2 x ml.c5.9xlarge, data-parallel over Open MPI"), out);
  CHECK(SageMakerClient(cfg).describe_training_job("kiln-e2e-ok-2")["ResourceConfig"]["InstanceCount"] == 2);
  CHECK(job["ResourceConfig"]["InstanceCount"] == 1);
  CHECK_MESSAGE(has(out, "pretrained: s3://kiln-e2e/kiln/pretrained/my-resnet34.pth is in S3 already"), out);
  CHECK_FALSE(has(out, "pretrained: uploaded"));
  CHECK(run_kiln({"sagemaker", "train", "--no-wait", "--job-name", "kiln-e2e-ok-4", "--train-instance-count", "0"}, out) == 1);
  CHECK_MESSAGE(has(out, "--train-instance-count: expected 1 to 100 instances"), out);
  CHECK(run_kiln({"sagemaker", "train", "--no-wait", "--job-name", "kiln-e2e-ok-3", "--pretrained", "resnet34.pth"}, out) == 1);
  CHECK_MESSAGE(has(out, "--pretrained: expected imagenet, none or a weights file"), out);
}

TEST_CASE("kiln sagemaker upload/train --data-distribution sharded: parts as S3 objects, a ShardedByS3Key channel") {
  SynthData data;
  ScopedEnv env;
  FakeRuntime rt(data, "ok");
  sagemaker_env(env, rt);
  std::string out;
  TempDir shards_dir;
  const std::string shards = (shards_dir / "shards").string();
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-e2e"}, out) == 0);
  REQUIRE_MESSAGE(run_kiln({"data", "shard", "--data", data.dir.path().string(), "--parts", "3", "--out", shards}, out) == 0, out);
  const std::vector<std::string> sharded = {"--data-dir", shards, "--data-distribution", "sharded",
                                            "--data-s3-uri", "s3://kiln-e2e/sharded"};
  auto with = [&](std::vector<std::string> args, const std::string& count) {
    args.insert(args.end(), sharded.begin(), sharded.end());
    args.insert(args.end(), {"--train-instance-count", count});
    return args;
  };
  // Fewer parts than instances: refused before anything is uploaded.
  CHECK(run_kiln(with({"sagemaker", "upload"}, "4"), out) == 1);
  CHECK_MESSAGE(has(out, "expected at least 4 parts train-KKKKK-of-NNNNN.bin (one per instance), found 3"), out);
  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
  CHECK_FALSE(S3Client(cfg).head_object("kiln-e2e", "sharded/training/train-00000-of-00003.bin"));

  CHECK_MESSAGE(run_kiln(with({"sagemaker", "upload"}, "2"), out) == 0, out);
  CHECK_MESSAGE(has(out, "uploaded 6 files to s3://kiln-e2e/sharded"), out);  // 3 parts, test.bin, names, SYNTHETIC
  for (const char* p : {"train-00000-of-00003.bin", "train-00001-of-00003.bin", "train-00002-of-00003.bin"})
    CHECK(S3Client(cfg).get_object("kiln-e2e", std::string("sharded/training/") + p) ==
          kiln::read_file(std::filesystem::path(shards) / "training" / p));
  CHECK_MESSAGE(run_kiln(with({"sagemaker", "train", "--no-wait", "--job-name", "kiln-e2e-sharded"}, "2"), out) == 0, out);
  nlohmann::json job = SageMakerClient(cfg).describe_training_job("kiln-e2e-sharded");
  std::map<std::string, nlohmann::json> channels;
  for (const auto& c : job["InputDataConfig"]) channels[c["ChannelName"]] = c["DataSource"]["S3DataSource"];
  CHECK(channels["training"]["S3Uri"] == "s3://kiln-e2e/sharded/training");
  CHECK(channels["training"]["S3DataDistributionType"] == "ShardedByS3Key");
  CHECK(channels["test"]["S3Uri"] == "s3://kiln-e2e/sharded/test");
  CHECK(channels["test"]["S3DataDistributionType"] == "FullyReplicated");
  CHECK(job["ResourceConfig"]["InstanceCount"] == 2);
  // train counts the parts of --data-dir too: 3 for 4 instances is refused before any request.
  CHECK(run_kiln(with({"sagemaker", "train", "--no-wait", "--job-name", "kiln-e2e-sharded-4"}, "4"), out) == 1);
  CHECK_MESSAGE(has(out, "/shards/training: expected at least 4 parts"), out);
  CHECK_THROWS_AS(SageMakerClient(cfg).describe_training_job("kiln-e2e-sharded-4"), AwsError);
  // The whole run: predict takes its 4 test images from the shards' test/ folder.
  CHECK_MESSAGE(run_kiln(with({"sagemaker", "run", "--job-name", "kiln-e2e-sharded-run", "--poll-seconds", "0.05"}, "2"),
                         out) == 0, out);
  for (int i = 0; i < 4; ++i)
    CHECK_MESSAGE(has(out, "image " + std::to_string(i) + ": predicted " +
                               data.names[static_cast<size_t>(data.labels[static_cast<size_t>(i)])]), out);
  CHECK(rt.requests == 1);
  CHECK_MESSAGE(rt.problems.empty(), rt.problems.size() << " problems, first: " << (rt.problems.empty() ? "" : rt.problems[0]));
  // The default stays FullyReplicated, one training channel at the data URI.
  CHECK(create_training_job_body(TrainingJobSpec{})["InputDataConfig"][0]["DataSource"]["S3DataSource"]
            ["S3DataDistributionType"] == "FullyReplicated");
  CHECK(run_kiln({"sagemaker", "train", "--no-wait", "--data-distribution", "some"}, out) == 1);
  CHECK_MESSAGE(has(out, "--data-distribution: expected replicated or sharded"), out);
}

TEST_CASE("kiln sagemaker run deletes the endpoint when predict fails") {
  SynthData data;
  FakeRuntime rt(data, "fail");
  ScopedEnv env;
  sagemaker_env(env, rt);
  std::string out;
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-e2e"}, out) == 0);
  CHECK(run_kiln(run_args("kiln-e2e-fail", data), out) == 1);
  CHECK_MESSAGE(has(out, "ModelError"), out);
  CHECK_MESSAGE(has(out, "deleted endpoint kiln-e2e-fail"), out);
  CHECK(rt.requests == 1);  // a 4xx is not retried
  expect_cleaned_up("kiln-e2e-fail", out);
}

TEST_CASE("kiln sagemaker run deletes the endpoint after Ctrl-C") {
  SynthData data;
  FakeRuntime rt(data, "slow");
  ScopedEnv env;
  sagemaker_env(env, rt);
  std::string out;
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-e2e"}, out) == 0);
  int rc = run_kiln(run_args("kiln-e2e-int", data), out, 120, [&](pid_t pid) { rt.interrupt_pid = pid; });
  CHECK_MESSAGE(rc == 130, out);
  CHECK_MESSAGE(has(out, "interrupted"), out);
  CHECK_MESSAGE(has(out, "deleted endpoint kiln-e2e-int"), out);
  expect_cleaned_up("kiln-e2e-int", out);
}

TEST_CASE("kiln sagemaker run --dry-run prints every request, secrets masked, and sends nothing") {
  SynthData data;
  FakeRuntime rt(data, "ok");
  ScopedEnv env;
  sagemaker_env(env, rt);
  std::string out;
  CHECK_MESSAGE(run_kiln({"sagemaker", "run", "--dry-run", "--job-name", "kiln-e2e-dry", "--data-dir",
                          data.dir.path().string(), "--spot", "false", "--pretrained", "imagenet"}, out) == 0, out);
  // the default start: torchvision's file for the arch, as the job's pretrained channel
  CHECK_MESSAGE(has(out, "would upload resnet34-b627a593.pth to s3://kiln-e2e/kiln/pretrained/resnet34-b627a593.pth"), out);
  CHECK_MESSAGE(has(out, "\"ChannelName\":\"pretrained\""), out);
  for (const char* s : {"X-Amz-Target: SageMaker.CreateTrainingJob", "X-Amz-Target: SageMaker.CreateEndpoint",
                        "X-Amz-Target: SageMaker.DeleteEndpoint", "/endpoints/kiln-e2e-dry-e-",
                        "\"EnableManagedSpotTraining\":false", "Signature=****", "\"Name\":\"val_acc\"",
                        "\"Regex\":\"test_loss=([0-9.eE+-]+)\""})
    CHECK_MESSAGE(has(out, s), "missing '" << s << "' in:\n" << out);
  CHECK_FALSE(has(out, MotoServer::get().secret));
  CHECK_FALSE(has(out, MotoServer::get().key));
  CHECK(rt.requests == 0);
  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
  CHECK_THROWS_AS(SageMakerClient(cfg).describe_training_job("kiln-e2e-dry"), AwsError);
}

TEST_CASE("kiln sagemaker check: credentials, region, role, bucket") {
  ScopedEnv env;
  moto_env(env);
  MotoServer& m = MotoServer::get();
  std::string role, out;
  REQUIRE(kiln_test::run_capture("python3 " + kiln_test::helper_script() + " create-role " + m.url + " " + m.key + " " +
                                     m.secret + " KilnCheckRole sagemaker s3", role) == 0);
  role.erase(role.find_last_not_of('\n') + 1);
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-check"}, out) == 0);
  // the image: in ECR (moto's account 123456789012) with a Docker v2 manifest, as SageMaker needs
  const std::string ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kiln-check-repo";
  auto put_image = [&](const std::string& tag, const std::string& media_type) {
    std::string digest;
    REQUIRE(kiln_test::run_capture("python3 " + kiln_test::helper_script() + " ecr-put-image " + m.url + " " + m.key +
                                       " " + m.secret + " kiln-check-repo " + tag + " " + media_type,
                                   digest) == 0);
    return digest.substr(0, digest.find('\n'));
  };
  {
    ClientConfig cfg = kiln_test::moto_client_config(m);
    EcrClient(cfg).create_repository("kiln-check-repo");
  }
  const std::string digest = put_image("1", "application/vnd.docker.distribution.manifest.v2+json");
  put_image("oci", "application/vnd.oci.image.manifest.v1+json");
  int rc = run_kiln({"sagemaker", "check", "--role-arn", role, "--bucket", "kiln-check", "--image", ecr + ":1"}, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK(has(out, "all checks passed"));
  CHECK(has(out, "AKIA"));
  CHECK_FALSE(has(out, m.secret));
  CHECK_MESSAGE(has(out, "[ ok ] image " + ecr + ":1 is in ECR (" + digest + ", Docker v2 manifest)"), out);
  CHECK_MESSAGE(has(out, "'ml.c5.9xlarge for spot training job usage' >= 1"), out);
  CHECK_MESSAGE(has(out, "'ml.c4.8xlarge for endpoint usage' >= 1"), out);
  CHECK_MESSAGE(has(out, "iam:PassRole"), out);
  // by digest too
  rc = run_kiln({"sagemaker", "check", "--role-arn", role, "--bucket", "kiln-check", "--image", ecr + "@" + digest}, out);
  CHECK_MESSAGE(rc == 0, out);
  rc = run_kiln({"sagemaker", "check", "--role-arn", role, "--bucket", "kiln-no-such-bucket", "--image", ecr + ":1"}, out);
  CHECK(rc == 1);
  CHECK(has(out, "does not exist"));
  // images SageMaker could not run: each a FAIL line saying why
  const std::pair<std::string, std::string> bad[] = {
      {ecr + ":2", "not in ECR (no tag 2 in repository kiln-check-repo"},
      {"123456789012.dkr.ecr.us-east-1.amazonaws.com/no-such-repo:1", "not in ECR"},
      {ecr + ":oci", "its manifest is application/vnd.oci.image.manifest.v1+json; SageMaker needs"},
      {"123456789012.dkr.ecr.eu-west-1.amazonaws.com/kiln-check-repo:1", "is in region eu-west-1, the jobs run in us-east-1"},
      {"registry.example.com/kiln:1", "not an ECR image"},
  };
  for (const auto& [image, why] : bad) {
    rc = run_kiln({"sagemaker", "check", "--role-arn", role, "--bucket", "kiln-check", "--image", image}, out);
    CHECK_MESSAGE(rc == 1, image << ":\n" << out);
    CHECK_MESSAGE(has(out, "[FAIL] image " + image), out);
    CHECK_MESSAGE(has(out, why), image << ":\n" << out);
  }
}

// ---- the default bucket, the STS account, training logs and times (issue 8)

static bool has_once(const std::string& out, const std::string& s) {
  auto p = out.find(s);
  return p != std::string::npos && out.find(s, p + 1) == std::string::npos;
}

TEST_CASE("kiln sagemaker upload without --bucket: sagemaker-REGION-ACCOUNT from the role ARN or STS, created once") {
  SynthData data;
  ScopedEnv env;
  moto_env(env);
  std::string out;
  // the account from the role ARN
  std::vector<std::string> args = {"sagemaker", "upload", "--data-dir", data.dir.path().string(), "--role-arn",
                                   "arn:aws:iam::444455556666:role/KilnBucketRole"};
  REQUIRE_MESSAGE(run_kiln(args, out) == 0, out);
  CHECK_MESSAGE(has(out, "bucket: sagemaker-us-east-1-444455556666 (default bucket; account 444455556666 from role ARN), created"), out);
  CHECK_MESSAGE(has(out, "uploaded 5 files to s3://sagemaker-us-east-1-444455556666/kiln/data/cifar100"), out);
  REQUIRE_MESSAGE(run_kiln(args, out) == 0, out);  // the second run finds it
  CHECK_MESSAGE(has(out, "bucket: sagemaker-us-east-1-444455556666 (default bucket; account 444455556666 from role ARN)\n"), out);
  CHECK_FALSE(has(out, "created"));
  // no role: the account from STS GetCallerIdentity (moto's)
  REQUIRE_MESSAGE(run_kiln({"sagemaker", "upload", "--data-dir", data.dir.path().string()}, out) == 0, out);
  CHECK_MESSAGE(has(out, "bucket: sagemaker-us-east-1-123456789012 (default bucket; account 123456789012 from STS GetCallerIdentity), created"), out);
  ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
  CHECK(S3Client(cfg).get_object("sagemaker-us-east-1-123456789012", "kiln/data/cifar100/test.bin") ==
        kiln::read_file(data.dir / "test.bin"));
  // an explicit --bucket is used as given and never created
  CHECK(run_kiln({"sagemaker", "upload", "--data-dir", data.dir.path().string(), "--bucket", "kiln-not-made"}, out) == 1);
  CHECK_FALSE(S3Client(cfg).bucket_exists("kiln-not-made"));
}

TEST_CASE("kiln sagemaker check reports the account from STS and the default bucket") {
  ScopedEnv env;
  moto_env(env);
  std::string out;
  run_kiln({"sagemaker", "check", "--image", "img:1"}, out);  // no role: fails, but reports the rest
  CHECK_MESSAGE(has(out, "[ ok ] account: 123456789012 (arn:aws:iam::123456789012:user/kiln-test, from STS GetCallerIdentity)"), out);
  CHECK_MESSAGE(has(out, "bucket sagemaker-us-east-1-123456789012 (default)"), out);
  env.set("AWS_SECRET_ACCESS_KEY", "not-the-secret");
  CHECK(run_kiln({"sagemaker", "check", "--image", "img:1"}, out) == 1);
  CHECK_MESSAGE(has(out, "[FAIL] account: STS GetCallerIdentity"), out);
}

// SageMaker stand-in for one training job: InProgress for three polls, then Completed with
// training and billable times. At each poll it writes a line to the job's CloudWatch log stream
// in moto (as the container would), the last one just before answering Completed.
struct FakeTrainingJob {
  kiln_test::LocalServer s;
  std::atomic<int> describes{0};
  std::mutex mu;
  std::vector<std::string> problems;
  std::string job;
  bool write_logs;
  std::vector<int> fail_polls;  // these DescribeTrainingJob calls answer HTTP 500
  explicit FakeTrainingJob(std::string name, bool logs = true, std::vector<int> fails = {})
      : job(std::move(name)), write_logs(logs), fail_polls(std::move(fails)) {
    s.svr.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      std::string target = req.get_header_value("X-Amz-Target");
      if (req.get_header_value("Authorization").find("/us-east-1/sagemaker/aws4_request") == std::string::npos) {
        std::lock_guard<std::mutex> lock(mu);
        problems.push_back("not signed for sagemaker: " + target);
      }
      nlohmann::json a;
      if (target == "SageMaker.CreateTrainingJob") {
        a = {{"TrainingJobArn", "arn:aws:sagemaker:us-east-1:777788889999:training-job/" + job}};
      } else if (target == "SageMaker.DescribeTrainingJob") {
        int n = ++describes;
        if (std::find(fail_polls.begin(), fail_polls.end(), n) != fail_polls.end()) {
          res.status = 500;
          res.set_content("{\"__type\":\"InternalFailure\",\"message\":\"stand-in failure\"}", "application/x-amz-json-1.1");
          return;
        }
        if (write_logs) {
          ClientConfig cfg = kiln_test::moto_client_config(MotoServer::get());
          LogsClient logs(cfg);
          const std::string stream = job + "/algo-1-1700000000";
          if (n == 1) {
            logs.create_log_group(TrainingLogFollower::kLogGroup);
            logs.create_log_stream(TrainingLogFollower::kLogGroup, stream);
          }
          int64_t t = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
          logs.put_log_events(TrainingLogFollower::kLogGroup, stream,
                              {{t, n <= 3 ? "container line " + std::to_string(n) : std::string("container last line")}});
        }
        a = {{"TrainingJobName", job},
             {"TrainingJobStatus", n <= 3 ? "InProgress" : "Completed"},
             {"SecondaryStatus", n <= 3 ? "Training" : "Completed"},
             {"EnableManagedSpotTraining", true},
             {"ResourceConfig", {{"InstanceType", "ml.c5.9xlarge"}, {"InstanceCount", 1}, {"VolumeSizeInGB", 30}}}};
        if (n > 3) {
          a["TrainingTimeInSeconds"] = 1200;
          a["BillableTimeInSeconds"] = 400;
          a["ModelArtifacts"] = {{"S3ModelArtifacts", "s3://b/" + job + "/output/model.tar.gz"}};
        }
      } else {
        std::lock_guard<std::mutex> lock(mu);
        problems.push_back("unexpected " + target);
        res.status = 400;
        a = {{"__type", "ValidationException"}, {"message", "unexpected"}};
      }
      res.set_content(a.dump(), "application/x-amz-json-1.1");
    });
    s.start();
  }
};

TEST_CASE("kiln sagemaker train prints the job's CloudWatch logs while it waits, then training and billable seconds") {
  const std::string job = "kiln-logs-e2e";
  FakeTrainingJob sm(job);
  ScopedEnv env;
  moto_env(env);
  env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
  std::string out;
  int rc = run_kiln({"sagemaker", "train", "--job-name", job, "--poll-seconds", "0.05", "--role-arn",
                     "arn:aws:iam::777788889999:role/KilnLogsRole", "--image", "img:1"}, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK_MESSAGE(sm.problems.empty(), sm.problems.size() << " problems, first: " << (sm.problems.empty() ? "" : sm.problems[0]));
  CHECK(sm.describes == 4);
  CHECK_MESSAGE(has(out, "bucket: sagemaker-us-east-1-777788889999 (default bucket; account 777788889999 from role ARN)"), out);
  for (const char* l : {"container line 1\n", "container line 2\n", "container line 3\n", "container last line\n",
                        "Training seconds: 1200\n", "Billable seconds: 400\n", "Managed Spot Training savings: 66.7%\n"})
    CHECK_MESSAGE(has_once(out, l), "'" << l << "' not printed exactly once in:\n" << out);
  // the first lines while the job was running, the last one drained after it ended
  size_t done = out.find("training job " + job + ": Completed");
  REQUIRE_MESSAGE(done != std::string::npos, out);
  CHECK(out.find("container line 1") < out.find("container line 2"));
  CHECK(out.find("container line 2") < out.find("container line 3"));
  CHECK(out.find("container line 3") < done);
  CHECK(out.find("container last line") > done);
  CHECK(out.find("container last line") < out.find("Training seconds: 1200"));
  CHECK_FALSE(has(out, "[algo-1]"));  // one host: no prefix
  CHECK_FALSE(has(out, "warning"));
  CHECK(has(out, "model: s3://b/" + job + "/output/model.tar.gz"));
}

TEST_CASE("kiln sagemaker train: unreadable logs give one warning and the wait goes on to the end") {
  const std::string job = "kiln-logs-dead";
  FakeTrainingJob sm(job, false);  // (this process's AWS_ENDPOINT_URL_LOGS points nowhere too)
  ScopedEnv env;
  moto_env(env);
  env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
  env.set("AWS_ENDPOINT_URL_LOGS", "http://127.0.0.1:" + std::to_string(kiln_test::free_port()));  // nothing listens
  std::string out;
  int rc = run_kiln({"sagemaker", "train", "--job-name", job, "--poll-seconds", "0.05", "--role-arn",
                     "arn:aws:iam::777788889999:role/KilnLogsRole", "--image", "img:1"}, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK(sm.describes == 4);
  CHECK_MESSAGE(has_once(out, "warning: cannot read the training job's logs"), out);
  CHECK_FALSE(has(out, "container line"));
  CHECK_MESSAGE(has(out, "training job " + job + ": Completed"), out);
  CHECK_MESSAGE(has(out, "Billable seconds: 400"), out);
}

// ---- transient poll failures, attach, fresh names (issue 8)

TEST_CASE("kiln sagemaker train: failed DescribeTrainingJob polls give one warning and the wait goes on") {
  const std::string job = "kiln-poll-fail";
  FakeTrainingJob sm(job, false, {2, 3});  // polls 2 and 3 fail (HTTP 500), 1 InProgress, 4 Completed
  ScopedEnv env;
  moto_env(env);
  env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
  env.set("AWS_MAX_ATTEMPTS", "1");  // the client's own retries would hide the failures
  std::string out;
  int rc = run_kiln({"sagemaker", "train", "--job-name", job, "--poll-seconds", "0.05", "--role-arn",
                     "arn:aws:iam::777788889999:role/KilnLogsRole", "--image", "img:1"}, out);
  CHECK_MESSAGE(rc == 0, out);
  CHECK(sm.describes == 4);
  CHECK_MESSAGE(has_once(out, "warning: training job " + job + ": DescribeTrainingJob failed"), out);
  CHECK_MESSAGE(has(out, "InternalFailure"), out);
  CHECK_MESSAGE(has(out, "training job " + job + ": Completed"), out);
  CHECK_MESSAGE(has(out, "Billable seconds: 400"), out);
}

TEST_CASE("kiln sagemaker attach follows a job's logs and times; attach --deploy twice gets fresh names (moto)") {
  {
    const std::string job = "kiln-attach-logs";
    FakeTrainingJob sm(job);
    ScopedEnv env;
    moto_env(env);
    env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
    std::string out;
    int rc = run_kiln({"sagemaker", "attach", "--job-name", job, "--poll-seconds", "0.05"}, out);
    CHECK_MESSAGE(rc == 0, out);
    for (const char* l : {"attached to training job kiln-attach-logs", "container line 2\n", "container last line\n",
                          "Training seconds: 1200\n", "Billable seconds: 400\n"})
      CHECK_MESSAGE(has_once(out, l), "'" << l << "' not printed exactly once in:\n" << out);
  }
  SynthData data;
  FakeRuntime rt(data, "ok");
  ScopedEnv env;
  sagemaker_env(env, rt);
  std::string out;
  REQUIRE(run_kiln({"s3", "mb", "s3://kiln-e2e"}, out) == 0);
  const std::string job = "kiln-attach-dep";
  REQUIRE_MESSAGE(run_kiln({"sagemaker", "train", "--no-wait", "--job-name", job}, out) == 0, out);
  std::vector<std::string> endpoints;
  for (int i = 0; i < 2; ++i) {
    int rc = run_kiln({"sagemaker", "attach", "--job-name", job, "--deploy", "--poll-seconds", "0.05", "--data-dir",
                       data.dir.path().string()}, out);
    CHECK_MESSAGE(rc == 0, out);
    CHECK_MESSAGE(has(out, "training job " + job + ": Completed"), out);
    CHECK_MESSAGE(has(out, "image 3: predicted"), out);
    expect_cleaned_up(job, out);
    endpoints.push_back(job + name_after(out, "created endpoint " + job));
    CHECK(endpoints.back().size() <= 63);
  }
  CHECK(endpoints[0] != endpoints[1]);
  CHECK(rt.requests == 2);
}

TEST_CASE("kiln sagemaker setup-role creates the role with SageMaker's trust and policies, idempotently (moto)") {
  ScopedEnv env;
  moto_env(env);
  std::string out;
  int rc = run_kiln({"sagemaker", "setup-role", "--role-name", "KilnSetupRole"}, out);
  CHECK_MESSAGE(rc == 0, out);
  for (const char* l : {"created role KilnSetupRole", "attached arn:aws:iam::aws:policy/AmazonSageMakerFullAccess",
                        "attached arn:aws:iam::aws:policy/AmazonS3FullAccess", "[ ok ] role arn:aws:iam::123456789012:role/KilnSetupRole can be assumed by SageMaker",
                        "[ ok ] role has S3 access", "role ARN: arn:aws:iam::123456789012:role/KilnSetupRole"})
    CHECK_MESSAGE(has(out, l), "missing '" << l << "' in:\n" << out);
  rc = run_kiln({"sagemaker", "setup-role", "--role-name", "KilnSetupRole"}, out);  // again: nothing new
  CHECK_MESSAGE(rc == 0, out);
  CHECK_MESSAGE(has(out, "role KilnSetupRole exists"), out);
  CHECK_MESSAGE(has(out, "AmazonS3FullAccess already attached"), out);
  CHECK_FALSE(has(out, "created role"));
  CHECK_FALSE(has(out, "attached arn:"));
}

// SageMaker stand-in for deploy: the endpoint stays Creating; at the second DescribeEndpoint the
// user presses Ctrl-C. DeleteEndpoint is refused while Creating (twice, then the endpoint is
// InService and deletion is accepted), or always refused with AccessDenied ("deny").
struct FakeCreatingEndpoint {
  kiln_test::LocalServer s;
  std::atomic<int> describes{0}, delete_refusals{0}, delete_accepted{0}, config_deleted{0}, model_deleted{0};
  std::atomic<pid_t> pid{0};
  bool deny;
  explicit FakeCreatingEndpoint(bool deny_delete) : deny(deny_delete) {
    s.svr.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      std::string t = req.get_header_value("X-Amz-Target");
      nlohmann::json a = nlohmann::json::object();
      auto refuse = [&](const char* code, const char* msg) {
        res.status = 400;
        a = {{"__type", code}, {"message", msg}};
      };
      if (t == "SageMaker.DescribeEndpoint") {
        if (++describes == 2) kill(pid.load(), SIGINT);
        a = {{"EndpointStatus", delete_refusals >= 2 ? "InService" : "Creating"}, {"EndpointConfigName", "x"}};
      } else if (t == "SageMaker.DeleteEndpoint") {
        if (deny) refuse("AccessDenied", "not allowed: sagemaker:DeleteEndpoint");
        else if (delete_refusals < 2 && ++delete_refusals) refuse("ValidationException", "Cannot delete in-progress endpoint");
        else ++delete_accepted;
      } else if (t == "SageMaker.DeleteEndpointConfig") {
        ++config_deleted;
      } else if (t == "SageMaker.DeleteModel") {
        ++model_deleted;
      }
      res.set_content(a.dump(), "application/x-amz-json-1.1");
    });
    s.start();
  }
};

TEST_CASE("kiln sagemaker deploy: Ctrl-C while the endpoint is Creating deletes it (waiting until DeleteEndpoint is accepted), or says loudly what is left") {
  for (bool deny : {false, true}) {
    CAPTURE(deny);
    FakeCreatingEndpoint sm(deny);
    ScopedEnv env;
    moto_env(env);
    env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
    std::string out;
    int rc = run_kiln({"sagemaker", "deploy", "--job-name", "kiln-int", "--model-data", "s3://b/model.tar.gz", "--role-arn",
                       "arn:aws:iam::777788889999:role/R", "--image", "img:1", "--poll-seconds", "0.05"},
                      out, 60, [&](pid_t p) { sm.pid = p; });
    CHECK_MESSAGE(rc == 130, out);
    CHECK_MESSAGE(has(out, "interrupted"), out);
    std::string endpoint = "kiln-int" + name_after(out, "created endpoint kiln-int");
    CHECK_MESSAGE(endpoint.rfind("kiln-int-e-", 0) == 0, out);
    CHECK(sm.config_deleted == 1);
    CHECK(sm.model_deleted == 1);
    if (!deny) {
      CHECK(sm.delete_refusals == 2);
      CHECK(sm.delete_accepted == 1);
      CHECK_MESSAGE(has(out, "deleted endpoint " + endpoint + "\n"), out);
      CHECK_FALSE(has(out, "CLEANUP INCOMPLETE"));
    } else {
      CHECK(sm.delete_accepted == 0);
      CHECK_MESSAGE(has(out, "CLEANUP INCOMPLETE"), out);
      CHECK_MESSAGE(has(out, "endpoint " + endpoint + " (billed per instance-hour while it exists)"), out);
      CHECK_MESSAGE(has(out, "kiln sagemaker delete --region us-east-1 --endpoint-name " + endpoint + " --endpoint-config-name kiln-int-c-"), out);
    }
  }
}

// ---- the hints for what most often stops a first job on a new account (issue 8)

// A SageMaker stand-in that refuses CreateTrainingJob and CreateEndpoint as AWS does on an account
// without quota, or for a caller without iam:PassRole; models and configs are accepted.
struct RefusingSageMaker {
  kiln_test::LocalServer s;
  std::string train_code, train_message, endpoint_code, endpoint_message;
  RefusingSageMaker() {
    s.svr.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string target = req.get_header_value("X-Amz-Target");
      auto refuse = [&](const std::string& code, const std::string& message) {
        res.status = 400;
        res.set_content(nlohmann::json({{"__type", code}, {"message", message}}).dump(), "application/x-amz-json-1.1");
      };
      if (target == "SageMaker.CreateTrainingJob") refuse(train_code, train_message);
      else if (target == "SageMaker.CreateEndpoint") refuse(endpoint_code, endpoint_message);
      else if (target == "SageMaker.DescribeEndpoint" || target == "SageMaker.DeleteEndpoint")
        refuse("ValidationException", "Could not find endpoint");
      else res.set_content("{}", "application/x-amz-json-1.1");
    });
    s.start();
  }
};

TEST_CASE("kiln sagemaker: a refused create names the quota to raise, or the missing iam:PassRole") {
  RefusingSageMaker sm;
  sm.train_code = "ResourceLimitExceeded";
  sm.train_message = "The account-level service limit 'ml.c5.9xlarge for spot training job usage' is 0 Instances";
  sm.endpoint_code = "AccessDeniedException";
  sm.endpoint_message = "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: iam:PassRole on resource: "
                        "arn:aws:iam::123456789012:role/KilnRole";
  ScopedEnv env;
  moto_env(env);
  env.set("AWS_ENDPOINT_URL_SAGEMAKER", sm.s.url());
  const std::string role = "arn:aws:iam::123456789012:role/KilnRole";
  std::string out;
  int rc = run_kiln({"sagemaker", "train", "--job-name", "kiln-quota", "--role-arn", role, "--image", "img:1",
                     "--bucket", "kiln-quota-bucket"}, out);
  CHECK(rc == 1);
  CHECK_MESSAGE(has(out, "quota 'ml.c5.9xlarge for spot training job usage' is too low"), out);
  CHECK_MESSAGE(has(out, "or --spot false ('ml.c5.9xlarge for training job usage')"), out);
  rc = run_kiln({"sagemaker", "deploy", "--endpoint-name", "kiln-passrole", "--role-arn", role, "--image", "img:1",
                 "--model-data", "s3://b/model.tar.gz"}, out);
  CHECK(rc == 1);
  CHECK_MESSAGE(has(out, "needs iam:PassRole on the execution role " + role), out);
  CHECK_MESSAGE(has(out, "deleted model kiln-passrole-m-"), out);  // what deploy made before the refusal is gone
  sm.endpoint_code = "ResourceLimitExceeded";
  sm.endpoint_message = "The account-level service limit 'ml.c4.8xlarge for endpoint usage' is 0 Instances";
  rc = run_kiln({"sagemaker", "deploy", "--endpoint-name", "kiln-quota-e", "--role-arn", role, "--image", "img:1",
                 "--model-data", "s3://b/model.tar.gz"}, out);
  CHECK(rc == 1);
  CHECK_MESSAGE(has(out, "quota 'ml.c4.8xlarge for endpoint usage' is too low"), out);
}
