// `kiln sagemaker check|upload|train|deploy|predict|delete|run`: the reference notebook as
// commands, over kiln's own AWS client (aws/). Option values come from, in order: the command
// line, environment variables KILN_SAGEMAKER_<OPTION> (e.g. KILN_SAGEMAKER_ROLE_ARN), a
// `--config FILE` of `option = value` lines, then the built-in defaults. `run` deletes the
// endpoint, endpoint config and model whatever happened before (failure, Ctrl-C). Without
// --bucket, upload/train/run use the SageMaker SDK's default bucket sagemaker-REGION-ACCOUNT
// (the account from the role ARN, else STS) and create it when missing. While a training job
// runs its CloudWatch log streams are printed (every host), and at its end the training and
// billable seconds (and the spot savings), as the SDK's estimator.fit() does.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "aws/client.h"
#include "aws/iam.h"
#include "aws/logs.h"
#include "aws/s3.h"
#include "aws/sagemaker.h"
#include "aws/sts.h"
#include "aws/transfer.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "data/dataset.h"
#include "io/npy.h"
#include "tools/args.h"
#include "tools/command.h"

namespace {

using namespace kiln::aws;
using kiln::cli::Args;
using nlohmann::json;
namespace fs = std::filesystem;

// ---- Ctrl-C: the first one asks the current step to stop (so `run` can clean up), the
// second one kills the process as usual.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
  g_interrupted = true;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}
void check_interrupted() {
  if (g_interrupted) throw kiln::Error("interrupted");
}

// ---- options
struct Opt {
  const char* name;  // without "--"
  const char* metavar;
  const char* help;
  const char* def;
};
const Opt kOptions[] = {
    {"region", "REGION", "AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's)", ""},
    {"profile", "NAME", "AWS profile (else AWS_PROFILE)", ""},
    {"endpoint-url", "URL", "send every AWS request here (else AWS_ENDPOINT_URL), e.g. moto_server", ""},
    {"role-arn", "ARN", "SageMaker execution role", ""},
    {"bucket", "NAME", "S3 bucket (default: sagemaker-REGION-ACCOUNT, the SDK's default bucket, created when missing)", ""},
    {"prefix", "KEY", "key prefix for data, output and checkpoints in the bucket", "kiln"},
    {"image", "URI", "ECR image URI of the kiln container (training and serving)", ""},
    {"job-name", "NAME", "training job name (default kiln-YYYYMMDD-HHMMSS)", ""},
    {"endpoint-name", "NAME", "endpoint, endpoint config and model name (default: the job name)", ""},
    {"train-instance-type", "TYPE", "training instance", "ml.c5.9xlarge"},
    {"deploy-instance-type", "TYPE", "serving instance", "ml.c4.8xlarge"},
    {"spot", "BOOL", "managed spot training (true/false)", "true"},
    {"max-run", "SECONDS", "MaxRuntimeInSeconds", "86400"},
    {"max-wait", "SECONDS", "MaxWaitTimeInSeconds (spot only, >= max-run)", "172800"},
    {"volume-gb", "N", "training volume size", "30"},
    {"epochs", "N", "hyperparameter epochs", "4"},
    {"batch-size", "N", "hyperparameter batch_size", "128"},
    {"lr", "LR", "hyperparameter lr (learning rate)", "0.0002"},
    {"hyperparameters", "K=V,...", "more hyperparameters for kiln train (option names)", ""},
    {"data-dir", "DIR", "local CIFAR-100 directory (upload source; test images for predict)", "data"},
    {"data-s3-uri", "URI", "where the data goes (default s3://BUCKET/PREFIX/data/cifar100)", ""},
    {"model-data", "URI", "model.tar.gz for deploy (default: the training job's artifact)", ""},
    {"poll-seconds", "S", "first wait between status polls (grows 1.5x up to 60 s); training logs are read this often", "5"},
    {"config", "FILE", "file of `option = value` lines (lowest priority after env)", ""},
};

std::string env_name(const std::string& opt) {
  std::string v = "KILN_SAGEMAKER_";
  for (char c : opt) v += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return v;
}

void declare(Args& a) {
  for (const Opt& o : kOptions) a.option(std::string("--") + o.name, o.metavar, o.help, o.def);
  a.flag("--dry-run", "print each request that would be sent (secrets masked); send nothing");
  a.flag("--no-wait", "train/deploy: return once the job or endpoint is created");
}

// Command line > KILN_SAGEMAKER_* > --config file > defaults.
void apply_defaults(Args& a) {
  std::map<std::string, std::string> file;
  std::string cfg = a.given("--config") ? a.get("--config") : "";
  if (cfg.empty())
    if (const char* e = std::getenv("KILN_SAGEMAKER_CONFIG")) cfg = e;
  if (!cfg.empty()) {
    IniFile ini = parse_ini("[x]\n" + kiln::read_file(cfg));
    file = ini["x"];
  }
  for (const Opt& o : kOptions) {
    std::string name = std::string("--") + o.name;
    if (a.given(name) || std::string(o.name) == "config") continue;
    if (const char* e = std::getenv(env_name(o.name).c_str()); e && *e) a.set(name, e);
    else if (auto it = file.find(o.name); it != file.end()) a.set(name, it->second);
  }
}

bool parse_bool(const std::string& v, const std::string& what) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  kiln::fail(what, "true or false", "'" + v + "'");
}

struct Session {
  ClientConfig cfg;
  std::string role_arn, bucket, prefix, image, job, endpoint, data_dir, data_s3;
  bool dry_run = false, wait = true;
  PollPolicy poll;
  const Args* args = nullptr;

  std::string s3_base() const { return "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix); }
  std::string output_s3() const { return s3_base() + "/output"; }
  std::string model_data_default() const { return output_s3() + "/" + job + "/output/model.tar.gz"; }
};

std::string timestamp_name() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "kiln-%Y%m%d-%H%M%S", &tm);
  return buf;
}

Session make_session(Args& a) {
  apply_defaults(a);
  Session s;
  s.args = &a;
  s.cfg = make_client_config(a.get_or("--region", ""), a.get_or("--endpoint-url", ""), a.get_or("--profile", ""));
  s.dry_run = a.flag_set("--dry-run");
  if (s.dry_run) s.cfg.dry_run = [](const std::string& r) { std::printf("[dry-run] %s", r.c_str()); };
  s.wait = !a.flag_set("--no-wait") && !s.dry_run;
  if (s.cfg.region.empty())
    throw kiln::Error("kiln sagemaker: no region", "pass --region or set AWS_REGION (or a region in your AWS profile)");
  s.role_arn = a.get_or("--role-arn", "");
  s.bucket = a.get_or("--bucket", "");  // "" = the default bucket, resolved when needed (use_bucket)
  s.prefix = a.get_or("--prefix", "");
  while (!s.prefix.empty() && s.prefix.back() == '/') s.prefix.pop_back();
  s.image = a.get_or("--image", "");
  s.job = a.get_or("--job-name", "");
  s.endpoint = a.get_or("--endpoint-name", "");
  s.data_dir = a.get_or("--data-dir", "data");
  s.data_s3 = a.get_or("--data-s3-uri", "");
  double poll_s = a.get_double("--poll-seconds");
  if (!(poll_s > 0 && poll_s <= 600)) kiln::fail("--poll-seconds", "a number in (0, 600]", a.get("--poll-seconds"));
  s.poll.initial = std::chrono::milliseconds(static_cast<int64_t>(poll_s * 1000));
  s.poll.max = std::max(s.poll.initial, std::chrono::milliseconds(60000));
  s.poll.cancelled = [] { return g_interrupted.load(); };
  return s;
}

void need(const std::string& value, const char* option, const char* what) {
  if (value.empty())
    throw kiln::Error(std::string("kiln sagemaker: ") + what + " needs " + option,
                      std::string("pass ") + option + ", or set " + env_name(option + 2));
}

void print_event(const std::string& e) {
  std::printf("%s\n", e.c_str());
  std::fflush(stdout);
}

// The bucket upload/train/run use: --bucket as given, else the SDK's default bucket
// sagemaker-REGION-ACCOUNT (account from the role ARN, else STS GetCallerIdentity), created
// when missing as Session.default_bucket() does.
void use_bucket(Session& s) {
  if (!s.bucket.empty()) return;
  DefaultBucket b = default_bucket(s.cfg, s.role_arn);
  S3Client s3(s.cfg);
  bool created = ensure_bucket(s3, b.name);
  std::printf("bucket: %s (default bucket; account %s from %s)%s\n", b.name.c_str(), b.account.c_str(),
              b.account_source.c_str(), created ? ", created" : "");
  std::fflush(stdout);
  s.bucket = b.name;
}

// ---- steps

int step_check(Session& s) {
  int problems = 0;
  auto say = [&](bool ok, const std::string& what) {
    std::printf("[%s] %s\n", ok ? " ok " : "FAIL", what.c_str());
    if (!ok) ++problems;
  };
  try {
    Credentials c = s.cfg.credentials->get();
    say(true, "credentials: " + c.describe());
  } catch (const kiln::Error& e) {
    say(false, std::string("credentials: ") + e.what());
    return 1;
  }
  say(true, "region: " + s.cfg.region + (s.cfg.endpoint_url.empty() ? "" : " (endpoint " + s.cfg.endpoint_url + ")"));
  std::string sts_account;
  try {
    CallerIdentity id = StsClient(s.cfg).get_caller_identity();
    sts_account = id.account;
    say(true, "account: " + id.account + " (" + id.arn + ", from STS GetCallerIdentity)");
  } catch (const kiln::Error& e) {
    say(false, std::string("account: STS GetCallerIdentity: ") + e.what());
  }
  if (s.role_arn.empty()) {
    say(false, "role: no --role-arn (or KILN_SAGEMAKER_ROLE_ARN) given");
  } else {
    try {
      RoleCheck rc = IamClient(s.cfg).check_sagemaker_role(s.role_arn);
      say(rc.assumable_by_sagemaker, "role " + s.role_arn + " can be assumed by SageMaker");
      say(rc.s3_access, "role has S3 access");
      say(rc.sagemaker_access, "role has SageMaker access");
      for (const auto& n : rc.notes) std::printf("       %s\n", n.c_str());
    } catch (const kiln::Error& e) {
      say(false, std::string("role: ") + e.what());
    }
  }
  if (s.bucket.empty()) {
    std::string account = s.role_arn.empty() ? "" : account_from_arn(s.role_arn);
    if (account.empty()) account = sts_account;
    if (account.empty()) {
      say(false, "bucket: no --bucket given and no account known for the default bucket sagemaker-REGION-ACCOUNT");
    } else {
      std::string name = "sagemaker-" + s.cfg.region + "-" + account;
      try {
        bool exists = S3Client(s.cfg).bucket_exists(name);
        say(true, "bucket " + name + " (default)" + (exists ? " exists and is reachable" : " does not exist yet: upload, train and run create it"));
      } catch (const kiln::Error& e) {
        say(false, "bucket " + name + " (default): " + e.what());
      }
    }
  } else {
    try {
      bool exists = S3Client(s.cfg).bucket_exists(s.bucket);
      say(exists, "bucket " + s.bucket + (exists ? " exists and is reachable" : " does not exist (kiln s3 mb s3://" + s.bucket + ")"));
    } catch (const kiln::Error& e) {
      say(false, "bucket " + s.bucket + ": " + e.what());
    }
  }
  say(!s.image.empty(), s.image.empty() ? "image: no --image (or KILN_SAGEMAKER_IMAGE) given" : "image: " + s.image);
  std::printf("%s\n", problems ? "some checks failed" : "all checks passed");
  return problems ? 1 : 0;
}

std::string step_upload(Session& s) {
  if (s.data_s3.empty()) use_bucket(s);
  std::string dst = s.data_s3.empty() ? s.s3_base() + "/data/cifar100" : s.data_s3;
  if (!fs::is_directory(s.data_dir))
    throw kiln::Error("kiln sagemaker upload: " + s.data_dir + " is not a directory",
                      "pass --data-dir with the CIFAR-100 files (kiln download cifar100 --dir data)");
  S3Client s3(s.cfg);
  TransferOptions t;
  t.recursive = true;
  int64_t n = copy(s3, s.data_dir, dst, t);
  std::printf(s.dry_run ? "would upload %lld files to %s\n" : "uploaded %lld files to %s\n", static_cast<long long>(n), dst.c_str());
  return dst;
}

TrainingJobSpec training_spec(Session& s, const std::string& data_s3) {
  const Args& a = *s.args;
  TrainingJobSpec t;
  t.job_name = s.job;
  t.role_arn = s.role_arn;
  t.image_uri = s.image;
  t.instance_type = a.get("--train-instance-type");
  t.volume_size_gb = a.get_int("--volume-gb");
  t.input_s3_uri = data_s3;
  t.output_s3_uri = s.output_s3();
  t.checkpoint_s3_uri = s.s3_base() + "/checkpoints/" + s.job;
  t.spot = parse_bool(a.get("--spot"), "--spot");
  t.max_run_s = a.get_int("--max-run");
  t.max_wait_s = a.get_int("--max-wait");
  if (t.spot && t.max_wait_s < t.max_run_s)
    kiln::fail("--max-wait", "at least --max-run (" + std::to_string(t.max_run_s) + ") with spot training",
               std::to_string(t.max_wait_s));
  t.hyperparameters = {{"epochs", a.get("--epochs")}, {"batch_size", a.get("--batch-size")}, {"lr", a.get("--lr")}};
  std::string extra = a.get_or("--hyperparameters", "");
  std::stringstream ss(extra);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) kiln::fail("--hyperparameters", "name=value pairs separated by commas", "'" + item + "'");
    t.hyperparameters[item.substr(0, eq)] = item.substr(eq + 1);
  }
  t.metric_definitions = kiln_metric_definitions();
  return t;
}

// Returns the model artifact URI.
std::string step_train(Session& s, const std::string& data_s3_in) {
  need(s.role_arn, "--role-arn", "train");
  need(s.image, "--image", "train");
  use_bucket(s);
  std::string data_s3 = data_s3_in.empty() ? (s.data_s3.empty() ? s.s3_base() + "/data/cifar100" : s.data_s3) : data_s3_in;
  SageMakerClient sm(s.cfg);
  TrainingJobSpec spec = training_spec(s, data_s3);
  std::string arn = sm.create_training_job(spec);
  std::printf("%s training job %s%s\n", s.dry_run ? "would create" : "created", s.job.c_str(), arn.empty() ? "" : (" (" + arn + ")").c_str());
  if (!s.wait) return s.model_data_default();
  // The job's output from CloudWatch Logs, read every --poll-seconds while waiting; a log
  // error is reported once and never ends the wait (the next read is retried at the next tick).
  ClientConfig logs_cfg = s.cfg;
  logs_cfg.retry.max_attempts = 2;
  logs_cfg.retry.base_delay_s = 0.2;
  logs_cfg.retry.max_delay_s = 2.0;
  TrainingLogFollower logs(logs_cfg, s.job, spec.instance_count, print_event, [](const std::string& w) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", w.c_str());
  });
  PollPolicy p = s.poll;
  p.tick = s.poll.initial;
  p.on_tick = [&] {
    if (!g_interrupted) logs.poll();
  };
  json d;
  try {
    d = sm.wait_training_job(s.job, p, [&](const std::string& e) { check_interrupted(); print_event(e); });
  } catch (const kiln::Error&) {
    if (g_interrupted) {
      std::printf("interrupted: stopping training job %s\n", s.job.c_str());
      try {
        sm.stop_training_job(s.job);
      } catch (const kiln::Error& e) {
        std::fprintf(stderr, "could not stop %s: %s\n", s.job.c_str(), e.what());
      }
    } else {
      logs.drain();  // a failed job's last lines say why
    }
    throw;
  }
  logs.drain();
  for (const std::string& line : training_time_summary(d)) print_event(line);
  if (d.contains("FinalMetricDataList"))
    for (const auto& m : d["FinalMetricDataList"])
      std::printf("  %s = %s\n", m.value("MetricName", "").c_str(), m.contains("Value") ? m["Value"].dump().c_str() : "?");
  std::string artifact = d.contains("ModelArtifacts") ? d["ModelArtifacts"].value("S3ModelArtifacts", "") : "";
  if (artifact.empty()) artifact = s.model_data_default();
  std::printf("model: %s\n", artifact.c_str());
  return artifact;
}

EndpointSpec endpoint_spec(Session& s, const std::string& model_data) {
  EndpointSpec e;
  e.model_name = e.config_name = e.endpoint_name = s.endpoint;
  e.role_arn = s.role_arn;
  e.image_uri = s.image;
  e.model_data_url = model_data;
  e.instance_type = s.args->get("--deploy-instance-type");
  return e;
}

void step_deploy(Session& s, std::string model_data) {
  need(s.role_arn, "--role-arn", "deploy");
  need(s.image, "--image", "deploy");
  SageMakerClient sm(s.cfg);
  if (model_data.empty()) model_data = s.args->get_or("--model-data", "");
  if (model_data.empty()) {
    need(s.job, "--job-name", "deploy (to find the model artifact; or pass --model-data)");
    if (s.dry_run) {
      use_bucket(s);
      model_data = s.model_data_default();
    } else {
      json d = sm.describe_training_job(s.job);
      model_data = d.contains("ModelArtifacts") ? d["ModelArtifacts"].value("S3ModelArtifacts", "") : "";
      if (model_data.empty())
        throw kiln::Error("training job " + s.job + " has no model artifact (status " + d.value("TrainingJobStatus", "?") + ")");
    }
  }
  EndpointSpec e = endpoint_spec(s, model_data);
  sm.create_model(e);
  std::printf("%s model %s from %s\n", s.dry_run ? "would create" : "created", e.model_name.c_str(), model_data.c_str());
  sm.create_endpoint_config(e);
  std::printf("%s endpoint config %s (%s x%lld)\n", s.dry_run ? "would create" : "created", e.config_name.c_str(), e.instance_type.c_str(),
              static_cast<long long>(e.instance_count));
  sm.create_endpoint(e);
  std::printf("%s endpoint %s\n", s.dry_run ? "would create" : "created", e.endpoint_name.c_str());
  if (!s.wait) return;
  sm.wait_endpoint(e.endpoint_name, s.poll, [&](const std::string& ev) { check_interrupted(); print_event(ev); });
}

// The notebook's predictor.predict(images.numpy()): the first 4 test images (its test loader,
// batch 4, not shuffled), normalized, sent as application/x-npy float32 (4,3,32,32).
int step_predict(Session& s) {
  need(s.endpoint, "--endpoint-name", "predict");
  kiln::data::Cifar100 ds = kiln::data::load_cifar100(s.data_dir);
  const kiln::data::Dataset& test = ds.test;
  const int64_t n = 4;
  if (test.size() < n) kiln::fail("test set in " + s.data_dir, "at least 4 images", std::to_string(test.size()));
  const float mean[3] = {0.507f, 0.487f, 0.441f}, stdv[3] = {0.267f, 0.256f, 0.276f};
  kiln::io::NamedArray x;
  x.name = "images";
  x.dtype = kiln::io::DType::f32;
  x.shape = {n, 3, 32, 32};
  x.bytes.resize(static_cast<size_t>(n * kiln::data::kImageBytes) * sizeof(float));
  float* dst = x.f32();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < 1024; ++p) {
        float v = static_cast<float>(test.image(i)[c * 1024 + p]) / 255.0f;
        dst[(i * 3 + c) * 1024 + p] = (v - mean[c]) / stdv[c];
      }
  SageMakerRuntimeClient rt(s.cfg);
  InvokeResult r = rt.invoke_endpoint(s.endpoint, kiln::io::encode_npy(x), "application/x-npy", "application/x-npy");
  if (s.dry_run) return 0;
  // The answer: (4, classes) log-probabilities, as npy (kiln serve) or a JSON list of lists.
  std::vector<std::vector<float>> rows;
  if (r.body.rfind("\x93NUMPY", 0) == 0) {
    kiln::io::NamedArray y = kiln::io::parse_npy(r.body, "InvokeEndpoint response");
    if (y.dtype != kiln::io::DType::f32 || y.shape.size() != 2 || y.shape[0] != n)
      kiln::fail("InvokeEndpoint response", "float32 (4, classes)", kiln::io::dtype_name(y.dtype) + std::string(" ") + kiln::io::shape_str(y.shape));
    for (int64_t i = 0; i < n; ++i) rows.emplace_back(y.f32() + i * y.shape[1], y.f32() + (i + 1) * y.shape[1]);
  } else {
    json j;
    try {
      j = json::parse(r.body);
    } catch (const std::exception&) {
      kiln::fail("InvokeEndpoint response (" + r.content_type + ")", "an .npy array or JSON", "'" + r.body.substr(0, 60) + "'");
    }
    if (j.is_object() && j.contains("predictions")) j = j["predictions"];
    if (!j.is_array() || j.size() != static_cast<size_t>(n)) kiln::fail("InvokeEndpoint response", "4 rows", j.dump().substr(0, 60));
    for (const auto& row : j) rows.push_back(row.get<std::vector<float>>());
  }
  for (int64_t i = 0; i < n; ++i) {
    const auto& row = rows[static_cast<size_t>(i)];
    if (row.empty()) kiln::fail("InvokeEndpoint response row", "class scores", "an empty row");
    size_t best = static_cast<size_t>(std::max_element(row.begin(), row.end()) - row.begin());
    auto name = [&](size_t k) { return k < test.class_names.size() ? test.class_names[k] : "class " + std::to_string(k); };
    int64_t truth = test.labels[static_cast<size_t>(i)];
    std::printf("image %lld: predicted %s (%zu, log-prob %.4f), true %s (%lld)\n", static_cast<long long>(i),
                name(best).c_str(), best, static_cast<double>(row[best]), name(static_cast<size_t>(truth)).c_str(),
                static_cast<long long>(truth));
  }
  return 0;
}

// Deletes endpoint, endpoint config and model; each is attempted. Returns the failures.
int step_delete(Session& s) {
  need(s.endpoint, "--endpoint-name", "delete");
  SageMakerClient sm(s.cfg);
  int failures = 0;
  auto attempt = [&](const char* what, const std::function<void()>& fn) {
    try {
      fn();
      std::printf("%s %s %s\n", s.dry_run ? "would delete" : "deleted", what, s.endpoint.c_str());
    } catch (const AwsError& e) {
      bool gone = e.code() == "ValidationException" && (e.aws_message().find("Could not find") != std::string::npos ||
                                                          e.aws_message().find("does not exist") != std::string::npos);
      if (gone) {
        std::printf("%s %s: already gone\n", what, s.endpoint.c_str());
      } else {
        std::fprintf(stderr, "could not delete %s %s: %s\n", what, s.endpoint.c_str(), e.what());
        ++failures;
      }
    } catch (const kiln::Error& e) {
      std::fprintf(stderr, "could not delete %s %s: %s\n", what, s.endpoint.c_str(), e.what());
      ++failures;
    }
  };
  attempt("endpoint", [&] { sm.delete_endpoint(s.endpoint); });
  attempt("endpoint config", [&] { sm.delete_endpoint_config(s.endpoint); });
  attempt("model", [&] { sm.delete_model(s.endpoint); });
  return failures;
}

// ---- commands

int with_session(const std::string& sub, const std::string& desc, const std::vector<std::string>& argv,
                 bool job_default, const std::function<int(Session&)>& fn) {
  Args a("kiln sagemaker " + sub, desc);
  declare(a);
  if (!a.parse(argv)) return 0;
  Session s = make_session(a);
  if (s.job.empty() && job_default) s.job = timestamp_name();
  if (s.endpoint.empty()) s.endpoint = s.job;
  return fn(s);
}

int run_all(Session& s) {
  int rc = 0;
  bool deploy_started = false;
  try {
    std::printf("== upload\n");
    std::string data = step_upload(s);
    check_interrupted();
    std::printf("== train %s\n", s.job.c_str());
    std::string model = step_train(s, data);
    check_interrupted();
    std::printf("== deploy %s\n", s.endpoint.c_str());
    deploy_started = true;
    step_deploy(s, model);
    check_interrupted();
    std::printf("== predict\n");
    step_predict(s);
    check_interrupted();
  } catch (const kiln::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln sagemaker run: error: %s\n", e.full_message().c_str());
    rc = g_interrupted ? 130 : 1;
  }
  // "very important": the endpoint costs money until deleted, whatever happened above.
  std::signal(SIGINT, SIG_IGN);
  std::printf("== delete %s\n", s.endpoint.c_str());
  if (deploy_started || s.dry_run) {
    if (step_delete(s) != 0) {
      std::fprintf(stderr, "kiln sagemaker run: cleanup incomplete: delete endpoint %s by hand\n", s.endpoint.c_str());
      if (rc == 0) rc = 1;
    }
  } else {
    std::printf("nothing was deployed\n");
  }
  return rc;
}

int run_sagemaker(const std::vector<std::string>& argv) {
  static const char* usage =
      "usage: kiln sagemaker <check|upload|train|deploy|predict|delete|run> [options]\n"
      "  check    credentials, account (STS), region, execution role and its policies, bucket\n"
      "  upload   copy --data-dir to s3://BUCKET/PREFIX/data/cifar100\n"
      "  train    create the training job (spot, checkpoints, metrics) and follow it and its logs\n"
      "  deploy   model + endpoint config + endpoint, wait for InService\n"
      "  predict  send 4 CIFAR-100 test images (application/x-npy), print the classes\n"
      "  delete   endpoint, endpoint config and model\n"
      "  run      all of the above in order; delete is attempted whatever happens\n"
      "`kiln sagemaker <sub> --help` lists the options (shared by all).\n";
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::fputs(usage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  // Ctrl-C / SIGTERM: the current wait stops (train then stops its job; run cleans up).
  struct Handlers {
    void (*old_int)(int), (*old_term)(int);
    Handlers() : old_int(std::signal(SIGINT, on_sigint)), old_term(std::signal(SIGTERM, on_sigint)) {
      g_interrupted = false;
    }
    ~Handlers() {
      std::signal(SIGINT, old_int);
      std::signal(SIGTERM, old_term);
    }
  } handlers;
  std::vector<std::string> rest(argv.begin() + 1, argv.end());
  const std::string& sub = argv[0];
  if (sub == "check")
    return with_session(sub, "Check credentials, region, the execution role and the bucket.", rest, false, step_check);
  if (sub == "upload")
    return with_session(sub, "Upload the dataset directory to S3.", rest, false, [](Session& s) {
      step_upload(s);
      return 0;
    });
  if (sub == "train")
    return with_session(sub, "Create a training job and follow it to the end.", rest, true, [](Session& s) {
      step_train(s, "");
      return 0;
    });
  if (sub == "deploy")
    return with_session(sub, "Create model, endpoint config and endpoint; wait until InService.", rest, false,
                        [](Session& s) {
                          need(s.endpoint, "--endpoint-name", "deploy");
                          step_deploy(s, "");
                          return 0;
                        });
  if (sub == "predict")
    return with_session(sub, "Send 4 test images to the endpoint and print the predicted classes.", rest, false,
                        step_predict);
  if (sub == "delete")
    return with_session(sub, "Delete the endpoint, its config and the model.", rest, false,
                        [](Session& s) { return step_delete(s) ? 1 : 0; });
  if (sub == "run")
    return with_session(sub, "The whole notebook: upload, train, deploy, predict, delete.", rest, true, run_all);
  throw kiln::Error("unknown sagemaker command '" + sub + "'", "one of: check upload train deploy predict delete run");
}

}  // namespace

KILN_COMMAND("sagemaker", "train and serve on SageMaker (check, upload, train, deploy, predict, delete, run)",
             run_sagemaker);
