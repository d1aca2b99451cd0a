// Mustache templates (the core of the public Mustache spec: interpolation, sections, inverted sections,
// comments, set-delimiter, partials; no lambdas), rendered against nlohmann::json data. Written for
// labfleet; passes the spec cases in shared/spec/mustache. Syntax and semantics: docs/templates.md.
//
// Semantics chosen where the spec leaves them to the implementation:
//   - falsey (section skipped, inverted section rendered): missing, null, false, [], "".
//     Everything else is truthy, including 0 and {}.
//   - interpolation: strings as-is; integers in decimal; floats in the shortest form that reads back
//     exactly, without a trailing ".0" (1.210 -> "1.21", 3.0 -> "3"); true/false; null -> "";
//     arrays and objects as compact JSON.
//   - {{x}} HTML-escapes & " < > (exactly those four, as the spec asks); {{{x}}} and {{& x}} insert the
//     value byte for byte. Values are never re-interpreted as template text.
//   - partials start with the default delimiters {{ }}; a partial that the callback does not know (or
//     any partial when there is no callback) renders as empty. Partials nest at most 100 deep.
//   - names are "." (the current item) or dot-separated keys without whitespace; anything else
//     ("a b", "a..b", ".a") is a MustacheError, as are unclosed tags and sections, stray or mismatched
//     closing tags, and bad set-delimiter tags.
#pragma once
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace labfleet {

// A malformed template. what() is the bare message; line and col (1-based, col counted in bytes) point
// at the opening delimiter of the offending tag, so callers can add the template's file and report
// "file:line:col: message". For an error inside a partial, the message names the partial and line/col
// are positions in the partial's own text.
struct MustacheError : std::runtime_error {
  int line;
  int col;
  MustacheError(const std::string& message, int line_, int col_)
      : std::runtime_error(message), line(line_), col(col_) {}
};

// Returns the text of a partial, or nullopt when there is no partial of that name.
using MustachePartials = std::function<std::optional<std::string>(const std::string& name)>;

// Renders `tmpl` with `data` per the Mustache spec: HTML-escaping for {{x}}, raw for {{{x}}} and {{& x}},
// dotted names, implicit iterator {{.}}, sections over lists/objects/truthy values, inverted sections,
// comments, set-delimiter, partials with standalone-line indentation, standalone-tag whitespace rules.
// A missing partial renders as empty. Throws MustacheError on a malformed template (or partial).
std::string RenderMustache(std::string_view tmpl, const nlohmann::json& data, const MustachePartials& partials = {});

// One name a template refers to, from a variable tag ({{x}}, {{{x}}}, {{& x}}) or the opening tag of a
// section or inverted section ({{#x}}, {{^x}}). `name` is as written, dots included ("user.name").
// line/col (1-based) are those of the tag's opening delimiter. in_section is true when the tag lies
// inside a (non-inverted) section, where the name may resolve against the section's item rather than
// the outermost context; inverted sections push no context, so they do not set it.
struct MustacheRef {
  std::string name;
  int line;
  int col;
  bool in_section;
  bool section = false;  // the opening tag of a section or inverted section: a missing name is valid there
};

// Every name the template refers to, in template order (duplicates included). Not reported: the
// implicit iterator ".", closing tags, comments, partial names, and anything inside partials (they are
// not expanded). Used by the validator to warn when a template uses a variable a node does not define.
// Throws MustacheError on a malformed template.
std::vector<MustacheRef> MustacheNames(std::string_view tmpl);

}  // namespace labfleet
