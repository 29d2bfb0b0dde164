// `kiln sagemaker deploy|predict|delete` and the cleanup that never leaves an endpoint silently
// (tools/sagemaker/common.h).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/data/dataset.h"
#include "kiln/io/npy.h"
#include "kiln/models/argmax.h"
#include "tools/sagemaker/common.h"

namespace kiln::cli::sagemaker {

using namespace kiln::aws;
using nlohmann::json;
namespace fs = std::filesystem;

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
  // `kiln data shard`'s output (--data-distribution sharded) keeps the test half in test/.
  const fs::path shard_test = fs::path(s.data_dir) / "test";
  const bool shards = kiln::data::find_cifar100(s.data_dir).empty() && fs::is_directory(shard_test);
  kiln::data::Cifar100 ds = kiln::data::load_cifar100(shards ? shard_test : fs::path(s.data_dir));
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
    const size_t best = static_cast<size_t>(kiln::models::argmax(row.data(), static_cast<int64_t>(row.size())));
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

}  // namespace kiln::cli::sagemaker
