// `labfleet show NODE [--rev REV]`: why a node gets what it gets. Prints the node's facts (address, groups,
// gpus, how labfleet connects), its fully merged settings with, for every leaf value, the layer it came from
// (defaults, group NAME, node) and where it was written (file:line:col), and the accounts that land on it.
// Offline. Exit: 0; 3 when the node is unknown (a usage error, as for every command); 1 when the inventory has
// structural errors (printed first; they win over an unknown node, which may be unknown because of them).
#include <algorithm>

#include "engine/cli.h"
#include "engine/inventory.h"

namespace labfleet {
namespace {

struct Leaf {
  std::string path;  // docker.address_pools, hosts["10.0.1.66"]
  const Value* value;
  std::string layer;  // "defaults", "group gpu", "node"
};

bool SameLoc(const Location& a, const Location& b) {
  return a.known() && a.line == b.line && a.col == b.col && a.file == b.file;
}

std::string PathJoin(const std::string& base, const std::string& key) {
  bool plain = !key.empty();
  for (char c : key)
    if (!std::isalnum((unsigned char)c) && c != '_' && c != '-') plain = false;
  if (plain) return base.empty() ? key : base + "." + key;
  return base + "[\"" + key + "\"]";
}

// The layers of a node's settings, in merge order.
std::vector<std::pair<std::string, Value>> Layers(const Inventory& inv, const NodeDef& node) {
  std::vector<std::pair<std::string, Value>> out;
  if (const Value* d = inv.lab.find("defaults"); d && d->is_map()) out.emplace_back("defaults", *d);
  for (const auto& g : node.groups)
    if (const GroupDef* gd = inv.group(g); gd && gd->raw.is_map()) out.emplace_back("group " + g, gd->raw);
  out.emplace_back("node", node.raw);
  return out;
}

// Which layer wrote this value: the one holding a value at the same path written at the same place.
std::string LayerOf(const std::vector<std::pair<std::string, Value>>& layers, const std::vector<std::string>& keys,
                    const Value& v) {
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    const Value* cur = &it->second;
    for (const auto& k : keys) {
      cur = cur->find(k);
      if (!cur) break;
    }
    if (cur && SameLoc(cur->loc(), v.loc())) return it->first;
  }
  return "?";
}

void CollectLeaves(const Value& v, const std::string& path, std::vector<std::string>& keys,
                   const std::vector<std::pair<std::string, Value>>& layers, std::vector<Leaf>& out) {
  if (v.is_map() && !v.entries().empty()) {
    for (const auto& e : v.entries()) {
      keys.push_back(e.key);
      CollectLeaves(e.value, PathJoin(path, e.key), keys, layers, out);
      keys.pop_back();
    }
    return;
  }
  out.push_back({path, &v, LayerOf(layers, keys, v)});
}

nlohmann::json ToJson(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return nullptr;
    case Value::Kind::Scalar: return v.str();
    case Value::Kind::Seq: {
      auto a = nlohmann::json::array();
      for (const auto& i : v.items()) a.push_back(ToJson(i));
      return a;
    }
    case Value::Kind::Map: {
      auto o = nlohmann::json::object();
      for (const auto& e : v.entries()) o[e.key] = ToJson(e.value);
      return o;
    }
  }
  return nullptr;
}

nlohmann::json LocJson(const Location& l) { return {{"file", l.file}, {"line", l.line}, {"column", l.col}}; }

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.resize(width, ' ');
  return s;
}

// Cuts `s` into lines of at most `width` characters, after ", " or a blank where it can (a word longer than the
// width is cut inside). Nothing is left out: `show` never abbreviates a value.
std::vector<std::string> Wrap(const std::string& s, size_t width) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (s.size() - pos > width) {
    size_t cut = s.rfind(' ', pos + width);
    if (cut == std::string::npos || cut <= pos) cut = pos + width;
    else ++cut;  // the blank stays at the end of the line
    out.push_back(s.substr(pos, cut - pos));
    pos = cut;
  }
  out.push_back(s.substr(pos));
  for (auto& l : out)
    while (!l.empty() && l.back() == ' ') l.pop_back();
  return out;
}

// `show GROUP`: not a node, but say what it is and which nodes it holds (wrapped, never cut).
int ShowGroup(CommandContext& ctx, const Inventory& inv, const GroupDef& g, int rc) {
  auto& r = ctx.reporter;
  std::vector<std::string> nodes;
  for (const NodeDef* n : inv.select({g.name})) nodes.push_back(n->name);
  if (r.json()) {
    auto& doc = r.doc();
    doc["group"] = g.name;
    doc["where"] = LocJson(g.where);
    doc["nodes"] = nodes;
    return rc;
  }
  r.line("'" + g.name + "' is a group, not a node (" + g.where.str() + "); its " + std::to_string(nodes.size()) +
         " node" + (nodes.size() == 1 ? "" : "s") + ":");
  std::string list;
  for (const auto& n : nodes) list += (list.empty() ? "" : ", ") + n;
  if (nodes.empty()) list = "(none)";
  for (const auto& l : Wrap(list, 76)) r.line("  " + l);
  if (!nodes.empty()) r.line("show one of them: labfleet show " + nodes.front());
  return rc;
}

const CommandRegistrar kShow(
    "show", "print a node's merged settings and where each value comes from", [](CLI::App& sub) -> CommandRun {
      auto node_name = std::make_shared<std::string>();
      auto rev = std::make_shared<std::string>();
      sub.add_option("node", *node_name, "node name")->required();
      sub.add_option("--rev", *rev, "read the inventory at this git revision instead of the working tree");
      return [node_name, rev](CommandContext& ctx) -> int {
        Findings findings;
        const std::string& dir = ctx.global.inventory;
        Inventory inv = rev->empty() ? LoadInventoryDir(dir, findings) : LoadInventoryRev(dir, *rev, findings);
        findings.sort();
        int rc = findings.has_errors() ? kExitErrors : kExitOk;
        if (findings.has_errors()) {
          ctx.reporter.findings(findings);
          ctx.reporter.note("(the inventory has errors: what follows may be incomplete; see `labfleet validate`)");
        }
        auto& r = ctx.reporter;
        const NodeDef* node = inv.node(*node_name);
        if (!node)
          if (const GroupDef* g = inv.group(*node_name)) return ShowGroup(ctx, inv, *g, rc);
        if (!node) {
          std::vector<std::string> names;
          for (const auto& n : inv.nodes) names.push_back(n.name);
          std::string msg = "no node '" + *node_name + "' in " + dir;
          if (auto s = Suggest(*node_name, names)) msg += "; did you mean '" + *s + "'?";
          r.error(msg);
          return findings.has_errors() ? kExitErrors : kExitUsage;
        }
        SshSettings ssh = inv.ssh(*node);
        Value settings = inv.settings(*node);
        auto layers = Layers(inv, *node);
        std::vector<Leaf> leaves;
        std::vector<std::string> keys;
        for (const auto& e : settings.entries()) {
          keys.push_back(e.key);
          CollectLeaves(e.value, PathJoin("", e.key), keys, layers, leaves);
          keys.pop_back();
        }
        std::vector<const UserDef*> users;
        for (const auto& u : inv.users)
          if (inv.user_on_node(u, *node)) users.push_back(&u);

        if (r.json()) {
          auto& doc = r.doc();
          doc["node"] = node->name;
          doc["where"] = LocJson(node->where);
          doc["address"] = node->address;
          doc["groups"] = node->groups;
          if (node->gpus >= 0) doc["gpus"] = node->gpus;
          doc["connection"] = node->connection;
          doc["ssh"] = {{"user", ssh.user}, {"port", ssh.port},     {"identity", ssh.identity},
                        {"jump", ssh.jump}, {"become", ssh.become}, {"host_key", ssh.host_key}};
          std::vector<std::string> order;
          for (const auto& l : layers) order.push_back(l.first);
          doc["layers"] = order;
          doc["settings"] = ToJson(settings);
          auto prov = nlohmann::json::array();
          for (const auto& l : leaves) {
            nlohmann::json j = LocJson(l.value->loc());
            j["path"] = l.path;
            j["value"] = ToJson(*l.value);
            j["layer"] = l.layer;
            prov.push_back(j);
          }
          doc["provenance"] = prov;
          auto us = nlohmann::json::array();
          for (const auto* u : users)
            us.push_back({{"name", u->name},
                          {"uid", u->uid},
                          {"full_name", u->full_name},
                          {"remove", u->remove},
                          {"where", LocJson(u->where)}});
          doc["users"] = us;
          if (!inv.revision.empty()) doc["revision"] = inv.revision;
          return rc;
        }

        r.line("node " + node->name + "  (" + node->where.str() + ")");
        r.line("  address     " + node->address);
        std::string groups;
        for (const auto& g : node->groups) groups += (groups.empty() ? "" : ", ") + g;
        r.line("  groups      " + (groups.empty() ? std::string("(none)") : groups));
        if (node->gpus >= 0) r.line("  gpus        " + std::to_string(node->gpus));
        if (node->connection == "local") {
          r.line("  connection  local (commands run on this machine)");
        } else {
          std::string c = "ssh " + ssh.user + "@" + node->address + ":" + std::to_string(ssh.port);
          if (!ssh.jump.empty()) c += " via " + ssh.jump;
          if (!ssh.identity.empty()) c += ", identity " + ssh.identity;
          if (!ssh.become.empty()) c += ", become " + ssh.become;
          r.line("  connection  " + c);
          if (!ssh.host_key.empty()) r.line("  host key    " + ssh.host_key + " (pinned)");
        }
        std::string order;
        for (const auto& l : layers) order += (order.empty() ? "" : " -> ") + l.first;
        r.line("");
        r.line("settings (merged: " + order + "; maps merge key by key, lists replace)");
        // Long values wrap onto continuation lines under the value column; nothing is cut.
        constexpr size_t kValueWidth = 60;
        size_t wpath = 0, wval = 0;
        std::vector<std::vector<std::string>> vals;
        for (const auto& l : leaves) {
          vals.push_back(Wrap(l.value->flow(), kValueWidth));
          wpath = std::max(wpath, l.path.size());
          for (const auto& line : vals.back()) wval = std::max(wval, line.size());
        }
        for (size_t i = 0; i < leaves.size(); ++i) {
          r.line("  " + Pad(leaves[i].path, wpath) + "  " + Pad(vals[i][0], wval) + "  " +
                 Pad(leaves[i].layer, 14) + "  " + leaves[i].value->loc().str());
          for (size_t k = 1; k < vals[i].size(); ++k) r.line("  " + std::string(wpath, ' ') + "  " + vals[i][k]);
        }
        if (leaves.empty()) r.line("  (none)");
        r.line("");
        r.line("accounts on this node (" + std::to_string(users.size()) + ")");
        for (const auto* u : users) {
          std::string line = "  " + Pad(u->name, 12) + " uid " + Pad(std::to_string(u->uid), 6);
          if (u->remove) line += " (removed here)";
          else if (!u->full_name.empty()) line += " " + u->full_name;
          r.line(line + "  " + u->where.str());
        }
        return rc;
      };
    });

}  // namespace
}  // namespace labfleet
