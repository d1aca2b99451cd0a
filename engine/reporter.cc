#include "engine/reporter.h"

#include <ostream>

#include "engine/syntax.h"

namespace labfleet {
namespace {
// Text for a terminal: node-supplied bytes (diffs, stderr, names) may hold escape sequences that retitle the
// window, clear the screen or rewrite what was printed. Every control character except \n and \t (layout)
// is written as an escape (ESC -> \x1b); JSON output is never touched (the JSON encoder escapes them itself).
std::string Safe(std::string_view text) { return EscapeControls(text, /*keep_layout=*/true); }
}  // namespace

void Reporter::line(std::string_view text) {
  if (!json()) out_ << Safe(text) << '\n';
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
    err_ << "error: " << Safe(text) << '\n';
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
    for (const auto& f : fs.items()) err_ << Safe(FindingToText(f)) << '\n';
  }
}

void Reporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (json()) out_ << doc_.dump(2) << '\n';
}

}  // namespace labfleet
