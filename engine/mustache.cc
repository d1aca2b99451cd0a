#include "engine/mustache.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

namespace labfleet {

namespace {

constexpr int kMaxSectionDepth = 1000;  // nesting of sections in one template (keeps rendering off the stack limit)
constexpr int kMaxPartialDepth = 100;   // nesting of partials while rendering (stops runaway recursion)

struct Node {
  enum class Kind { Text, Var, Section, Inverted, Partial };
  Kind kind = Kind::Text;
  std::string text;    // Text: the literal text; Var/Section/Inverted/Partial: the name
  bool escape = true;  // Var: HTML-escape the value
  std::string indent;  // Partial: indentation of a standalone partial tag
  int line = 0, col = 0;
  std::vector<Node> children;  // Section/Inverted
};
using Nodes = std::vector<Node>;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < t_.size(); ++i)
      if (t_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Nodes Parse() {
    struct Frame {
      Node node;  // the open section (unused for the root frame)
      Nodes children;
    };
    std::vector<Frame> stack(1);
    std::string open = "{{", close = "}}";
    size_t pos = 0;
    auto add_text = [&](size_t from, size_t to) {
      if (to <= from) return;
      Nodes& into = stack.back().children;
      if (!into.empty() && into.back().kind == Node::Kind::Text)
        into.back().text.append(t_.substr(from, to - from));
      else
        into.push_back(Node{Node::Kind::Text, std::string(t_.substr(from, to - from)), true, {}, 0, 0, {}});
    };

    while (pos < t_.size()) {
      size_t start = t_.find(open, pos);
      if (start == std::string_view::npos) {
        add_text(pos, t_.size());
        break;
      }
      size_t p = start + open.size();
      char sigil = p < t_.size() ? t_[p] : '\0';
      std::string_view body;  // tag content between sigil and closing delimiter
      size_t end;             // one past the closing delimiter
      if (sigil == '{') {
        size_t c = t_.find("}" + close, p + 1);
        if (c == std::string_view::npos) Fail("unclosed tag: no '}" + close + "' after '" + open + "{'", start);
        body = t_.substr(p + 1, c - p - 1);
        end = c + 1 + close.size();
      } else if (sigil == '=') {
        size_t c = t_.find("=" + close, p + 1);
        if (c == std::string_view::npos) Fail("unclosed set-delimiter tag: no '=" + close + "'", start);
        body = t_.substr(p + 1, c - p - 1);
        end = c + 1 + close.size();
      } else {
        size_t c = t_.find(close, p);
        if (c == std::string_view::npos) Fail("unclosed tag: no '" + close + "' after '" + open + "'", start);
        bool has_sigil = sigil == '&' || sigil == '#' || sigil == '^' || sigil == '/' || sigil == '!' || sigil == '>';
        body = t_.substr(has_sigil ? p + 1 : p, c - (has_sigil ? p + 1 : p));
        if (!has_sigil) sigil = '\0';
        end = c + close.size();
      }

      // Standalone: the tag is alone on its line apart from spaces and tabs. Then the indentation and
      // the line end go (a standalone partial keeps its indentation to indent the partial's lines).
      bool may_stand_alone = sigil == '#' || sigil == '^' || sigil == '/' || sigil == '!' || sigil == '>' || sigil == '=';
      size_t text_end = start, next = end;
      std::string indent;
      if (may_stand_alone) {
        size_t j = start;
        while (j > pos && IsBlank(t_[j - 1])) --j;
        bool left = j == 0 || t_[j - 1] == '\n';
        size_t k = end;
        while (k < t_.size() && IsBlank(t_[k])) ++k;
        size_t after = std::string_view::npos;
        if (k == t_.size())
          after = k;
        else if (t_[k] == '\n')
          after = k + 1;
        else if (t_.compare(k, 2, "\r\n") == 0)
          after = k + 2;
        if (left && after != std::string_view::npos) {
          text_end = j;
          next = after;
          indent = std::string(t_.substr(j, start - j));
        }
      }
      add_text(pos, text_end);
      pos = next;

      auto [line, col] = Where(start);
      switch (sigil) {
        case '!':
          break;
        case '=': {
          std::string_view d = Trim(body);
          size_t sp = 0;
          while (sp < d.size() && !IsSpace(d[sp])) ++sp;
          std::string_view o = d.substr(0, sp), c = Trim(d.substr(sp));
          bool ok = !o.empty() && !c.empty() && o.find('=') == std::string_view::npos &&
                    c.find('=') == std::string_view::npos &&
                    std::none_of(c.begin(), c.end(), IsSpace);
          if (!ok)
            Fail("bad set-delimiter tag: expected two delimiters without '=' or whitespace, as in {{=<% %>=}}", start);
          open = std::string(o);
          close = std::string(c);
          break;
        }
        case '#':
        case '^': {
          if (stack.size() > kMaxSectionDepth) Fail("sections nested too deeply", start);
          Frame f;
          f.node.kind = sigil == '#' ? Node::Kind::Section : Node::Kind::Inverted;
          f.node.text = Name(body, start, false);
          f.node.line = line;
          f.node.col = col;
          stack.push_back(std::move(f));
          break;
        }
        case '/': {
          std::string name = Name(body, start, false);
          if (stack.size() == 1) Fail("closing tag '" + name + "' without an open section", start);
          if (name != stack.back().node.text)
            Fail("closing tag '" + name + "' does not match open section '" + stack.back().node.text + "' (line " +
                     std::to_string(stack.back().node.line) + ")",
                 start);
          Frame f = std::move(stack.back());
          stack.pop_back();
          f.node.children = std::move(f.children);
          stack.back().children.push_back(std::move(f.node));
          break;
        }
        case '>': {
          Node n{Node::Kind::Partial, Name(body, start, true), true, std::move(indent), line, col, {}};
          stack.back().children.push_back(std::move(n));
          break;
        }
        default: {  // '\0', '&', '{'
          Node n{Node::Kind::Var, Name(body, start, false), sigil == '\0', {}, line, col, {}};
          stack.back().children.push_back(std::move(n));
          break;
        }
      }
    }
    if (stack.size() > 1) {
      const Node& open_section = stack.back().node;
      throw MustacheError("unclosed section '" + open_section.text + "'", open_section.line, open_section.col);
    }
    return std::move(stack.back().children);
  }

  std::pair<int, int> Where(size_t pos) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    size_t line = static_cast<size_t>(it - line_starts_.begin());  // >= 1: line_starts_[0] == 0
    return {static_cast<int>(line), static_cast<int>(pos - line_starts_[line - 1]) + 1};
  }

 private:
  [[noreturn]] void Fail(const std::string& message, size_t pos) const {
    auto [line, col] = Where(pos);
    throw MustacheError(message, line, col);
  }

  // A tag's name, trimmed and checked. Partial names may be any text without whitespace.
  std::string Name(std::string_view body, size_t start, bool partial) const {
    std::string_view n = Trim(body);
    if (n.empty()) Fail(partial ? "empty partial name" : "empty tag name", start);
    if (std::any_of(n.begin(), n.end(), IsSpace))
      Fail("invalid name '" + std::string(n) + "': names contain no whitespace", start);
    if (!partial && n != ".") {
      bool bad_dots = n.front() == '.' || n.back() == '.' || n.find("..") != std::string_view::npos;
      if (bad_dots) Fail("invalid name '" + std::string(n) + "': use '.' or keys separated by single dots", start);
    }
    return std::string(n);
  }

  std::string_view t_;
  std::vector<size_t> line_starts_;
};

Nodes ParseTemplate(std::string_view tmpl) { return Parser(tmpl).Parse(); }

void AppendEscaped(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
}

std::string ToText(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::string:
      return v.get<std::string>();
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return "";
    case nlohmann::json::value_t::number_float: {
      std::string s = v.dump();  // shortest text that reads back to the same double
      if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
      return s;
    }
    default:  // integers, booleans, arrays, objects
      return v.dump();
  }
}

bool Falsey(const nlohmann::json* v) {
  return v == nullptr || v->is_null() || (v->is_boolean() && !v->get<bool>()) || (v->is_array() && v->empty()) ||
         (v->is_string() && v->get_ref<const std::string&>().empty());
}

// Inserts `indent` at the start of every line of `s` (not after a final newline).
std::string IndentLines(std::string_view s, const std::string& indent) {
  if (indent.empty() || s.empty()) return std::string(s);
  std::string r = indent;
  for (size_t i = 0; i < s.size(); ++i) {
    r += s[i];
    if (s[i] == '\n' && i + 1 < s.size()) r += indent;
  }
  return r;
}

class Renderer {
 public:
  Renderer(const nlohmann::json& data, const MustachePartials& partials) : partials_(partials) {
    stack_.push_back(&data);
  }

  void Render(const Nodes& nodes, std::string& out) {
    for (const Node& n : nodes) {
      switch (n.kind) {
        case Node::Kind::Text:
          out += n.text;
          break;
        case Node::Kind::Var: {
          const nlohmann::json* v = Lookup(n.text);
          if (!v) break;
          if (n.escape)
            AppendEscaped(out, ToText(*v));
          else
            out += ToText(*v);
          break;
        }
        case Node::Kind::Section: {
          const nlohmann::json* v = Lookup(n.text);
          if (Falsey(v)) break;
          if (v->is_array()) {
            for (const auto& item : *v) {
              stack_.push_back(&item);
              Render(n.children, out);
              stack_.pop_back();
            }
          } else {
            stack_.push_back(v);
            Render(n.children, out);
            stack_.pop_back();
          }
          break;
        }
        case Node::Kind::Inverted:
          if (Falsey(Lookup(n.text))) Render(n.children, out);
          break;
        case Node::Kind::Partial: {
          const Nodes* p = Partial(n);
          if (!p) break;
          if (depth_ >= kMaxPartialDepth)
            throw MustacheError("partials nested more than " + std::to_string(kMaxPartialDepth) +
                                    " deep (recursive partial '" + n.text + "'?)",
                                n.line, n.col);
          ++depth_;
          Render(*p, out);
          --depth_;
          break;
        }
      }
    }
  }

 private:
  // Resolves a name against the context stack: "." is the top; otherwise the first key is looked up from
  // the innermost context outwards, and the remaining keys only inside what it found.
  const nlohmann::json* Lookup(const std::string& name) const {
    if (name == ".") return stack_.back();
    size_t dot = name.find('.');
    std::string first = name.substr(0, dot);
    const nlohmann::json* v = nullptr;
    for (auto it = stack_.rbegin(); it != stack_.rend() && !v; ++it) {
      if (!(*it)->is_object()) continue;
      auto f = (*it)->find(first);
      if (f != (*it)->end()) v = &*f;
    }
    while (v && dot != std::string::npos) {
      size_t from = dot + 1;
      dot = name.find('.', from);
      std::string key = name.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
      if (!v->is_object()) return nullptr;
      auto f = v->find(key);
      v = f == v->end() ? nullptr : &*f;
    }
    return v;
  }

  const Nodes* Partial(const Node& n) {
    std::string key = n.text + '\0' + n.indent;
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second.get();
    std::optional<std::string> text;
    if (partials_) text = partials_(n.text);
    std::shared_ptr<const Nodes> parsed;
    if (text) {
      try {
        parsed = std::make_shared<const Nodes>(ParseTemplate(IndentLines(*text, n.indent)));
      } catch (const MustacheError& e) {
        // Positions in the partial's own text: undo the indentation added in front of every line.
        int col = e.col > static_cast<int>(n.indent.size()) ? e.col - static_cast<int>(n.indent.size()) : e.col;
        throw MustacheError("in partial '" + n.text + "': " + e.what(), e.line, col);
      }
    }
    cache_.emplace(std::move(key), parsed);
    return parsed.get();
  }

  const MustachePartials& partials_;
  std::vector<const nlohmann::json*> stack_;
  std::map<std::string, std::shared_ptr<const Nodes>> cache_;  // partial name + indentation -> parsed
  int depth_ = 0;
};

void CollectNames(const Nodes& nodes, bool in_section, std::vector<MustacheRef>& out) {
  for (const Node& n : nodes) {
    switch (n.kind) {
      case Node::Kind::Var:
        if (n.text != ".") out.push_back({n.text, n.line, n.col, in_section, false});
        break;
      case Node::Kind::Section:
        if (n.text != ".") out.push_back({n.text, n.line, n.col, in_section, true});
        CollectNames(n.children, true, out);
        break;
      case Node::Kind::Inverted:
        if (n.text != ".") out.push_back({n.text, n.line, n.col, in_section, true});
        CollectNames(n.children, in_section, out);
        break;
      case Node::Kind::Text:
      case Node::Kind::Partial:
        break;
    }
  }
}

}  // namespace

std::string RenderMustache(std::string_view tmpl, const nlohmann::json& data, const MustachePartials& partials) {
  Nodes nodes = ParseTemplate(tmpl);
  std::string out;
  Renderer(data, partials).Render(nodes, out);
  return out;
}

std::vector<MustacheRef> MustacheNames(std::string_view tmpl) {
  std::vector<MustacheRef> out;
  CollectNames(ParseTemplate(tmpl), false, out);
  return out;
}

}  // namespace labfleet
