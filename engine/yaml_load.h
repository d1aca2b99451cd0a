// YAML text -> labfleet::Value. The only file that includes yaml-cpp is yaml_load.cc.
//
// Contracts:
// - Every node and every map key carries its Location: `file` as given, 1-based line and column.
// - Scalars keep their text exactly as written; `quoted()` is true for any non-plain scalar (single or double
//   quoted, block literal/folded, or with an explicit tag), so "no" and no can be told apart.
// - Plain `~`, `null`, `Null`, `NULL` and empty values become Null values (with the location of the value).
// - Duplicate keys in one map are an error ("duplicate-key") naming both places; the first value is kept.
// - Anchors and aliases are supported: an alias is a copy of the anchored value (its locations point at the
//   anchor's definition). The merge key `<<` (a map or a list of maps) is supported: explicit keys win.
//   An alias inside the node it refers to (recursion) is an error ("yaml-alias"); an undefined anchor is a
//   syntax error ("yaml-syntax").
// - Non-scalar map keys are an error ("yaml-complex-key"); a file with more than one document is an error
//   ("yaml-multiple-documents"); syntax errors are "yaml-syntax" with the parser's position.
// - An empty file parses to a Null value without findings.
#pragma once
#include <string>

#include "engine/finding.h"
#include "engine/value.h"

namespace labfleet {

// Parses one YAML document. On a syntax error reports it and returns Null (the file contributes nothing, so
// a half-read file cannot cause a cascade of follow-up findings).
Value ParseYaml(const std::string& text, const std::string& file, Findings& findings);

}  // namespace labfleet
