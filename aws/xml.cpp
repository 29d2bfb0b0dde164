// Recursive-descent XML reader (see xml.h). Depth is bounded so hostile input cannot overflow
// the stack.
#include "kiln/aws/xml.h"

#include <cstdint>

#include "kiln/core/error.h"

namespace kiln::aws {

const XmlNode* XmlNode::child(std::string_view n) const {
  for (const auto& c : children)
    if (c.name == n) return &c;
  return nullptr;
}

std::vector<const XmlNode*> XmlNode::all(std::string_view n) const {
  std::vector<const XmlNode*> out;
  for (const auto& c : children)
    if (c.name == n) out.push_back(&c);
  return out;
}

std::string XmlNode::child_text(std::string_view n) const {
  const XmlNode* c = child(n);
  return c ? c->text : std::string();
}

const XmlNode* XmlNode::find(std::string_view n) const {
  if (name == n) return this;
  for (const auto& c : children)
    if (const XmlNode* f = c.find(n)) return f;
  return nullptr;
}

namespace {

struct Parser {
  std::string_view s;
  size_t i = 0;
  const std::string& what;

  [[noreturn]] void error(const std::string& expected) {
    fail(what + " (XML, offset " + std::to_string(i) + ")", expected,
         i < s.size() ? "'" + std::string(s.substr(i, 20)) + "'" : "end of input");
  }
  bool starts(std::string_view p) const { return s.substr(i, p.size()) == p; }
  void skip_past(std::string_view end) {
    size_t j = s.find(end, i);
    if (j == std::string_view::npos) error("'" + std::string(end) + "'");
    i = j + end.size();
  }
  void skip_ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  // Prolog, comments, processing instructions, doctype.
  void skip_misc() {
    for (;;) {
      skip_ws();
      if (starts("<?")) skip_past("?>");
      else if (starts("<!--")) skip_past("-->");
      else if (starts("<!DOCTYPE")) skip_past(">");
      else return;
    }
  }
  void decode_text(std::string_view t, std::string& out) {
    for (size_t k = 0; k < t.size(); ++k) {
      if (t[k] != '&') {
        out += t[k];
        continue;
      }
      size_t semi = t.find(';', k);
      if (semi == std::string_view::npos) error("an entity ending in ';'");
      std::string_view ent = t.substr(k + 1, semi - k - 1);
      if (ent == "lt") out += '<';
      else if (ent == "gt") out += '>';
      else if (ent == "amp") out += '&';
      else if (ent == "quot") out += '"';
      else if (ent == "apos") out += '\'';
      else if (!ent.empty() && ent[0] == '#') {
        uint32_t cp = 0;
        bool hex = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X');
        for (size_t d = hex ? 2 : 1; d < ent.size(); ++d) {
          char c = ent[d];
          int v = (c >= '0' && c <= '9') ? c - '0'
                  : hex && (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : hex && (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
          if (v < 0 || cp > 0x10FFFF) error("a numeric character reference");
          cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(v);
        }
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else { out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
      } else {
        error("a known entity");
      }
      k = semi;
    }
  }
  std::string read_name() {
    size_t b = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '>' && s[i] != '/' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') ++i;
    if (b == i) error("an element name");
    std::string_view n = s.substr(b, i - b);
    if (auto c = n.find(':'); c != std::string_view::npos) n = n.substr(c + 1);
    return std::string(n);
  }
  XmlNode element(int depth) {
    if (depth > 64) error("nesting at most 64 deep");
    if (!starts("<")) error("'<'");
    ++i;
    XmlNode node;
    node.name = read_name();
    // attributes: skipped, but quoted values may contain '>'
    for (;;) {
      if (i >= s.size()) error("'>'");
      char c = s[i];
      if (c == '"' || c == '\'') {
        size_t j = s.find(c, i + 1);
        if (j == std::string_view::npos) error("a closing quote");
        i = j + 1;
      } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '>') {
        i += 2;
        return node;
      } else if (c == '>') {
        ++i;
        break;
      } else {
        ++i;
      }
    }
    for (;;) {
      if (i >= s.size()) error("</" + node.name + ">");
      if (starts("</")) {
        i += 2;
        std::string n = read_name();
        if (n != node.name) error("</" + node.name + ">");
        skip_ws();
        if (i >= s.size() || s[i] != '>') error("'>'");
        ++i;
        return node;
      }
      if (starts("<!--")) { skip_past("-->"); continue; }
      if (starts("<![CDATA[")) {
        size_t b = i + 9;
        skip_past("]]>");
        node.text.append(s.substr(b, i - 3 - b));
        continue;
      }
      if (starts("<?")) { skip_past("?>"); continue; }
      if (s[i] == '<') {
        node.children.push_back(element(depth + 1));
        continue;
      }
      size_t j = s.find('<', i);
      if (j == std::string_view::npos) j = s.size();
      decode_text(s.substr(i, j - i), node.text);
      i = j;
    }
  }
};

}  // namespace

XmlNode parse_xml(std::string_view text, const std::string& what) {
  Parser p{text, 0, what};
  p.skip_misc();
  XmlNode root = p.element(0);
  return root;
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace kiln::aws
