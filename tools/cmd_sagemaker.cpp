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
#include <csignal>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/aws/iam.h"
#include "kiln/core/error.h"
#include "tools/args.h"
#include "tools/command.h"
#include "tools/sagemaker/common.h"

namespace {

using namespace kiln::aws;
using namespace kiln::cli::sagemaker;
using kiln::cli::Args;
using nlohmann::json;

// ---- commands

int with_session(const std::string& sub, const std::string& desc, const std::vector<std::string>& argv,
                 bool job_default, const std::function<int(Session&)>& fn) {
  Args a("kiln sagemaker " + sub, desc);
  declare_options(a);
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
