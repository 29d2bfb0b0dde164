// CIFAR-100's binary format (data/dataset.h): 3074-byte records, label ranges checked.
#include <string>
#include <vector>

#include "kiln/data/dataset.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (int i = 0; i < 100; ++i) n.push_back("class" + std::to_string(i));
    return n;
  }();
  kiln::data::parse_cifar_binary(input, "fuzz.bin", names);
}
