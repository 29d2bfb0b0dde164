// `kiln sagemaker check|upload|train` and following a training job (tools/sagemaker/common.h).
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "kiln/aws/ecr.h"
#include "kiln/aws/iam.h"
#include "kiln/aws/logs.h"
#include "kiln/aws/s3.h"
#include "kiln/aws/sts.h"
#include "kiln/aws/transfer.h"
#include "kiln/core/error.h"
#include "kiln/data/parts.h"
#include "kiln/data/pretrained.h"
#include "tools/sagemaker/common.h"

namespace kiln::cli::sagemaker {

using namespace kiln::aws;
using nlohmann::json;
namespace fs = std::filesystem;

// ---- steps

namespace {

// The image SageMaker will pull: an ECR URI in the job's region whose manifest is Docker's v2
// schema 2 (SageMaker refuses OCI manifests), found through ECR's BatchGetImage.
void check_image(Session& s, const std::function<void(bool, const std::string&)>& say, const std::string& account) {
  if (s.image.empty()) {
    say(false, "image: no --image (or KILN_SAGEMAKER_IMAGE) given (kiln image build, then kiln image push)");
    return;
  }
  std::optional<EcrImageRef> ref;
  try {
    ref = parse_ecr_image_uri(s.image);
  } catch (const kiln::Error& e) {
    say(false, std::string("image: ") + e.what());
    return;
  }
  if (!ref) {
    say(false, "image " + s.image + ": not an ECR image (SageMaker pulls from ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG; "
                                    "kiln image push kiln-image.tar THAT-URI --create-repository)");
    return;
  }
  if (ref->region != s.cfg.region) {
    say(false, "image " + s.image + " is in region " + ref->region + ", the jobs run in " + s.cfg.region +
                   " (SageMaker needs the image in the job's region: push it there)");
    return;
  }
  const std::string wanted = ref->digest.empty() ? ref->tag : ref->digest;
  try {
    std::optional<EcrImageInfo> info = EcrClient(s.cfg).describe_image(ref->repository, wanted);
    if (!info) {
      say(false, "image " + s.image + ": not in ECR (no " + (ref->digest.empty() ? "tag " : "digest ") + wanted +
                     " in repository " + ref->repository + "; kiln image push kiln-image.tar " + s.image +
                     " --create-repository)");
      return;
    }
    const bool v2 = info->manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json";
    say(v2, "image " + s.image + (v2 ? " is in ECR (" + info->digest + ", Docker v2 manifest)"
                                      : ": its manifest is " + info->manifest_media_type +
                                            "; SageMaker needs application/vnd.docker.distribution.manifest.v2+json "
                                            "(push it with kiln image push)"));
    if (!account.empty() && ref->account != account)
      std::printf("       the image is in account %s, you are in %s: its repository policy must let SageMaker pull "
                  "it (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer)\n",
                  ref->account.c_str(), account.c_str());
  } catch (const kiln::Error& e) {
    say(false, "image " + s.image + ": ECR BatchGetImage: " + e.what());
  }
}

// What most often stops a first job on a new account, which no read-only call can check here.
void print_quota_hints(const Session& s) {
  const std::string train = s.args->get("--train-instance-type"), serve = s.args->get("--deploy-instance-type");
  const bool spot = parse_bool(s.args->get("--spot"), "--spot");
  std::printf("hints: training needs the quota '%s' >= 1 and serving '%s' >= 1 (new accounts often have 0: Service "
              "Quotas console > Amazon SageMaker); whoever runs kiln needs iam:PassRole on the execution role\n",
              training_quota_name(train, spot).c_str(), endpoint_quota_name(serve).c_str());
}

}  // namespace

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
  check_image(s, say, sts_account);
  print_quota_hints(s);
  std::printf("%s\n", problems ? "some checks failed" : "all checks passed");
  return problems ? 1 : 0;
}

namespace {

// --data-distribution: false for replicated (FullyReplicated), true for sharded (ShardedByS3Key).
bool sharded_data(const Session& s) {
  const std::string v = s.args->get_or("--data-distribution", "replicated");
  if (v != "replicated" && v != "sharded") kiln::fail("--data-distribution", "replicated or sharded", "'" + v + "'");
  return v == "sharded";
}

// A ShardedByS3Key job needs at least one part (S3 object) per instance: a host with none would
// have no training records.
void check_part_count(int64_t parts, int64_t instances, const std::string& where) {
  if (parts < instances)
    kiln::fail("--data-distribution sharded: " + where,
               "at least " + std::to_string(instances) + " parts train-KKKKK-of-NNNNN.bin (one per instance)",
               std::to_string(parts), "kiln data shard --data DATA --parts N --out DIR (N >= --train-instance-count), "
                                      "then --data-dir DIR");
}

// --data-dir as `kiln data shard` writes it: training/ with at least one part per instance, test/.
void check_sharded_dir(const Session& s, int64_t instances) {
  const fs::path dir = s.data_dir;
  check_part_count(static_cast<int64_t>(kiln::data::find_train_parts(dir / "training").size()), instances,
                   (dir / "training").string());
  if (!fs::is_directory(dir / "test"))
    kiln::fail("--data-distribution sharded: " + (dir / "test").string(),
               "the test channel's folder (test.bin, fine_label_names.txt)", "no such folder",
               "kiln data shard writes DIR/training and DIR/test");
}

}  // namespace

std::string step_upload(Session& s) {
  if (s.data_s3.empty()) use_bucket(s);
  std::string dst = s.data_s3.empty() ? s.s3_base() + "/data/cifar100" : s.data_s3;
  if (!fs::is_directory(s.data_dir))
    throw kiln::Error("kiln sagemaker upload: " + s.data_dir + " is not a directory",
                      "pass --data-dir with the CIFAR-100 files (kiln download cifar100 --dir data)");
  if (sharded_data(s)) check_sharded_dir(s, s.args->get_int("--train-instance-count"));
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
  t.instance_count = a.get_int("--train-instance-count");
  if (t.instance_count < 1 || t.instance_count > 100)
    kiln::fail("--train-instance-count", "1 to 100 instances", a.get("--train-instance-count"));
  t.volume_size_gb = a.get_int("--volume-gb");
  t.input_s3_uri = data_s3;
  if (sharded_data(s)) {  // `kiln data shard`'s layout under the data URI
    t.input_s3_uri = data_s3 + "/training";
    t.input_sharded = true;
    t.test_s3_uri = data_s3 + "/test";
  }
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

// --pretrained imagenet: torchvision's weights file for the job's arch, taken from the torch hub
// cache (downloaded into it when missing); --pretrained FILE: that file (the job then starts from
// it: hyperparameter pretrained=/opt/ml/input/data/pretrained/NAME). Uploaded once to
// s3://BUCKET/PREFIX/pretrained/NAME and given to the job as its `pretrained` channel, so the
// container needs no internet access. Returns the channel's URI, "" for --pretrained none.
std::string pretrained_channel(Session& s, TrainingJobSpec& t) {
  const std::string mode = s.args->get("--pretrained");
  if (mode == "none") return "";
  auto arch_it = t.hyperparameters.find("arch");
  const std::string arch = arch_it == t.hyperparameters.end() ? "resnet34" : arch_it->second;
  fs::path local;
  std::string name;
  if (mode == "imagenet") {
    name = kiln::data::imagenet_weights(arch).file_name();
  } else {
    local = mode;
    if (!fs::is_regular_file(local))
      kiln::fail("--pretrained", "imagenet, none or a weights file (.pth or .safetensors)", "'" + mode + "' (no such file)");
    name = local.filename().string();
    t.hyperparameters["pretrained"] = "/opt/ml/input/data/pretrained/" + name;
  }
  const std::string key = (s.prefix.empty() ? "" : s.prefix + "/") + "pretrained/" + name;
  const std::string uri = "s3://" + s.bucket + "/" + key;
  if (s.dry_run) {
    std::printf("would upload %s to %s (the pretrained channel)\n", name.c_str(), uri.c_str());
    return uri;
  }
  if (local.empty()) local = kiln::data::fetch_pretrained(arch, {});
  S3Client s3(s.cfg);
  std::optional<HeadResult> there = s3.head_object(s.bucket, key);
  if (there && there->size == static_cast<int64_t>(fs::file_size(local))) {
    std::printf("pretrained: %s is in S3 already\n", uri.c_str());
  } else {
    s3.upload_file(local, s.bucket, key);
    std::printf("pretrained: uploaded %s to %s\n", local.string().c_str(), uri.c_str());
  }
  return uri;
}

// Returns the model artifact URI.
std::string step_train(Session& s, const std::string& data_s3_in) {
  need(s.role_arn, "--role-arn", "train");
  need(s.image, "--image", "train");
  use_bucket(s);
  std::string data_s3 = data_s3_in.empty() ? (s.data_s3.empty() ? s.s3_base() + "/data/cifar100" : s.data_s3) : data_s3_in;
  SageMakerClient sm(s.cfg);
  TrainingJobSpec spec = training_spec(s, data_s3);
  if (spec.input_sharded) check_sharded_dir(s, spec.instance_count);  // what upload sent (or will)
  spec.pretrained_s3_uri = pretrained_channel(s, spec);
  std::string arn;
  try {
    arn = sm.create_training_job(spec);
  } catch (const AwsError& e) {
    rethrow_create_failure(e, spec.instance_type, true, spec.spot, spec.role_arn);
  }
  std::printf("%s training job %s%s\n", s.dry_run ? "would create" : "created", s.job.c_str(), arn.empty() ? "" : (" (" + arn + ")").c_str());
  if (spec.instance_count > 1)
    std::printf("%lld x %s, data-parallel over Open MPI (the image must come from kiln image build --mpi)\n",
                static_cast<long long>(spec.instance_count), spec.instance_type.c_str());
  if (!s.wait) return s.model_data_default();
  return follow_job(s, sm, s.job, spec.instance_count, true);
}

}  // namespace kiln::cli::sagemaker
