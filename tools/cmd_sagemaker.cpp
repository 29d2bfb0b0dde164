// `kiln sagemaker setup-role|check|upload|train|attach|deploy|predict|delete|run`: the reference
// notebook as commands, over kiln's own AWS client (aws/). Option values come from, in order: the
// command line, environment variables KILN_SAGEMAKER_<OPTION> (e.g. KILN_SAGEMAKER_ROLE_ARN), a
// `--config FILE` of `option = value` lines, then the built-in defaults. Each deploy creates
// fresh model / endpoint config / endpoint names (JOB-m-, -c-, -e-<UTC time>-<random>). After
// CreateModel, any failure or Ctrl-C/SIGTERM in deploy/run/attach --deploy ends with the
// resources deleted (waiting while the endpoint is Creating), or a loud message naming what is
// left and the `kiln sagemaker delete` command for it; `run` deletes them in any case. Status
// polls that fail transiently are waited out while the job can still run. Without
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
// While cleaning up, a signal stops the cleanup's waiting (what is left is then reported).
std::atomic<bool> g_abort_cleanup{false};
extern "C" void on_cleanup_signal(int) { g_abort_cleanup = true; }
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
    {"wait-timeout", "SECONDS", "give up waiting after this long (default: while the job can still run: its creation + max-run + max-wait + 1 h; endpoints 72 h)", ""},
    {"cleanup-timeout", "SECONDS", "how long deleting an endpoint may wait for it to leave Creating/Updating", "1800"},
    {"role-name", "NAME", "setup-role: the execution role to create or complete", ""},
    {"model-name", "NAME", "delete: the model (default: the endpoint config's)", ""},
    {"endpoint-config-name", "NAME", "delete: the endpoint config (default: the endpoint's)", ""},
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
  a.flag("--deploy", "attach: after the job, deploy its model, predict and delete (as run does)");
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

// What a deploy created, or may have created (each flag is set before its request is sent).
struct Deployed {
  std::string model, config, endpoint;
  bool model_made = false, config_made = false, endpoint_made = false;
  bool any() const { return model_made || config_made || endpoint_made; }
};

struct Session {
  ClientConfig cfg;
  std::string role_arn, bucket, prefix, image, job, endpoint, data_dir, data_s3;
  bool dry_run = false, wait = true;
  PollPolicy poll;
  std::chrono::seconds cleanup_timeout{1800};
  Deployed dep;
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
  s.poll.on_warning = [](const std::string& w) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", w.c_str());
  };
  if (std::string wt = a.get_or("--wait-timeout", ""); !wt.empty()) {
    double v = a.get_double("--wait-timeout");
    if (!(v > 0)) kiln::fail("--wait-timeout", "a positive number of seconds", "'" + wt + "'");
    s.poll.timeout = std::chrono::seconds(static_cast<int64_t>(std::ceil(v)));
    s.poll.bound_by_job = false;
  }
  double ct = a.get_double("--cleanup-timeout");
  if (!(ct > 0)) kiln::fail("--cleanup-timeout", "a positive number of seconds", a.get("--cleanup-timeout"));
  s.cleanup_timeout = std::chrono::seconds(static_cast<int64_t>(std::ceil(ct)));
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

void warn_line(const std::string& w) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", w.c_str());
}

// A failed Create* call, with the quota / iam:PassRole hint when one applies.
[[noreturn]] void rethrow_create_failure(const AwsError& e, const std::string& instance_type, bool training, bool spot,
                                         const std::string& role_arn) {
  std::string hint = create_failure_hint(e, instance_type, training, spot, role_arn);
  if (hint.empty()) throw;
  throw kiln::Error(e.what(), hint);
}

std::string artifact_of(const json& d) {
  return d.contains("ModelArtifacts") ? d["ModelArtifacts"].value("S3ModelArtifacts", "") : "";
}

// Follows job `job` to its end: status changes, its CloudWatch log (every host), then the
// training/billable seconds, final metrics and the model artifact (returned). On Ctrl-C the job
// is stopped when stop_on_interrupt (train, run), else left running (attach).
std::string follow_job(Session& s, SageMakerClient& sm, const std::string& job, int64_t instance_count,
                       bool stop_on_interrupt) {
  // The job's output from CloudWatch Logs, read every --poll-seconds while waiting; a log
  // error is reported once and never ends the wait (the next read is retried at the next tick).
  ClientConfig logs_cfg = s.cfg;
  logs_cfg.retry.max_attempts = 2;
  logs_cfg.retry.base_delay_s = 0.2;
  logs_cfg.retry.max_delay_s = 2.0;
  TrainingLogFollower logs(logs_cfg, job, instance_count, print_event, warn_line);
  PollPolicy p = s.poll;
  p.tick = s.poll.initial;
  p.on_tick = [&] {
    if (!g_interrupted) logs.poll();
  };
  json d;
  try {
    d = sm.wait_training_job(job, p, [&](const std::string& e) { check_interrupted(); print_event(e); });
  } catch (const kiln::Error&) {
    if (g_interrupted && stop_on_interrupt) {
      std::printf("interrupted: stopping training job %s\n", job.c_str());
      try {
        sm.stop_training_job(job);
      } catch (const kiln::Error& e) {
        std::fprintf(stderr, "could not stop %s: %s\n", job.c_str(), e.what());
      }
    } else if (g_interrupted) {
      std::printf("interrupted: training job %s keeps running (kiln sagemaker attach --job-name %s follows it again)\n",
                  job.c_str(), job.c_str());
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
  std::string artifact = artifact_of(d);
  if (artifact.empty()) artifact = s.model_data_default();
  std::printf("model: %s\n", artifact.c_str());
  return artifact;
}

// Returns the model artifact URI.
std::string step_train(Session& s, const std::string& data_s3_in) {
  need(s.role_arn, "--role-arn", "train");
  need(s.image, "--image", "train");
  use_bucket(s);
  std::string data_s3 = data_s3_in.empty() ? (s.data_s3.empty() ? s.s3_base() + "/data/cifar100" : s.data_s3) : data_s3_in;
  SageMakerClient sm(s.cfg);
  TrainingJobSpec spec = training_spec(s, data_s3);
  std::string arn;
  try {
    arn = sm.create_training_job(spec);
  } catch (const AwsError& e) {
    rethrow_create_failure(e, spec.instance_type, true, spec.spot, spec.role_arn);
  }
  std::printf("%s training job %s%s\n", s.dry_run ? "would create" : "created", s.job.c_str(), arn.empty() ? "" : (" (" + arn + ")").c_str());
  if (!s.wait) return s.model_data_default();
  return follow_job(s, sm, s.job, spec.instance_count, true);
}

EndpointSpec endpoint_spec(Session& s, const std::string& model_data) {
  EndpointSpec e;
  e.model_name = s.dep.model;
  e.config_name = s.dep.config;
  e.endpoint_name = s.dep.endpoint;
  e.role_arn = s.role_arn;
  e.image_uri = s.image;
  e.model_data_url = model_data;
  e.instance_type = s.args->get("--deploy-instance-type");
  return e;
}

std::string delete_command(const Session& s, const Deployed& d) {
  std::string c = "kiln sagemaker delete --region " + s.cfg.region;
  if (const std::string p = s.args->get_or("--profile", ""); !p.empty()) c += " --profile " + p;
  if (const std::string u = s.args->get_or("--endpoint-url", ""); !u.empty()) c += " --endpoint-url " + u;
  return c + " --endpoint-name " + d.endpoint + " --endpoint-config-name " + d.config + " --model-name " + d.model;
}

// Fresh names (two deploys of one job never collide); an explicit --endpoint-name is kept for the
// endpoint and is the base of the model and config names.
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
      model_data = artifact_of(d);
      if (model_data.empty())
        throw kiln::Error("training job " + s.job + " has no model artifact (status " + d.value("TrainingJobStatus", "?") + ")",
                          "wait for the job to complete (kiln sagemaker attach --job-name " + s.job + ")");
    }
  }
  DeployNames n = fresh_deploy_names(s.endpoint.empty() ? (s.job.empty() ? "kiln" : s.job) : s.endpoint);
  s.dep = {n.model, n.config, s.endpoint.empty() ? n.endpoint : s.endpoint};
  if (!valid_sagemaker_name(s.dep.endpoint))
    kiln::fail("--endpoint-name", "1-63 characters matching [a-zA-Z0-9](-*[a-zA-Z0-9])*", "'" + s.dep.endpoint + "'");
  EndpointSpec e = endpoint_spec(s, model_data);
  s.dep.model_made = true;  // set first: a lost answer may still have created it
  sm.create_model(e);
  std::printf("%s model %s from %s\n", s.dry_run ? "would create" : "created", e.model_name.c_str(), model_data.c_str());
  check_interrupted();
  s.dep.config_made = true;
  sm.create_endpoint_config(e);
  std::printf("%s endpoint config %s (%s x%lld)\n", s.dry_run ? "would create" : "created", e.config_name.c_str(), e.instance_type.c_str(),
              static_cast<long long>(e.instance_count));
  check_interrupted();
  s.dep.endpoint_made = true;
  try {
    sm.create_endpoint(e);
  } catch (const AwsError& err) {
    rethrow_create_failure(err, e.instance_type, false, false, e.role_arn);
  }
  std::printf("%s endpoint %s\n", s.dry_run ? "would create" : "created", e.endpoint_name.c_str());
  std::fflush(stdout);
  s.endpoint = e.endpoint_name;  // predict's
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

// Deletes endpoint (waiting while SageMaker refuses because it is Creating/Updating), endpoint
// config and model; each is attempted. What could not be deleted is reported loudly on stderr with
// the command that deletes it. Returns the number of resources left.
int delete_resources(Session& s, const Deployed& d) {
  SageMakerClient sm(s.cfg);
  // A signal now stops only the waiting; the leftovers are then reported.
  g_abort_cleanup = false;
  auto old_int = std::signal(SIGINT, on_cleanup_signal);
  auto old_term = std::signal(SIGTERM, on_cleanup_signal);
  std::vector<std::string> left;
  const char* done = s.dry_run ? "would delete" : "deleted";
  if (d.endpoint_made) {
    PollPolicy p;
    p.initial = s.poll.initial;
    p.max = std::max(s.poll.initial, std::chrono::milliseconds(30000));
    p.timeout = s.cleanup_timeout;
    p.cancelled = [] { return g_abort_cleanup.load(); };
    std::string why = sm.delete_endpoint_waiting(d.endpoint, p, print_event);
    if (why.empty()) std::printf("%s endpoint %s\n", done, d.endpoint.c_str());
    else left.push_back("endpoint " + d.endpoint + " (billed per instance-hour while it exists): " + why);
  }
  auto attempt = [&](bool made, const char* what, const std::string& name, const std::function<void()>& fn) {
    if (!made) return;
    try {
      fn();
      std::printf("%s %s %s\n", done, what, name.c_str());
    } catch (const AwsError& e) {
      if (is_not_found(e)) std::printf("%s %s: already gone\n", what, name.c_str());
      else left.push_back(std::string(what) + " " + name + ": " + e.what());
    } catch (const kiln::Error& e) {
      left.push_back(std::string(what) + " " + name + ": " + e.what());
    }
  };
  attempt(d.config_made, "endpoint config", d.config, [&] { sm.delete_endpoint_config(d.config); });
  attempt(d.model_made, "model", d.model, [&] { sm.delete_model(d.model); });
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  if (!left.empty()) {
    std::fflush(stdout);
    std::fprintf(stderr, "\n*** kiln sagemaker: CLEANUP INCOMPLETE: these SageMaker resources still exist ***\n");
    for (const std::string& l : left) std::fprintf(stderr, "  %s\n", l.c_str());
    std::fprintf(stderr, "*** delete them with:\n  %s\n", delete_command(s, d).c_str());
  }
  return static_cast<int>(left.size());
}

// `delete`: the endpoint's config and model are found through DescribeEndpoint and
// DescribeEndpointConfig unless given (--endpoint-config-name, --model-name); when the endpoint
// is gone already, they default to its name (the names kiln used before fresh names).
int step_delete(Session& s) {
  SageMakerClient sm(s.cfg);
  Deployed d;
  d.endpoint = s.endpoint;
  d.config = s.args->get_or("--endpoint-config-name", "");
  d.model = s.args->get_or("--model-name", "");
  if (d.endpoint.empty() && d.config.empty() && d.model.empty())
    need(s.endpoint, "--endpoint-name", "delete");
  d.endpoint_made = !d.endpoint.empty();
  if (d.config.empty() && !d.endpoint.empty()) {
    try {
      d.config = sm.describe_endpoint(d.endpoint).value("EndpointConfigName", "");
    } catch (const AwsError& e) {
      if (!is_not_found(e)) throw;
    }
    if (d.config.empty()) d.config = d.endpoint;
  }
  d.config_made = !d.config.empty();
  if (d.model.empty() && !d.config.empty()) {
    try {
      json c = sm.describe_endpoint_config(d.config);
      if (c.contains("ProductionVariants") && c["ProductionVariants"].is_array() && !c["ProductionVariants"].empty())
        d.model = c["ProductionVariants"][0].value("ModelName", "");
    } catch (const AwsError& e) {
      if (!is_not_found(e)) throw;
    }
    if (d.model.empty()) d.model = d.endpoint.empty() ? d.config : d.endpoint;
  }
  d.model_made = !d.model.empty();
  return delete_resources(s, d);
}

// ---- commands

int with_session(const std::string& sub, const std::string& desc, const std::vector<std::string>& argv,
                 bool job_default, const std::function<int(Session&)>& fn) {
  Args a("kiln sagemaker " + sub, desc);
  declare(a);
  if (!a.parse(argv)) return 0;
  Session s = make_session(a);
  if (s.job.empty() && job_default) s.job = timestamp_name();
  return fn(s);
}

void report_error(const char* who, const kiln::Error& e) {
  std::fflush(stdout);
  std::fprintf(stderr, "kiln sagemaker %s: error: %s\n", who, e.full_message().c_str());
}

// After a deploy (or a failed / interrupted one): deletes what it created. rc: the status so far.
int cleanup_deploy(Session& s, int rc) {
  std::printf("== delete %s\n", s.dep.endpoint.empty() ? "(nothing)" : s.dep.endpoint.c_str());
  if (!s.dep.any()) {
    std::printf("nothing was deployed\n");
    return rc;
  }
  if (delete_resources(s, s.dep) != 0 && rc == 0) rc = 1;
  return rc;
}

// deploy, predict, then delete whatever was created (run and attach --deploy).
int deploy_predict_delete(Session& s, const std::string& model, const char* who) {
  int rc = 0;
  try {
    std::printf("== deploy\n");
    step_deploy(s, model);
    check_interrupted();
    std::printf("== predict\n");
    step_predict(s);
    check_interrupted();
  } catch (const kiln::Error& e) {
    report_error(who, e);
    rc = g_interrupted ? 130 : 1;
  }
  // "very important": the endpoint costs money until deleted, whatever happened above.
  return cleanup_deploy(s, rc);
}

int run_all(Session& s) {
  std::string model;
  try {
    std::printf("== upload\n");
    std::string data = step_upload(s);
    check_interrupted();
    std::printf("== train %s\n", s.job.c_str());
    model = step_train(s, data);
    check_interrupted();
  } catch (const kiln::Error& e) {
    report_error("run", e);
    return cleanup_deploy(s, g_interrupted ? 130 : 1);
  }
  return deploy_predict_delete(s, model, "run");
}

// `deploy`: the endpoint stays up when it reaches InService; a failure or Ctrl-C after
// CreateModel deletes what was created.
int deploy_command(Session& s) {
  if (s.endpoint.empty()) need(s.job, "--job-name", "deploy (or --endpoint-name with --model-data)");
  try {
    step_deploy(s, "");
  } catch (const kiln::Error& e) {
    report_error("deploy", e);
    return cleanup_deploy(s, g_interrupted ? 130 : 1);
  }
  if (s.wait)
    std::printf("endpoint %s is InService and billed until deleted:\n  kiln sagemaker predict --endpoint-name %s\n  %s\n",
                s.dep.endpoint.c_str(), s.dep.endpoint.c_str(), delete_command(s, s.dep).c_str());
  return 0;
}

// `attach`: follow an existing job; the role and image for --deploy default to the job's own.
int attach_command(Session& s) {
  need(s.job, "--job-name", "attach");
  SageMakerClient sm(s.cfg);
  std::string model;
  try {
    json d = sm.describe_training_job(s.job);
    int64_t count = d.contains("ResourceConfig") ? d["ResourceConfig"].value("InstanceCount", int64_t{1}) : 1;
    if (s.role_arn.empty()) s.role_arn = d.value("RoleArn", "");
    if (s.image.empty() && d.contains("AlgorithmSpecification"))
      s.image = d["AlgorithmSpecification"].value("TrainingImage", "");
    std::printf("attached to training job %s (%s)\n", s.job.c_str(), d.value("TrainingJobStatus", "?").c_str());
    std::fflush(stdout);
    if (s.dry_run) {
      model = s.args->get_or("--model-data", "");
    } else {
      model = follow_job(s, sm, s.job, count, false);
      if (std::string a = artifact_of(sm.describe_training_job(s.job)); !a.empty()) model = a;
    }
  } catch (const kiln::Error& e) {
    report_error("attach", e);
    return g_interrupted ? 130 : 1;
  }
  if (!s.args->flag_set("--deploy")) return 0;
  return deploy_predict_delete(s, model, "attach");
}

// `setup-role`: the notebook's step 1, then the same checks as `check`.
int setup_role_command(Session& s) {
  std::string name = s.args->get_or("--role-name", "");
  need(name, "--role-name", "setup-role");
  IamClient iam(s.cfg);
  RoleInfo role = iam.ensure_sagemaker_role(name, print_event);
  if (s.dry_run) return 0;
  RoleCheck rc = iam.check_sagemaker_role(name);
  auto say = [](bool ok, const std::string& what) { std::printf("[%s] %s\n", ok ? " ok " : "FAIL", what.c_str()); };
  say(rc.assumable_by_sagemaker, "role " + role.arn + " can be assumed by SageMaker");
  say(rc.s3_access, "role has S3 access");
  say(rc.sagemaker_access, "role has SageMaker access");
  for (const auto& n : rc.notes) std::printf("       %s\n", n.c_str());
  if (!rc.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "kiln sagemaker setup-role: role %s exists but does not pass the checks above\n", name.c_str());
    if (!rc.assumable_by_sagemaker)
      std::fprintf(stderr, "---> HINT: its trust policy was left as it was: let sagemaker.amazonaws.com call sts:AssumeRole "
                           "(IAM console > Roles > %s > Trust relationships), or pick a new --role-name\n", name.c_str());
    return 1;
  }
  std::printf("role ARN: %s\n(new roles can take a few seconds to be usable by SageMaker)\n", role.arn.c_str());
  return 0;
}

int run_sagemaker(const std::vector<std::string>& argv) {
  static const char* usage =
      "usage: kiln sagemaker <setup-role|check|upload|train|attach|deploy|predict|delete|run> [options]\n"
      "  setup-role  create the execution role (--role-name) with SageMaker's trust policy and policies\n"
      "  check    credentials, account (STS), region, execution role and its policies, bucket, ECR image\n"
      "  upload   copy --data-dir to s3://BUCKET/PREFIX/data/cifar100\n"
      "  train    create the training job (spot, checkpoints, metrics) and follow it and its logs\n"
      "  attach   follow an existing job (--job-name) to its end; --deploy: then deploy, predict, delete\n"
      "  deploy   model + endpoint config + endpoint (fresh names), wait for InService\n"
      "  predict  send 4 CIFAR-100 test images (application/x-npy), print the classes\n"
      "  delete   endpoint, endpoint config and model\n"
      "  run      upload, train, deploy, predict, delete; delete is attempted whatever happens\n"
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
  if (sub == "setup-role")
    return with_session(sub, "Create the SageMaker execution role if missing, attach its policies, check it.", rest,
                        false, setup_role_command);
  if (sub == "check")
    return with_session(sub, "Check credentials, region, the execution role, the bucket and the image.", rest, false,
                        step_check);
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
  if (sub == "attach")
    return with_session(sub, "Follow an existing training job to its end (--deploy: then deploy, predict, delete).",
                        rest, false, attach_command);
  if (sub == "deploy")
    return with_session(sub, "Create model, endpoint config and endpoint; wait until InService.", rest, false,
                        deploy_command);
  if (sub == "predict")
    return with_session(sub, "Send 4 test images to the endpoint and print the predicted classes.", rest, false,
                        step_predict);
  if (sub == "delete")
    return with_session(sub, "Delete the endpoint, its config and the model.", rest, false,
                        [](Session& s) { return step_delete(s) ? 1 : 0; });
  if (sub == "run")
    return with_session(sub, "The whole notebook: upload, train, deploy, predict, delete.", rest, true, run_all);
  throw kiln::Error("unknown sagemaker command '" + sub + "'",
                    "one of: setup-role check upload train attach deploy predict delete run");
}

}  // namespace

KILN_COMMAND("sagemaker", "train and serve on SageMaker (setup-role, check, upload, train, attach, deploy, predict, delete, run)",
             run_sagemaker);
