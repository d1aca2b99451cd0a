// The pure editors of the `lines:` module (modules/lines.cc), exposed for its unit tests.
#pragma once
#include <string>
#include <vector>

#include "engine/finding.h"

namespace labfleet {

struct LineEntry {
  std::string path, line, match;
  bool absent = false, create = false;
  unsigned mode = 0644;
  Location where;
  // A key of a YAML file instead of a line (`yaml_key:` + `value:`): its path segments, and the value as the
  // YAML scalar text to write (true, 9000, "a string" in double quotes), validated offline.
  std::vector<std::string> yaml_key;
  std::string value;
  bool netplan_check = false;  // `check: netplan`: `netplan generate` on the node before the file is put in place
};

// Applies `entries` (all for one file, none a yaml_key) to `text`, in order. Patterns were validated (one that
// does not compile matches nothing).
std::string ApplyLineEntries(const std::string& text, const std::vector<LineEntry>& entries);

// One key of a block-style YAML mapping set to a scalar.
struct YamlKeySet {
  std::vector<std::string> key;  // segments, each validated by YamlKeySegmentProblem
  std::string value;             // YAML scalar text, from YamlScalarText
};
struct YamlEditResult {
  std::string text;   // the edited file (== the input when every key already had its value)
  std::string error;  // why the file cannot be edited safely ("" when it can); then `text` is the input
};
// Sets each key (in order) in `text`, a YAML file written by someone else (cloud-init, the installer, a person).
// Line-based, no YAML emitter: only the managed key's line changes (its key, spacing and trailing comment kept;
// the scalar replaced), or new lines are inserted after the last line of the innermost existing mapping on the
// path, indented like that mapping's keys (deeper levels by the file's own indentation step, 2 when it has
// none). Every other byte is kept. Refused (error, nothing changed): CR line endings, a tab in indentation,
// directives or several documents, and on the key's path: flow style ({...} [...]), anchors, aliases, tags,
// merge keys, complex keys, a key present twice, a list or text block or multi-line scalar where a mapping or
// a single-line scalar must be, a line that is not `key: value`. Converged means the scalar text is exactly
// `value` (yes for true is rewritten). Never recursive: node text of any size is safe.
YamlEditResult SetYamlKeys(const std::string& text, const std::vector<YamlKeySet>& sets);

// Offline checks of inventory input: "" when fine, else what is wrong.
std::string YamlKeySegmentProblem(const std::string& segment);
// `raw` is the inventory's scalar text, `quoted` whether it was quoted there: an unquoted boolean (true/false,
// yes/no/on/off) gives true/false, an unquoted integer gives itself, a quoted string gives a double-quoted YAML
// scalar (\ and " escaped; control characters refused). Anything else is refused (problem set).
struct YamlScalar {
  std::string text, problem;
};
YamlScalar YamlScalarText(const std::string& raw, bool quoted);

}  // namespace labfleet
