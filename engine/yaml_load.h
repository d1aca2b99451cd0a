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
// - Bounded work for hostile files: a file over kMaxYamlBytes, a document that expands (every alias counted
//   as the size of what it stands for, so nested aliases multiply) to more than kMaxYamlNodes nodes, or nests
//   deeper than kMaxYamlDepth levels is refused ("yaml-too-large", "yaml-too-deep", naming the alias and its
//   file:line:col) as soon as the bound is passed, and the file contributes nothing. Aliases share their
//   anchor's storage (Value is copy-on-write), so memory follows the file's size, not its expansion.
#pragma once
#include <cstddef>
#include <string>

#include "engine/finding.h"
#include "engine/value.h"

namespace labfleet {

inline constexpr size_t kMaxYamlBytes = size_t(16) << 20;  // per inventory file
inline constexpr size_t kMaxYamlNodes = 1'000'000;         // per file, aliases expanded
inline constexpr size_t kMaxYamlDepth = 256;

// Parses one YAML document. On a syntax error reports it and returns Null (the file contributes nothing, so
// a half-read file cannot cause a cascade of follow-up findings).
Value ParseYaml(const std::string& text, const std::string& file, Findings& findings);

}  // namespace labfleet
