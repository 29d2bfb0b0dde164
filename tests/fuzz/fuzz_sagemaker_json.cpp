// SageMaker's JSON responses: the error-body reader (JSON branch) and DescribeTrainingJob's
// time bound (aws/sagemaker.h). JSON that does not parse is the caller's error, as in json_rpc.
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/aws/client.h"
#include "kiln/aws/sagemaker_json.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  kiln::aws::HttpResponse r;
  r.status = 400;
  r.body = std::string(input);
  kiln::aws::parse_error_body(r);
  nlohmann::json j = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return;
  kiln::aws::training_job_bound(j);
}
