#include "engine/finding.h"

#include <algorithm>
#include <tuple>

namespace labfleet {

void Findings::sort() {
  std::stable_sort(items_.begin(), items_.end(), [](const Finding& a, const Finding& b) {
    return std::tie(a.where.file, a.where.line, a.where.col) < std::tie(b.where.file, b.where.line, b.where.col);
  });
}

}  // namespace labfleet
