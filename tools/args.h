// A small declarative option parser shared by every subcommand, so they all read alike:
//   Args a("kiln train", "Train a ResNet on CIFAR-100.");
//   a.option("--epochs", "N", "number of epochs", "4");
//   a.flag("--no-augment", "turn augmentation off");
//   a.positional("SRC", "what to copy");       // optional; "SRC..." takes the rest
//   if (!a.parse(argv)) return 0;             // --help printed usage
//   int64_t epochs = a.get_int("--epochs");
// Unknown options, missing values and malformed numbers throw kiln::Error naming the option.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::cli {

class Args {
 public:
  Args(std::string usage_name, std::string description);

  // An option taking a value. An empty default means "not set" (has() is false).
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              const std::string& default_value = {});
  void flag(const std::string& name, const std::string& help);
  // Positional arguments in order; a name ending in "..." takes all remaining ones.
  void positional(const std::string& name, const std::string& help, bool required = true);

  // Returns false when --help was asked for (usage already printed to stdout).
  bool parse(const std::vector<std::string>& argv);

  bool has(const std::string& name) const;  // option given or defaulted, or flag set
  bool flag_set(const std::string& name) const { return has(name); }
  std::string get(const std::string& name) const;  // throws if unset
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  // Was it given on the command line (not only defaulted)?
  bool given(const std::string& name) const;
  // Set a value as if given on the command line (used to apply config files).
  void set(const std::string& name, const std::string& value);

  const std::vector<std::string>& positionals() const { return positional_values_; }
  std::string usage() const;

 private:
  struct Spec {
    std::string name, metavar, help, default_value;
    bool is_flag = false;
  };
  struct Pos {
    std::string name, help;
    bool required = true;
  };
  const Spec& spec(const std::string& name) const;

  std::string usage_name_, description_;
  std::vector<Spec> specs_;
  std::vector<Pos> pos_specs_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> given_;
  std::vector<std::string> positional_values_;
};

// Parses "12", "1e-3", ... strictly (the whole string must be a number); throws naming `what`.
int64_t parse_int(const std::string& text, const std::string& what);
double parse_double(const std::string& text, const std::string& what);

}  // namespace kiln::cli
