// CIFAR-100's python pickles (data/dataset.h): the first byte picks the meta file or a split.
#include <string>
#include <vector>

#include "kiln/data/dataset.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  if (input.empty()) return;
  std::string_view pickle = input.substr(1);
  if (input[0] & 1) {
    kiln::data::parse_cifar_python_meta(pickle, "fuzz meta");
  } else {
    static const std::vector<std::string> names(100, "c");
    kiln::data::parse_cifar_python_split(pickle, "fuzz train", names);
  }
}
