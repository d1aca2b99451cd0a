#include "engine/rev_diff.h"

#include <map>
#include <set>

#include "engine/node_vars.h"

namespace labfleet {
namespace {

// What the node reads, as comparable text, keyed by what a reviewer should read ("settings docker", ...).
using State = std::map<std::string, std::string>;

// Every map in the settings tree with a `template:` or `source:` (files entries, service configs, ...).
void Rendered(const Inventory& inv, const NodeDef& node, const Value& settings, const Value& v, State& out) {
  if (v.is_map()) {
    const Value* path = v.find("path");
    std::string where = path && path->is_scalar() ? path->str() : "?";
    if (const Value* t = v.find("template"); t && t->is_scalar()) {
      std::string text;
      try {
        text = RenderForNode(inv, node, settings, t->str());
      } catch (const std::exception& e) {
        text = std::string("\x01" "cannot be rendered: ") + e.what();
      }
      out["file " + where + " (template " + t->str() + ")"] = text;
    }
    if (const Value* s = v.find("source"); s && s->is_scalar() && path) {
      auto text = inv.read_file ? inv.read_file(s->str()) : std::nullopt;
      out["file " + where + " (source " + s->str() + ")"] = text ? *text : std::string("\x01missing");
    }
    for (const auto& e : v.entries()) Rendered(inv, node, settings, e.value, out);
  } else if (v.is_seq()) {
    for (const auto& i : v.items()) Rendered(inv, node, settings, i, out);
  }
}

State NodeState(const Inventory& inv, const NodeDef& node) {
  State s;
  Value settings = inv.settings(node);
  if (settings.is_map())
    for (const auto& e : settings.entries()) s["settings " + e.key] = e.value.flow();
  if (inv.lab.is_map())
    for (const auto& e : inv.lab.entries())
      if (e.key != "defaults") s["lab " + e.key] = e.value.flow();
  for (const auto& u : inv.users)
    if (inv.user_on_node(u, node)) s["user " + u.name] = u.raw.flow();
  for (const auto& g : inv.user_groups) s["user group " + g.name] = g.raw.flow();
  s["node groups"] = [&] {
    std::string g;
    for (const auto& x : node.groups) g += x + ",";
    return g;
  }();
  Rendered(inv, node, settings, settings, s);
  return s;
}

std::vector<std::string> Compare(const State& a, const State& b) {
  std::vector<std::string> lines;
  for (const auto& [k, v] : b) {
    auto it = a.find(k);
    if (it == a.end())
      lines.push_back("+ " + k);
    else if (it->second != v)
      lines.push_back("~ " + k + (v.rfind("\x01", 0) == 0 ? " (" + v.substr(1) + ")" : ""));
  }
  for (const auto& [k, v] : a)
    if (!b.count(k)) lines.push_back("- " + k);
  return lines;
}

}  // namespace

std::vector<NodeDelta> DiffInventories(const Inventory& before, const Inventory& after) {
  std::vector<NodeDelta> out;
  for (const auto& n : after.nodes) {
    NodeDelta d;
    d.node = n.name;
    const NodeDef* old = before.node(n.name);
    if (!old) {
      d.status = '+';
      d.lines.push_back("+ node " + n.name + " (new: everything it is given is new)");
      out.push_back(std::move(d));
      continue;
    }
    d.lines = Compare(NodeState(before, *old), NodeState(after, n));
    if (!d.lines.empty()) out.push_back(std::move(d));
  }
  for (const auto& n : before.nodes)
    if (!after.node(n.name)) out.push_back({n.name, '-', {"- node " + n.name + " (no longer managed; nothing is removed from it)"}});
  return out;
}

nlohmann::json NodeDeltaToJson(const NodeDelta& d) {
  return {{"node", d.node},
          {"status", d.status == '+' ? "added" : d.status == '-' ? "removed" : "changed"},
          {"changes", d.lines}};
}

}  // namespace labfleet
