// The only file that includes yaml-cpp. Uses the event API (YAML::Parser + EventHandler) rather than
// YAML::Node, because the Node API silently accepts duplicate keys and loses key positions.
#include "engine/yaml_load.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace labfleet {
namespace {

struct LimitExceeded {};  // thrown by the builder past a bound (already reported)

class Builder : public YAML::EventHandler {
 public:
  Builder(const std::string& text, const std::string& file, Findings& findings)
      : text_(text), file_(file), findings_(findings) {}

  Value take() { return std::move(root_); }
  int documents() const { return documents_; }
  // yaml-cpp ends a quoted scalar that is never closed at the end of the text without an error; true when a
  // scalar did so (already reported as "yaml-syntax").
  bool unclosed() const { return unclosed_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    ++documents_;
    if (documents_ == 2)
      findings_.error(Loc(mark), "yaml-multiple-documents",
                      "a second YAML document ('---') is not supported; put everything in one document or split it "
                      "into another file");
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Count(mark, 1, 1, nullptr);
    Value v;
    v.set_loc(Loc(mark));
    Deliver(std::move(v), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      // yaml-cpp rejects undefined anchors itself; what reaches here is an alias inside its own anchor.
      findings_.error(Loc(mark), "yaml-alias",
                      "an alias may not refer to the node that contains it (recursive YAML is not supported)");
      Value v;
      v.set_loc(Loc(mark));
      Deliver(std::move(v), 0);
      return;
    }
    // The alias stands for a copy of the whole anchored value: count what it expands to before copying.
    Count(mark, it->second.nodes, it->second.depth, &mark);
    Deliver(it->second.v, 0, it->second.nodes, it->second.depth);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Count(mark, 1, 1, nullptr);
    bool plain = tag == "?";
    if (char q = plain || unclosed_ ? 0 : UnclosedQuote(mark)) {
      unclosed_ = true;
      findings_.error(Loc(mark), "yaml-syntax",
                      std::string("YAML syntax error: this quoted string is never closed; add the closing ") + q +
                          " before the end of the file");
    }
    if (plain && !AtKey() && (value == "~" || value == "null" || value == "Null" || value == "NULL")) {
      Value v;
      v.set_loc(Loc(mark));
      Deliver(std::move(v), anchor);
      return;
    }
    Deliver(Value::Scalar(value, Loc(mark), !plain), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Count(mark, 1, 1, nullptr);
    Push(Value::Seq(Loc(mark)), anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Count(mark, 1, 1, nullptr);
    Push(Value::Map(Loc(mark)), anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    Value v;
    YAML::anchor_t anchor = 0;
    bool have_key = false;
    bool key_ok = true;  // false for a non-scalar key: its value is dropped
    std::string key;
    Location key_loc;
    std::unordered_map<std::string, Location> seen;  // key -> where it was first written
    std::vector<Value> merges;                       // values of `<<` keys, in order
    size_t nodes_before = 0;                         // nodes_ when the collection started (itself included)
    int depth = 1;                                   // nesting depth of the value so far (1 = no children)
  };
  struct Anchored {
    Value v;
    size_t nodes = 1;  // nodes the value expands to
    int depth = 1;
  };

  // Accounts for `nodes` more nodes (an alias: the size of what it expands to) of nesting depth `depth` at
  // the current place; past kMaxYamlNodes or kMaxYamlDepth reports the bound (naming the alias when `alias`)
  // and stops the parse by throwing LimitExceeded.
  void Count(const YAML::Mark& mark, size_t nodes, int depth, const YAML::Mark* alias) {
    nodes_ += nodes;
    const size_t total_depth = stack_.size() + size_t(depth);
    if (nodes_ <= kMaxYamlNodes && total_depth <= kMaxYamlDepth) return;
    std::string what = alias ? "the alias " + AliasName(*alias) + " expands" : std::string("the file expands");
    if (nodes_ > kMaxYamlNodes)
      findings_.error(Loc(mark), "yaml-too-large",
                      what + " to more than " + std::to_string(kMaxYamlNodes) +
                          " YAML nodes (aliases count as often as they are used); nested aliases multiply — write "
                          "the values out or use fewer levels");
    else
      findings_.error(Loc(mark), "yaml-too-deep",
                      what + " to more than " + std::to_string(kMaxYamlDepth) + " nested levels");
    throw LimitExceeded{};
  }

  // "*name" as written at the alias's mark (yaml-cpp hands the handler only a number).
  std::string AliasName(const YAML::Mark& m) {
    LineStarts();
    if (m.line < 0 || m.column < 0 || static_cast<size_t>(m.line) >= line_starts_.size()) return "(alias)";
    size_t i = line_starts_[static_cast<size_t>(m.line)] + static_cast<size_t>(m.column);
    size_t e = i;
    while (e < text_.size() && e - i < 64 && std::string_view(" \t\r\n,[]{}").find(text_[e]) == std::string_view::npos) ++e;
    std::string name = text_.substr(i, e - i);
    if (name.empty() || name[0] != '*') return "(alias)";
    return "'" + name + "'";
  }

  void LineStarts() {
    if (!line_starts_.empty()) return;
    line_starts_.push_back(0);
    for (size_t i = 0; i < text_.size(); ++i)
      if (text_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Location Loc(const YAML::Mark& m) const { return Location{file_, m.line + 1, m.column + 1}; }

  // The quote character when the quoted scalar that starts at `m` runs to the end of the text without its
  // closing quote, else 0. The start is found from the mark's line and column (its `pos` does not count
  // bytes); when the character there is not a quote (a block scalar, a tagged scalar) nothing is checked.
  char UnclosedQuote(const YAML::Mark& m) {
    LineStarts();
    if (m.line < 0 || m.column < 0 || static_cast<size_t>(m.line) >= line_starts_.size()) return 0;
    size_t i = line_starts_[static_cast<size_t>(m.line)] + static_cast<size_t>(m.column);
    if (i >= text_.size()) return 0;
    const char q = text_[i];
    if (q != '"' && q != '\'') return 0;
    for (++i; i < text_.size(); ++i) {
      if (q == '"' && text_[i] == '\\') {
        ++i;  // an escaped character inside double quotes
      } else if (text_[i] == q) {
        if (q == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
          ++i;  // '' inside single quotes
        } else {
          return 0;
        }
      }
    }
    return q;
  }

  void Push(Value v, YAML::anchor_t anchor) {
    stack_.emplace_back();
    stack_.back().v = std::move(v);
    stack_.back().anchor = anchor;
    stack_.back().nodes_before = nodes_ - 1;
  }

  bool AtKey() const { return !stack_.empty() && stack_.back().v.is_map() && !stack_.back().have_key; }

  void Close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.v.is_map() && !f.merges.empty()) ApplyMerges(f);
    Deliver(std::move(f.v), f.anchor, nodes_ - f.nodes_before, f.depth);
  }

  // YAML merge keys: entries of the merged maps are added where the map does not define the key itself;
  // among merged maps the first one wins.
  void ApplyMerges(Frame& f) {
    auto add_from = [&](const Value& m, const Location& where) {
      if (!m.is_map()) {
        findings_.error(where, "yaml-merge", "the merge key '<<' needs a map or a list of maps, got " +
                                                 std::string(m.is_seq() ? "a list" : "a scalar"));
        return;
      }
      for (const auto& e : m.entries()) {
        if (f.seen.count(e.key)) continue;
        f.seen.emplace(e.key, e.key_loc);
        f.v.entries().push_back(e);
      }
    };
    for (const auto& m : f.merges) {
      if (m.is_seq()) {
        for (const auto& item : m.items()) add_from(item, item.loc());
      } else {
        add_from(m, m.loc());
      }
    }
  }

  // `nodes` and `depth`: what `v` expands to (1 and 1 for a scalar or null).
  void Deliver(Value v, YAML::anchor_t anchor, size_t nodes = 1, int depth = 1) {
    if (anchor) anchors_[anchor] = Anchored{v, nodes, depth};
    if (stack_.empty()) {
      if (documents_ <= 1) root_ = std::move(v);
      return;
    }
    Frame& top = stack_.back();
    top.depth = std::max(top.depth, depth + 1);
    if (top.v.is_seq()) {
      top.v.push(std::move(v));
      return;
    }
    if (!top.have_key) {
      top.have_key = true;
      top.key_loc = v.loc();
      if (v.is_scalar()) {
        top.key = v.str();
        top.key_ok = true;
        // The merge key is only a merge key when written plain.
        if (top.key == "<<" && !v.quoted()) top.key = std::string("\0<<", 3);
      } else if (v.is_null()) {
        top.key.clear();
        top.key_ok = true;
      } else {
        findings_.error(v.loc(), "yaml-complex-key", "a map key must be a plain string, not a " +
                                                         std::string(v.is_map() ? "map" : "list"));
        top.key_ok = false;
      }
      return;
    }
    top.have_key = false;
    if (!top.key_ok) return;
    if (top.key == std::string_view("\0<<", 3)) {
      top.merges.push_back(std::move(v));
      return;
    }
    auto [it, inserted] = top.seen.emplace(top.key, top.key_loc);
    if (!inserted) {
      findings_.error(top.key_loc, "duplicate-key",
                      "duplicate key '" + top.key + "', first written at " + it->second.str() +
                          "; remove one of them (YAML would silently keep only one)");
      return;
    }
    top.v.entries().push_back(Value::Entry{std::move(top.key), std::move(top.key_loc), std::move(v)});
  }

  const std::string& text_;
  const std::string& file_;
  Findings& findings_;
  Value root_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  size_t nodes_ = 0;  // nodes built so far, every alias counted as what it expands to
  std::vector<size_t> line_starts_;  // byte offset of each line, built at the first quoted scalar
  int documents_ = 0;
  bool unclosed_ = false;
};

}  // namespace

Value ParseYaml(const std::string& text, const std::string& file, Findings& findings) {
  if (text.size() > kMaxYamlBytes) {
    findings.error(Location{file}, "yaml-too-large",
                   "the file has " + std::to_string(text.size()) + " bytes, more than the " +
                       std::to_string(kMaxYamlBytes) + " an inventory file may have; split it");
    return Value();
  }
  std::istringstream in(text);
  Builder builder(text, file, findings);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const LimitExceeded&) {
    return Value();
  } catch (const YAML::Exception& e) {
    Location where{file, e.mark.is_null() ? 0 : e.mark.line + 1, e.mark.is_null() ? 0 : e.mark.column + 1};
    findings.error(where, "yaml-syntax", "YAML syntax error: " + e.msg);
    return Value();
  }
  if (builder.unclosed()) return Value();
  return builder.take();
}

}  // namespace labfleet
