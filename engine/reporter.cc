#include "engine/reporter.h"

#include <ostream>

#include "engine/syntax.h"

namespace labfleet {
namespace {
// Text for a terminal: node-supplied bytes (diffs, stderr, names) may hold escape sequences that retitle the
// window, clear the screen or rewrite what was printed. Every control character except \n and \t (layout)
// is written as an escape (ESC -> \x1b); JSON output is never touched (the JSON encoder escapes them itself).
std::string Safe(std::string_view text) { return EscapeControls(text, /*keep_layout=*/true); }

const char* Sgr(LineStyle s) {
  switch (s) {
    case LineStyle::Add: return "\x1b[32m";
    case LineStyle::Remove: return "\x1b[31m";
    case LineStyle::Modify: return "\x1b[33m";
    case LineStyle::Warn: return "\x1b[33m";
    case LineStyle::Fail: return "\x1b[1;31m";
    case LineStyle::Plain: break;
  }
  return "";
}

void Write(std::ostream& o, const std::string& safe, LineStyle style, bool color) {
  if (color && style != LineStyle::Plain)
    o << Sgr(style) << safe << "\x1b[0m\n";
  else
    o << safe << '\n';
}
}  // namespace

bool ColorWanted(ColorMode mode, bool is_terminal, const char* no_color, const char* term) {
  if (mode != ColorMode::Auto) return mode == ColorMode::Always;
  if (no_color && *no_color) return false;
  if (term && std::string_view(term) == "dumb") return false;
  return is_terminal;
}

void Reporter::line(std::string_view text, LineStyle style) {
  if (!json()) Write(out_, Safe(text), style, color_out_);
}
void Reporter::raw(std::string_view bytes) {
  if (!json()) out_ << bytes;
}
void Reporter::note(std::string_view text) {
  if (!json()) err_ << Safe(text) << '\n';
}
void Reporter::error(std::string_view text) {
  if (json())
    doc_["errors"].push_back(std::string(text));
  else
    Write(err_, "error: " + Safe(text), LineStyle::Fail, color_err_);
}

std::string FindingToText(const Finding& f) {
  return f.where.str() + ": " + (f.severity == Severity::Error ? "error" : "warning") + ": " + f.message + " [" +
         f.code + "]";
}

nlohmann::json FindingToJson(const Finding& f) {
  return {{"file", f.where.file},
          {"line", f.where.line},
          {"column", f.where.col},
          {"severity", f.severity == Severity::Error ? "error" : "warning"},
          {"code", f.code},
          {"message", f.message}};
}

void Reporter::findings(const Findings& fs) {
  if (json()) {
    auto& arr = doc_["findings"];
    if (arr.is_null()) arr = nlohmann::json::array();
    for (const auto& f : fs.items()) arr.push_back(FindingToJson(f));
  } else {
    for (const auto& f : fs.items())
      Write(err_, Safe(FindingToText(f)), f.severity == Severity::Error ? LineStyle::Fail : LineStyle::Warn, color_err_);
  }
}

void Reporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (json()) out_ << doc_.dump(2) << '\n';
}

}  // namespace labfleet
