#include "engine/node_vars.h"

#include <filesystem>

#include "engine/mustache.h"

namespace labfleet {

nlohmann::json ValueToJson(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return nullptr;
    case Value::Kind::Scalar: {
      if (!v.quoted()) {
        if (auto i = v.as_int()) return *i;
        if (auto b = v.as_bool()) return *b;
      }
      return v.str();
    }
    case Value::Kind::Seq: {
      auto a = nlohmann::json::array();
      for (const auto& i : v.items()) a.push_back(ValueToJson(i));
      return a;
    }
    case Value::Kind::Map: {
      auto o = nlohmann::json::object();
      for (const auto& e : v.entries()) o[e.key] = ValueToJson(e.value);
      return o;
    }
  }
  return nullptr;
}

nlohmann::json NodeVariables(const Inventory& inv, const NodeDef& node, const Value& settings, bool with_users) {
  nlohmann::json j;
  j["node"] = node.name;
  j["address"] = node.address;
  const Value* name = inv.lab.find("name");
  j["lab"] = name ? name->str() : "";
  j["gpus"] = node.gpus < 0 ? 0 : node.gpus;
  j["groups"] = node.groups;
  const Value* vars = settings.find("vars");
  j["vars"] = vars && vars->is_map() ? ValueToJson(*vars) : nlohmann::json::object();
  j["users"] = nlohmann::json::array();
  if (with_users)
    for (const auto& u : inv.users)
    if (!u.remove && inv.user_on_node(u, node))
      j["users"].push_back({{"name", u.name}, {"uid", u.uid}, {"full_name", u.full_name}});
  return j;
}

std::vector<std::string> TemplateDirs(const Inventory& inv) {
  const Value* d = inv.lab.find("templates_dir");
  if (d && d->is_scalar() && !d->str().empty()) return {d->str()};
  return {"templates", "../templates"};
}

namespace {
std::string RefusalIn(const Inventory& inv, const std::string& dir, const std::string& name) {
  return inv.refusal ? inv.refusal(dir + "/" + name, dir) : "";
}
}  // namespace

std::string TemplatesDir(const Inventory& inv, const std::string& name) {
  auto dirs = TemplateDirs(inv);
  if (dirs.size() == 1 || !inv.read_file) return dirs[0];
  for (const auto& dir : dirs)
    if (RefusalIn(inv, dir, name).empty() && inv.read_file(dir + "/" + name)) return dir;
  for (const auto& dir : dirs)
    if (!RefusalIn(inv, dir, name).empty()) return dir;  // so that the refusal is what gets reported
  return dirs[0];
}

std::string TemplateSearchText(const Inventory& inv) {
  auto dirs = TemplateDirs(inv);
  auto shown = [&](const std::string& dir) {
    std::string p = (std::filesystem::path(inv.root.empty() ? "." : inv.root) / dir).lexically_normal().string();
    return p + (p.empty() || p.back() == '/' ? "" : "/");
  };
  if (dirs.size() == 1) return shown(dirs[0]) + " (lab.templates_dir)";
  return shown(dirs[0]) + " nor in " + shown(dirs[1]) +
         " (the templates/ inside the inventory directory, then the one beside it; or set lab.templates_dir)";
}

std::string TemplateRefusal(const Inventory& inv, const std::string& name) {
  return RefusalIn(inv, TemplatesDir(inv, name), name);
}

std::optional<std::string> ReadTemplate(const Inventory& inv, const std::string& name) {
  if (!inv.read_file || !TemplateRefusal(inv, name).empty()) return std::nullopt;
  return inv.read_file(TemplatesDir(inv, name) + "/" + name);
}

std::string RenderForNode(const Inventory& inv, const NodeDef& node, const Value& settings, const std::string& name) {
  auto text = ReadTemplate(inv, name);
  if (!text) throw std::runtime_error("template '" + name + "' not found in " + TemplateSearchText(inv));
  try {
    return RenderMustache(*text, NodeVariables(inv, node, settings),
                          [&](const std::string& partial) { return ReadTemplate(inv, partial + ".mustache"); });
  } catch (const MustacheError& e) {
    throw std::runtime_error(TemplatesDir(inv, name) + "/" + name + ":" + std::to_string(e.line) + ":" +
                             std::to_string(e.col) + ": " + e.what());
  }
}

}  // namespace labfleet
