// `kiln sagemaker` options, session, default bucket, signals and messages (tools/sagemaker/common.h).
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/aws/credentials.h"
#include "kiln/aws/iam.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sts.h"
#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"
#include "tools/sagemaker/common.h"

namespace kiln::cli::sagemaker {

using namespace kiln::aws;
using nlohmann::json;

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
namespace {

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
    {"train-instance-count", "N", "training instances; N > 1 trains data-parallel over Open MPI (build the image with kiln image build --mpi)", "1"},
    {"deploy-instance-type", "TYPE", "serving instance", "ml.c4.8xlarge"},
    {"spot", "BOOL", "managed spot training (true/false)", "true"},
    {"max-run", "SECONDS", "MaxRuntimeInSeconds", "86400"},
    {"max-wait", "SECONDS", "MaxWaitTimeInSeconds (spot only, >= max-run)", "172800"},
    {"volume-gb", "N", "training volume size", "30"},
    {"epochs", "N", "hyperparameter epochs", "4"},
    {"batch-size", "N", "hyperparameter batch_size", "128"},
    {"lr", "LR", "hyperparameter lr (learning rate)", "0.0002"},
    {"pretrained", "imagenet|none", "start from torchvision's ImageNet weights for the arch, uploaded once as the job's `pretrained` channel (the notebook's create_model()); none: random initialisation", "imagenet"},
    {"hyperparameters", "K=V,...", "more hyperparameters for kiln train (option names)", ""},
    {"data-dir", "DIR", "local CIFAR-100 directory (upload source; test images for predict)", "data"},
    {"data-distribution", "replicated|sharded", "the training channel's S3DataDistributionType: FullyReplicated, or ShardedByS3Key (--data-dir is `kiln data shard`'s output: its training/ parts, one S3 object each and at least one per instance, become the training channel, its test/ the test channel)", "replicated"},
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

}  // namespace

std::string env_name(const std::string& opt) {
  std::string v = "KILN_SAGEMAKER_";
  for (char c : opt) v += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return v;
}

void declare_options(Args& a) {
  for (const Opt& o : kOptions) a.option(std::string("--") + o.name, o.metavar, o.help, o.def);
  a.flag("--dry-run", "print each request that would be sent (secrets masked); send nothing");
  a.flag("--no-wait", "train/deploy: return once the job or endpoint is created");
  a.flag("--deploy", "attach: after the job, deploy its model, predict and delete (as run does)");
}

namespace {

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

}  // namespace

bool parse_bool(const std::string& v, const std::string& what) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  kiln::fail(what, "true or false", "'" + v + "'");
}

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

}  // namespace kiln::cli::sagemaker
