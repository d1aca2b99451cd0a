// A validation finding, printed compiler-style: "file:line:col: error: message [code]".
#pragma once
#include <string>
#include <vector>

#include "engine/value.h"

namespace labfleet {

enum class Severity { Warning, Error };

struct Finding {
  Location where;
  Severity severity = Severity::Error;
  std::string code;     // stable, kebab-case, e.g. "duplicate-uid"; documented in docs/validate.md
  std::string message;  // says what is wrong and, where it can, what to do
};

class Findings {
 public:
  void error(const Location& where, std::string code, std::string message) {
    items_.push_back({where, Severity::Error, std::move(code), std::move(message)});
  }
  void warning(const Location& where, std::string code, std::string message) {
    items_.push_back({where, Severity::Warning, std::move(code), std::move(message)});
  }
  void add(Finding f) { items_.push_back(std::move(f)); }
  const std::vector<Finding>& items() const { return items_; }
  bool has_errors() const {
    for (const auto& f : items_)
      if (f.severity == Severity::Error) return true;
    return false;
  }
  size_t count(Severity s) const {
    size_t n = 0;
    for (const auto& f : items_) n += f.severity == s;
    return n;
  }
  // Stable order for output: by file, line, column, then insertion order.
  void sort();

 private:
  std::vector<Finding> items_;
};

}  // namespace labfleet
