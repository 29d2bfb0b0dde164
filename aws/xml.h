// A small XML reader for AWS responses (S3 and IAM's query API). Namespaces prefixes are
// dropped from names, attributes ignored, entities and CDATA decoded. Not a validating parser:
// it accepts what AWS sends and throws kiln::Error on anything it cannot read.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::aws {

struct XmlNode {
  std::string name;
  std::string text;  // concatenated character data directly inside this element
  std::vector<XmlNode> children;

  const XmlNode* child(std::string_view name) const;  // first child so named, or nullptr
  std::vector<const XmlNode*> all(std::string_view name) const;
  std::string child_text(std::string_view name) const;  // "" when absent
  // The first element named `name` anywhere below (depth-first), or nullptr.
  const XmlNode* find(std::string_view name) const;
};

XmlNode parse_xml(std::string_view text, const std::string& what);
std::string xml_escape(std::string_view s);

}  // namespace kiln::aws
