// SageMaker's hyperparameters.json (train/hyperparameters.h) against the training option table.
#include <string>
#include <vector>

#include "fuzz.h"
#include "kiln/train/hyperparameters.h"

KILN_FUZZ(input) {
  std::vector<std::string> notes;
  kiln::train::parse_hyperparameters(std::string(input), "hyperparameters.json", &notes);
}
