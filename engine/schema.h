// The JSON Schema (draft-07) of one inventory file, for editors (yaml-language-server) and CI linters.
//
// Contract: it is generated from the key tables that the loader (engine/inventory.cc) and each module's
// validate() use, so it cannot drift from them: every key validate accepts is a property, and wherever validate
// reports an unknown key (unknown-key) the schema says additionalProperties: false. Value types are the YAML
// shapes validate reads (a string, a list of strings, a map, an integer, a boolean); the checks that need more
// than a shape (CIDR overlaps, uids, paths, sshd syntax, references between sections) stay in `labfleet
// validate`, which remains the authority: a file the schema accepts can still have validate findings.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace labfleet {

nlohmann::json InventorySchema();

// Building blocks for Module::settings_schema().
namespace schema {
nlohmann::json Any(std::string description = {});
// A YAML scalar as validate reads it with MapReader::str(): any scalar (`branch: 535` is a string to labfleet).
nlohmann::json Scalar(std::string description = {});
nlohmann::json Boolean(std::string description = {});
nlohmann::json Integer(long long min, long long max, std::string description = {});
nlohmann::json Enum(const std::vector<std::string>& values, std::string description = {});
nlohmann::json ListOf(nlohmann::json item, std::string description = {});
nlohmann::json Strings(std::string description = {});  // a list of scalars
nlohmann::json MapOf(nlohmann::json value, std::string description = {});  // any keys, each value `value`
// A map whose keys are exactly `keys` (each optional): `props` gives the schema of some of them, the others
// accept any value. Unknown keys are refused, as validate's MapReader refuses them.
nlohmann::json Closed(const std::vector<std::string>& keys, nlohmann::json props = nlohmann::json::object(),
                      std::string description = {});
nlohmann::json OneOf(std::vector<nlohmann::json> alternatives, std::string description = {});
}  // namespace schema

}  // namespace labfleet
