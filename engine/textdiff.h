// Unified diff of two texts, for `plan` output of files. Line based; `context` lines around each hunk.
#pragma once
#include <string>
#include <string_view>

namespace labfleet {

// Returns "" when the texts are equal. Headers are "--- a_label" / "+++ b_label". A missing final newline
// is shown as "\ No newline at end of file", like diff(1).
std::string UnifiedDiff(std::string_view a, std::string_view b, std::string_view a_label, std::string_view b_label,
                        int context = 3);

}  // namespace labfleet
