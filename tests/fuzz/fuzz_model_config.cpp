// A model directory's config.json (models/model_dir.h): every field's type and range.
#include <string>

#include "fuzz.h"
#include "kiln/models/model_dir.h"

KILN_FUZZ(input) { kiln::models::parse_model_config(std::string(input), "config.json"); }
