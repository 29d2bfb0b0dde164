// Shared by the `kiln sagemaker` subcommands (tools/cmd_sagemaker.cpp): the options and the
// session they make, Ctrl-C handling, and the steps of the notebook, one file per part:
//   session.cpp   options (command line > KILN_SAGEMAKER_* > --config file > defaults), the
//                 session, the default bucket, signals, messages
//   job.cpp       check, upload, train, following a training job and its logs
//   endpoint.cpp  deploy, predict, delete (with the cleanup that never leaves an endpoint silently)
#pragma once

#include <atomic>
#include <chrono>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "kiln/aws/client.h"
#include "kiln/aws/sagemaker_json.h"
#include "tools/args.h"

namespace kiln::cli::sagemaker {

// ---- Ctrl-C: the first SIGINT/SIGTERM asks the current step to stop (so `run` can clean up),
// the second one kills the process as usual (on_sigint). While cleaning up, a signal stops only
// the cleanup's waiting (on_cleanup_signal); what is left is then reported.
extern std::atomic<bool> g_interrupted;
extern std::atomic<bool> g_abort_cleanup;
extern "C" void on_sigint(int);
extern "C" void on_cleanup_signal(int);
void check_interrupted();  // throws kiln::Error("interrupted") after a signal

// What a deploy created, or may have created (each flag is set before its request is sent).
struct Deployed {
  std::string model, config, endpoint;
  bool model_made = false, config_made = false, endpoint_made = false;
  bool any() const { return model_made || config_made || endpoint_made; }
};

struct Session {
  aws::ClientConfig cfg;
  std::string role_arn, bucket, prefix, image, job, endpoint, data_dir, data_s3;
  bool dry_run = false, wait = true;
  aws::PollPolicy poll;
  std::chrono::seconds cleanup_timeout{1800};
  Deployed dep;
  const Args* args = nullptr;

  std::string s3_base() const { return "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix); }
  std::string output_s3() const { return s3_base() + "/output"; }
  std::string model_data_default() const { return output_s3() + "/" + job + "/output/model.tar.gz"; }
};

// ---- session.cpp
void declare_options(Args& a);
Session make_session(Args& a);  // applies env / --config defaults, validates
std::string timestamp_name();   // kiln-YYYYMMDD-HHMMSS (UTC)
std::string env_name(const std::string& option);  // "role-arn" -> KILN_SAGEMAKER_ROLE_ARN
bool parse_bool(const std::string& v, const std::string& what);
void need(const std::string& value, const char* option, const char* what);
void print_event(const std::string& e);  // stdout, flushed
void warn_line(const std::string& w);    // stderr, after flushing stdout
// --bucket as given, else the SDK's default bucket sagemaker-REGION-ACCOUNT (account from the
// role ARN, else STS GetCallerIdentity), created when missing as Session.default_bucket() does.
void use_bucket(Session& s);
// A failed Create* call, rethrown with the quota / iam:PassRole hint when one applies.
[[noreturn]] void rethrow_create_failure(const aws::AwsError& e, const std::string& instance_type, bool training,
                                         bool spot, const std::string& role_arn);
std::string artifact_of(const nlohmann::json& describe_training_job);

// ---- job.cpp
int step_check(Session& s);
std::string step_upload(Session& s);  // returns the data's S3 URI
// Follows job `job` to its end: status changes, its CloudWatch log (every host), then the
// training/billable seconds, final metrics and the model artifact (returned). On Ctrl-C the job
// is stopped when stop_on_interrupt (train, run), else left running (attach).
std::string follow_job(Session& s, aws::SageMakerClient& sm, const std::string& job, int64_t instance_count,
                       bool stop_on_interrupt);
std::string step_train(Session& s, const std::string& data_s3);  // returns the model artifact URI

// ---- endpoint.cpp
std::string delete_command(const Session& s, const Deployed& d);
void step_deploy(Session& s, std::string model_data);
int step_predict(Session& s);
int delete_resources(Session& s, const Deployed& d);  // returns the number of resources left
int step_delete(Session& s);

}  // namespace kiln::cli::sagemaker
