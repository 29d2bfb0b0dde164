// ~/.aws/credentials and ~/.aws/config (aws/credentials.h parse_ini), then the credentials
// document of the container / instance metadata endpoints (parse_credentials_json): the first
// byte picks which.
#include <string>

#include "kiln/aws/credentials.h"
#include "fuzz.h"

KILN_FUZZ(input) {
  if (input.empty()) return;
  std::string text(input.substr(1));
  if (input[0] & 1) {
    kiln::aws::parse_credentials_json(text, "container credentials");
  } else {
    kiln::aws::IniFile ini = kiln::aws::parse_ini(text);
    for (const auto& [section, keys] : ini) (void)keys.size();
  }
}
