// The YAML writer of `labfleet init`: a tiny tree (maps keep insertion order, comments above keys) and an
// emitter that writes every string either as a plain scalar that cannot mean anything else, or as a YAML
// double-quoted scalar with every special character escaped. No text from a node is ever concatenated into
// YAML raw: a value like "a: b", "- x", "#", "{", a newline or a YAML 1.1 boolean comes back as the same string.
// Non-UTF-8 text is refused (YamlTextProblem) before it reaches the tree; the emitter escapes it anyway.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace labfleet {

class YNode {
 public:
  enum class Kind { Str, Int, Bool, Seq, Map };
  static YNode Str(std::string s) { return YNode(Kind::Str, std::move(s)); }
  static YNode Int(long long n) { return YNode(Kind::Int, std::to_string(n)); }
  static YNode Bool(bool b) { return YNode(Kind::Bool, b ? "true" : "false"); }
  static YNode Seq(bool flow = false) { YNode n(Kind::Seq, ""); n.flow_ = flow; return n; }
  static YNode Map(bool flow = false) { YNode n(Kind::Map, ""); n.flow_ = flow; return n; }

  // Map: appends key (keys are written in the order set); `comment` lines go above the key.
  YNode& set(std::string key, YNode v, std::string comment = "");
  YNode& push(YNode v) { items_.push_back(std::move(v)); return items_.back(); }
  const YNode* find(std::string_view key) const;

  Kind kind() const { return kind_; }
  const std::string& text() const { return text_; }
  bool flow() const { return flow_; }
  bool empty() const { return items_.empty() && entries_.empty(); }
  const std::vector<YNode>& items() const { return items_; }
  struct Entry;
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  YNode(Kind k, std::string t) : kind_(k), text_(std::move(t)) {}
  Kind kind_;
  std::string text_;
  bool flow_ = false;
  std::vector<YNode> items_;
  std::vector<Entry> entries_;
};

struct YNode::Entry {
  std::string key;
  YNode value;
  std::string comment;  // may hold several lines
};

// A map of one key: the usual root of a file (`lab: ...`, `users: ...`).
inline YNode OneKey(std::string key, YNode v) {
  YNode m = YNode::Map();
  m.set(std::move(key), std::move(v));
  return m;
}

// The scalar as YAML text: plain when it is made only of [A-Za-z0-9_./@+~()-] and single inner spaces, starts
// with a letter, '/' or '_', and is not a word YAML 1.1 reads as a boolean or null, or when it is a dotted IPv4
// address (optionally /prefix); otherwise double-quoted with \" \\ \n \t \xNN
// \uNNNN escapes (invalid UTF-8 bytes as \xNN too, so the output is always valid UTF-8 and one line).
std::string YamlScalar(std::string_view s);
// A whole document: `header` comment lines ("# ..." added), then `root` (a map) in block style; flow() maps and
// sequences whose children are scalars or flow() themselves on one line. Deterministic: the same tree gives the same bytes.
std::string EmitYaml(const YNode& root, const std::string& header = "");

// Why `s` must not be written as an inventory value, "" when it may: not valid UTF-8, or holds a control
// character (C0, DEL, C1) or NUL. For values from the nodes, checked before anything is put in the tree.
std::string YamlTextProblem(std::string_view s);

}  // namespace labfleet
