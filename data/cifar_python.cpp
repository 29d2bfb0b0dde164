// CIFAR-100's python version (pickled dicts, optionally inside cifar-100-python.tar.gz).
// Placeholder until io/pickle.h, io/gzip.h and io/tar.h land.
#include "core/error.h"
#include "data/dataset.h"

namespace kiln::data {

std::vector<std::string> parse_cifar_python_meta(std::string_view, const std::string& what) {
  throw Error(what + ": the python version of CIFAR-100 is not readable yet",
              "use the binary version (cifar-100-binary/)");
}
Dataset parse_cifar_python_split(std::string_view, const std::string& what,
                                 const std::vector<std::string>&) {
  throw Error(what + ": the python version of CIFAR-100 is not readable yet",
              "use the binary version (cifar-100-binary/)");
}
Cifar100 parse_cifar_python_targz(std::string_view, const std::string& what) {
  throw Error(what + ": the python version of CIFAR-100 is not readable yet",
              "use the binary version (cifar-100-binary/)");
}

}  // namespace kiln::data
