// What a template sees for a node, and where templates come from. Used by the files module, `render` and
// the validator, so all three agree.
//
// Variables: node (name), address, lab (lab name), gpus (number, 0 when undeclared), groups (list of group
// names), vars (the node's effective `vars:` map: defaults → groups → node), users (list of {name, uid,
// full_name} of the accounts on the node).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/inventory.h"

namespace labfleet {

nlohmann::json ValueToJson(const Value& v);  // scalars: int / bool (unquoted) / string
// `with_users` false leaves out the `users` list (the validator asks for it only when a template uses it:
// it costs a pass over every user for every node).
nlohmann::json NodeVariables(const Inventory& inv, const NodeDef& node, const Value& settings, bool with_users = true);

// Where templates are looked for, relative to the inventory directory: lab.templates_dir when set, else
// "templates" (inside the inventory directory) and then "../templates" (beside it: the layout people copy).
std::vector<std::string> TemplateDirs(const Inventory& inv);
// The directory of TemplateDirs that holds `name` (the first that does; else the first that refuses it; else
// the first), relative to the inventory directory.
std::string TemplatesDir(const Inventory& inv, const std::string& name);
// For "not found" messages: where templates were looked for, e.g. "inventory/templates/ nor in templates/ (...)".
std::string TemplateSearchText(const Inventory& inv);
// Reads templates_dir/name through inv.read_file; nullopt when absent.
// Templates (and partials) are read only from inside the templates directory: a name with ".." leading out
// of it, or a symlink pointing outside it, is refused (nullopt; TemplateRefusal says why, "" otherwise).
std::optional<std::string> ReadTemplate(const Inventory& inv, const std::string& name);
std::string TemplateRefusal(const Inventory& inv, const std::string& name);
// Renders a template for a node (partials resolved in the templates directory). Throws MustacheError or
// std::runtime_error (missing template) with the template's path in the message.
std::string RenderForNode(const Inventory& inv, const NodeDef& node, const Value& settings, const std::string& name);

}  // namespace labfleet
