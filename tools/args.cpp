#include "tools/args.h"

#include <cstdio>
#include <sstream>

#include "kiln/core/error.h"
#include "kiln/core/parse.h"

namespace kiln::cli {

Args::Args(std::string usage_name, std::string description)
    : usage_name_(std::move(usage_name)), description_(std::move(description)) {}

void Args::option(const std::string& name, const std::string& metavar, const std::string& help,
                  const std::string& default_value) {
  specs_.push_back({name, metavar, help, default_value, false});
  if (!default_value.empty()) values_[name] = default_value;
}

void Args::flag(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, "", true});
}

void Args::positional(const std::string& name, const std::string& help, bool required) {
  pos_specs_.push_back({name, help, required});
}

const Args::Spec& Args::spec(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return s;
  KILN_ASSERT(false, "option " + name + " was not declared");
  __builtin_unreachable();
}

bool Args::parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage().c_str(), stdout);
      return false;
    }
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      const Spec* s = nullptr;
      for (const auto& sp : specs_)
        if (sp.name == name) s = &sp;
      if (!s) {
        std::string known;
        for (const auto& sp : specs_) known += " " + sp.name;
        throw Error(usage_name_ + ": unknown option " + name,
                    "known options:" + known + " (see " + usage_name_ + " --help)");
      }
      if (s->is_flag) {
        if (inline_value) throw Error(usage_name_ + ": " + name + " takes no value");
        values_[name] = "1";
      } else {
        if (!inline_value) {
          if (i + 1 >= argv.size())
            throw Error(usage_name_ + ": " + name + " needs a value (" + s->metavar + ")");
          value = argv[++i];
        }
        values_[name] = value;
      }
      given_[name] = true;
      continue;
    }
    positional_values_.push_back(a);
  }
  size_t required = 0;
  bool rest = false;
  for (const auto& p : pos_specs_) {
    if (p.required) ++required;
    if (p.name.size() > 3 && p.name.substr(p.name.size() - 3) == "...") rest = true;
  }
  if (positional_values_.size() < required)
    throw Error(usage_name_ + ": missing argument " + pos_specs_[positional_values_.size()].name,
                "usage: " + usage_name_ + " --help");
  if (!rest && positional_values_.size() > pos_specs_.size())
    throw Error(usage_name_ + ": unexpected argument '" + positional_values_[pos_specs_.size()] + "'",
                "usage: " + usage_name_ + " --help");
  return true;
}

bool Args::has(const std::string& name) const {
  spec(name);
  return values_.count(name) != 0;
}

bool Args::given(const std::string& name) const {
  spec(name);
  return given_.count(name) != 0;
}

void Args::set(const std::string& name, const std::string& value) {
  spec(name);
  values_[name] = value;
  given_[name] = true;
}

std::string Args::get(const std::string& name) const {
  spec(name);
  auto it = values_.find(name);
  if (it == values_.end()) throw Error(usage_name_ + ": " + name + " is required");
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return has(name) ? get(name) : fallback;
}

int64_t Args::get_int(const std::string& name) const { return parse_int(get(name), name); }
double Args::get_double(const std::string& name) const { return parse_double(get(name), name); }

std::string Args::usage() const {
  std::ostringstream o;
  o << "usage: " << usage_name_ << (specs_.empty() ? "" : " [options]");
  for (const auto& p : pos_specs_) o << (p.required ? " " + p.name : " [" + p.name + "]");
  o << "\n\n" << description_ << "\n";
  if (!pos_specs_.empty()) {
    o << "\narguments:\n";
    for (const auto& p : pos_specs_) o << "  " << p.name << "\n      " << p.help << "\n";
  }
  if (!specs_.empty()) {
    o << "\noptions:\n";
    for (const auto& s : specs_) {
      o << "  " << s.name << (s.is_flag ? "" : " " + s.metavar) << "\n      " << s.help;
      if (!s.default_value.empty()) o << " (default: " << s.default_value << ")";
      o << "\n";
    }
  }
  return o.str();
}

int64_t parse_int(const std::string& text, const std::string& what) { return kiln::parse_int(text, what); }
double parse_double(const std::string& text, const std::string& what) { return kiln::parse_double(text, what); }

}  // namespace kiln::cli
