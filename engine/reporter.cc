#include "engine/reporter.h"

#include <ostream>

namespace labfleet {

void Reporter::line(std::string_view text) {
  if (!json()) out_ << text << '\n';
}
void Reporter::raw(std::string_view bytes) {
  if (!json()) out_ << bytes;
}
void Reporter::note(std::string_view text) {
  if (!json()) err_ << text << '\n';
}
void Reporter::error(std::string_view text) {
  if (json())
    doc_["errors"].push_back(std::string(text));
  else
    err_ << "error: " << text << '\n';
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
    for (const auto& f : fs.items()) err_ << FindingToText(f) << '\n';
  }
}

void Reporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (json()) out_ << doc_.dump(2) << '\n';
}

}  // namespace labfleet
