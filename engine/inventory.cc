// The inventory model: loading (files -> Values -> typed definitions), merging of node settings, and the
// schema helpers shared with modules. The offline checks that go beyond structure live in validator.cc.
#include "engine/inventory.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "engine/git_repo.h"
#include "engine/module.h"
#include "engine/yaml_load.h"

namespace labfleet {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- schema helpers

const std::vector<std::string>& NodeOnlyKeys() {
  static const std::vector<std::string> keys = {"address", "groups", "gpus", "connection"};
  return keys;
}

const std::vector<std::string>& CoreSettingsKeys() {
  static const std::vector<std::string> keys = {"ssh", "host_key", "vars"};
  return keys;
}

std::vector<std::string> SettingsKeys() {
  std::vector<std::string> keys = CoreSettingsKeys();
  for (const auto& m : Modules())
    for (auto& k : m->settings_keys()) keys.push_back(std::move(k));
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

Location KeyLoc(const Value& map, std::string_view key) {
  for (const auto& e : map.entries())
    if (e.key == key) return e.key_loc;
  return map.loc();
}

std::string DescribeValue(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Null: return "nothing";
    case Value::Kind::Seq: return "a list";
    case Value::Kind::Map: return "a map";
    case Value::Kind::Scalar: return "'" + v.str() + "'";
  }
  return "?";
}

static std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", " : "") + keys[i];
  return out;
}

MapReader::MapReader(const Value& v, std::string what, Location where, Findings& findings,
                     const std::vector<std::string>& allowed)
    : what_(std::move(what)), where_(std::move(where)), f_(findings) {
  if (v.is_map()) {
    v_ = v;
  } else {
    v_ = Value::Map(v.loc());
    if (!v.is_null())
      f_.error(v.loc().known() ? v.loc() : where_, "wrong-type",
               what_ + " must be a map (key: value lines), got " + DescribeValue(v));
    return;
  }
  for (const auto& e : v_.entries()) {
    if (std::find(allowed.begin(), allowed.end(), e.key) != allowed.end()) continue;
    std::string msg = "unknown key '" + e.key + "' in " + what_;
    if (auto s = Suggest(e.key, allowed))
      msg += "; did you mean '" + *s + "'?";
    else
      msg += " (known keys: " + JoinKeys(allowed) + ")";
    f_.error(e.key_loc, "unknown-key", msg);
  }
}

const Value* MapReader::get(std::string_view key) const {
  const Value* v = v_.find(key);
  return v && !v->is_null() ? v : nullptr;
}

Location MapReader::key_loc(std::string_view key) const {
  for (const auto& e : v_.entries())
    if (e.key == key) return e.key_loc;
  return where_;
}

bool MapReader::require(std::string_view key, std::string_view hint) {
  if (get(key)) return true;
  std::string msg = what_ + " is missing the required key '" + std::string(key) + "'";
  if (!hint.empty()) msg += "; " + std::string(hint);
  f_.error(where_, "missing-required", msg);
  return false;
}

void MapReader::wrong_type(std::string_view key, const Value& got, std::string_view expected) {
  f_.error(got.loc().known() ? got.loc() : key_loc(key), "wrong-type",
           "'" + std::string(key) + "' of " + what_ + " must be " + std::string(expected) + ", got " +
               DescribeValue(got));
}

std::optional<std::string> MapReader::str(std::string_view key) {
  const Value* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_scalar()) {
    wrong_type(key, *v, "a string");
    return std::nullopt;
  }
  return v->str();
}

std::optional<long long> MapReader::integer(std::string_view key, long long min, long long max) {
  const Value* v = get(key);
  if (!v) return std::nullopt;
  auto n = v->as_int();
  if (!n) {
    wrong_type(key, *v, "an integer");
    return std::nullopt;
  }
  if (*n < min || *n > max) {
    f_.error(v->loc(), "wrong-type",
             "'" + std::string(key) + "' of " + what_ + " must be between " + std::to_string(min) + " and " +
                 std::to_string(max) + ", got " + v->str());
    return std::nullopt;
  }
  return n;
}

std::optional<bool> MapReader::boolean(std::string_view key) {
  const Value* v = get(key);
  if (!v) return std::nullopt;
  auto b = v->as_bool();
  if (!b) {
    wrong_type(key, *v, v->quoted() ? "true or false (unquoted)" : "true or false");
    return std::nullopt;
  }
  return b;
}

std::optional<std::vector<std::string>> MapReader::strings(std::string_view key) {
  const Value* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_seq()) {
    wrong_type(key, *v, v->is_scalar() ? "a list (write [" + v->str() + "])" : "a list");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const auto& item : v->items()) {
    if (!item.is_scalar()) {
      f_.error(item.loc(), "wrong-type",
               "items of '" + std::string(key) + "' of " + what_ + " must be strings, got " + DescribeValue(item));
      ok = false;
      continue;
    }
    out.push_back(item.str());
  }
  if (!ok) return std::nullopt;
  return out;
}

const Value* MapReader::map(std::string_view key) {
  const Value* v = get(key);
  if (!v) return nullptr;
  if (!v->is_map()) {
    wrong_type(key, *v, "a map");
    return nullptr;
  }
  return v;
}

const Value* MapReader::seq(std::string_view key) {
  const Value* v = get(key);
  if (!v) return nullptr;
  if (!v->is_seq()) {
    wrong_type(key, *v, "a list");
    return nullptr;
  }
  return v;
}

std::optional<std::string> MapReader::one_of(std::string_view key, const std::vector<std::string>& choices) {
  auto s = str(key);
  if (!s) return std::nullopt;
  if (std::find(choices.begin(), choices.end(), *s) != choices.end()) return s;
  std::string msg = "'" + std::string(key) + "' of " + what_ + " must be one of " + JoinKeys(choices) + ", got '" +
                    *s + "'";
  if (auto sug = Suggest(*s, choices)) msg += "; did you mean '" + *sug + "'?";
  f_.error(get(key)->loc(), "invalid-value", msg);
  return std::nullopt;
}

// ---------------------------------------------------------------- Suggest

static size_t Levenshtein(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

static std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = char(std::tolower((unsigned char)c));
  return out;
}

std::optional<std::string> Suggest(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.empty()) return std::nullopt;
  std::string w = Lower(word);
  // Up to 1 edit for short words, growing to 3 for long ones.
  size_t limit = std::min<size_t>(3, std::max<size_t>(1, w.size() / 3 + (w.size() >= 4 ? 1 : 0)));
  std::optional<std::string> best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    size_t d = Levenshtein(w, Lower(c));
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

// ---------------------------------------------------------------- Inventory methods

// The first definition called `name`, or nullptr.
template <class Def>
static const Def* FindByName(const std::vector<Def>& defs, std::string_view name) {
  for (const auto& d : defs)
    if (d.name == name) return &d;
  return nullptr;
}

const NodeDef* Inventory::node(std::string_view name) const { return FindByName(nodes, name); }
const GroupDef* Inventory::group(std::string_view name) const { return FindByName(groups, name); }
const UserDef* Inventory::user(std::string_view name) const { return FindByName(users, name); }
const UserGroupDef* Inventory::user_group(std::string_view name) const { return FindByName(user_groups, name); }

// The settings part of a node's own map: everything but the node-only keys.
static Value NodeSettingsLayer(const NodeDef& node) {
  Value out = Value::Map(node.raw.loc());
  if (!node.raw.is_map()) return out;
  const auto& only = NodeOnlyKeys();
  for (const auto& e : node.raw.entries())
    if (std::find(only.begin(), only.end(), e.key) == only.end()) out.entries().push_back(e);
  return out;
}

Value Inventory::settings(const NodeDef& node) const {
  Value out = Value::Map(node.where);
  if (const Value* d = lab.find("defaults"); d && d->is_map()) out = MergeOver(out, *d);
  for (const auto& gname : node.groups)
    if (const GroupDef* g = group(gname); g && g->raw.is_map()) out = MergeOver(out, g->raw);
  return MergeOver(out, NodeSettingsLayer(node));
}

static void ApplySsh(SshSettings& s, const Value* v) {
  if (!v || !v->is_map()) return;
  for (const auto& e : v->entries()) {
    if (e.key == "fallback_ports" && e.value.is_seq()) {
      s.fallback_ports.clear();
      for (const auto& i : e.value.items())
        if (auto p = i.as_int(); p && *p > 0 && *p < 65536) s.fallback_ports.push_back(int(*p));
    }
    if (!e.value.is_scalar()) continue;
    const std::string& t = e.value.str();
    if (e.key == "user") s.user = t;
    else if (e.key == "port") {
      if (auto p = e.value.as_int(); p && *p > 0 && *p < 65536) s.port = int(*p);
    } else if (e.key == "identity") s.identity = t;
    else if (e.key == "jump") s.jump = t;
    else if (e.key == "become") s.become = t;
    else if (e.key == "host_key") s.host_key = t;
  }
}

SshSettings Inventory::ssh(const NodeDef& node) const {
  SshSettings s;
  ApplySsh(s, lab.find("ssh"));
  Value eff = settings(node);
  ApplySsh(s, eff.find("ssh"));
  if (const Value* hk = eff.find("host_key"); hk && hk->is_scalar()) s.host_key = hk->str();
  return s;
}

bool Inventory::user_on_node(const UserDef& user, const NodeDef& node) const {
  if (user.on.empty()) return true;
  for (const auto& t : user.on) {
    if (t == "all" || t == node.name) return true;
    if (std::find(node.groups.begin(), node.groups.end(), t) != node.groups.end()) return true;
  }
  return false;
}

std::vector<const NodeDef*> Inventory::select(const std::vector<std::string>& names, Findings* unknown) const {
  std::vector<const NodeDef*> out;
  bool all = names.empty() || std::find(names.begin(), names.end(), "all") != names.end();
  if (unknown) {
    std::vector<std::string> known;
    for (const auto& n : nodes) known.push_back(n.name);
    for (const auto& g : groups) known.push_back(g.name);
    for (const auto& name : names) {
      if (name == "all" || node(name) || group(name)) continue;
      std::string msg = "'" + name + "' is neither a node nor a group of the inventory";
      if (auto s = Suggest(name, known)) msg += "; did you mean '" + *s + "'?";
      unknown->error(Location{root}, "unknown-target", msg);
    }
  }
  for (const auto& n : nodes) {
    if (all) {
      out.push_back(&n);
      continue;
    }
    for (const auto& name : names) {
      if (name == n.name || std::find(n.groups.begin(), n.groups.end(), name) != n.groups.end()) {
        out.push_back(&n);
        break;
      }
    }
  }
  return out;
}

SubIdRange SubIds(const UserDef& user) {
  if (user.subid_start >= 0) return {user.subid_start, user.subid_count};
  return {100000 + (user.uid - 1000) * 65536, 65536};
}

// ---------------------------------------------------------------- loading

namespace {

const std::vector<std::string> kSections = {"lab", "groups", "nodes", "user_groups", "users"};
const std::vector<std::string> kLabKeys = {"name",     "domain",        "reserved_networks",
                                           "ssh",      "defaults",      "templates_dir", "home_archive",
                                           "directory", "accounts"};
const std::vector<std::string> kSshKeys = {"user", "port", "identity", "jump", "become", "host_key", "fallback_ports"};
const std::vector<std::string> kUserGroupKeys = {"gid", "system"};
const std::vector<std::string> kUserKeys = {"uid",      "full_name",       "primary_group", "groups",
                                            "ssh_keys", "shell",           "home",          "expires",
                                            "password_hash", "rootless_docker", "subids", "on",
                                            "system",   "remove", "accounts"};

// One named definition (a node, group, user, user group) before typing.
struct RawDef {
  std::string name;
  Location where;
  Value value;
};

}  // namespace

const std::vector<std::string>& InventorySections() { return kSections; }
const std::vector<std::string>& LabKeys() { return kLabKeys; }
const std::vector<std::string>& SshKeys() { return kSshKeys; }
const std::vector<std::string>& UserGroupKeys() { return kUserGroupKeys; }
const std::vector<std::string>& UserKeys() { return kUserKeys; }

namespace {

// Type-checks one `ssh:` map (the lab's, or a layer's).
void CheckSsh(const Value& ssh, const std::string& what, Location where, Findings& f) {
  MapReader s(ssh, what, where, f, kSshKeys);
  s.str("user");
  s.integer("port", 1, 65535);
  s.str("identity");
  s.str("jump");
  s.str("host_key");
  if (s.get("become")) s.one_of("become", {"", "sudo"});
  if (const Value* fp = s.seq("fallback_ports"))
    for (const auto& i : fp->items())
      if (auto p = i.as_int(); !p || *p < 1 || *p > 65535)
        f.error(i.loc(), "wrong-type", "ssh fallback_ports are port numbers (1-65535), got " + DescribeValue(i));
}

// Type-checks the core settings keys of one layer (ssh, host_key, vars); module keys are checked by modules.
void CheckCoreSettings(MapReader& r, Findings& f) {
  if (const Value* ssh = r.get("ssh")) CheckSsh(*ssh, "the ssh settings of " + r.what(), r.key_loc("ssh"), f);
  r.str("host_key");
  r.map("vars");
}

}  // namespace

Inventory LoadInventory(const std::vector<SourceFile>& files, Findings& findings) {
  Inventory inv;
  std::vector<RawDef> groups, nodes, user_groups, users;
  std::unordered_map<std::string, Location> seen_group, seen_node, seen_ug, seen_user;
  bool have_lab = false;
  Location lab_where;

  auto collect = [&](const Value::Entry& section, std::vector<RawDef>& out,
                     std::unordered_map<std::string, Location>& seen, const char* kind, const char* code) {
    if (section.value.is_null()) return;
    if (!section.value.is_map()) {
      findings.error(section.value.loc(), "wrong-type",
                     "'" + section.key + "' must be a map of " + kind + " names to their definitions, got " +
                         DescribeValue(section.value));
      return;
    }
    for (const auto& e : section.value.entries()) {
      auto [it, inserted] = seen.emplace(e.key, e.key_loc);
      if (!inserted) {
        findings.error(e.key_loc, code,
                       std::string(kind) + " '" + e.key + "' is already defined at " + it->second.str() +
                           "; define it once (merge the two definitions)");
        continue;
      }
      out.push_back({e.key, e.key_loc, e.value});
    }
  };

  // Parsing is most of validate's time on a large inventory: the files are parsed on all cores, each into its own
  // Value and Findings (separate yaml-cpp parsers share nothing), then merged in file order, so the result and
  // the order of findings are the same as a serial parse.
  std::vector<Value> roots(files.size());
  std::vector<Findings> parse_findings(files.size());
  {
    size_t bytes = 0;
    for (const auto& file : files) bytes += file.text.size();
    const size_t threads = bytes < (256u << 10) ? 1
                           : std::min<size_t>(files.size(), std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::exception_ptr> failed(threads);
    auto parse_from = [&](size_t first) {
      try {
        for (size_t i = first; i < files.size(); i += threads)
          roots[i] = ParseYaml(files[i].text, files[i].path, parse_findings[i]);
      } catch (...) {
        failed[first] = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(parse_from, t);
    parse_from(0);
    for (auto& t : pool) t.join();
    for (auto& e : failed)
      if (e) std::rethrow_exception(e);
  }
  for (size_t fi = 0; fi < files.size(); ++fi) {
    for (const auto& f : parse_findings[fi].items()) findings.add(f);
    const Value& root = roots[fi];
    if (root.is_null()) continue;
    if (!root.is_map()) {
      findings.error(root.loc(), "wrong-type",
                     "an inventory file must be a map of sections (lab, groups, nodes, user_groups, users), got " +
                         DescribeValue(root));
      continue;
    }
    for (const auto& sec : root.entries()) {
      if (sec.key == "lab") {
        if (sec.value.is_null()) continue;
        if (!sec.value.is_map()) {
          findings.error(sec.value.loc(), "wrong-type", "'lab' must be a map, got " + DescribeValue(sec.value));
          continue;
        }
        if (!have_lab) {
          have_lab = true;
          lab_where = sec.key_loc;
          inv.lab = Value::Map(sec.value.loc());
        }
        // The lab section may be spread over files, one key in one place.
        for (const auto& e : sec.value.entries()) {
          bool dup = false;
          for (const auto& prev : inv.lab.entries()) {
            if (prev.key == e.key) {
              findings.error(e.key_loc, "duplicate-key",
                             "lab key '" + e.key + "' is already set at " + prev.key_loc.str() + "; set it once");
              dup = true;
              break;
            }
          }
          if (!dup) inv.lab.entries().push_back(e);
        }
      } else if (sec.key == "groups") {
        collect(sec, groups, seen_group, "group", "duplicate-group");
      } else if (sec.key == "nodes") {
        collect(sec, nodes, seen_node, "node", "duplicate-node");
      } else if (sec.key == "user_groups") {
        collect(sec, user_groups, seen_ug, "user group", "duplicate-user-group");
      } else if (sec.key == "users") {
        collect(sec, users, seen_user, "user", "duplicate-user");
      } else if (sec.key.rfind("x-", 0) == 0) {
        // A home for YAML anchors (`x-gpu-docker: &gpu-docker {...}`): read for its anchors, otherwise ignored.
      } else {
        std::string msg = "unknown section '" + sec.key + "'";
        if (auto s = Suggest(sec.key, kSections))
          msg += "; did you mean '" + *s + "'?";
        else
          msg += " (sections: lab, groups, nodes, user_groups, users; keys starting with 'x-' are ignored, a home "
                 "for YAML anchors)";
        findings.error(sec.key_loc, "unknown-key", msg);
      }
    }
  }

  // lab
  if (!have_lab) {
    Location where{files.empty() ? inv.root : files.front().path};
    findings.error(where, "missing-required",
                   "the inventory has no 'lab' section; add one with at least `lab: { name: ... }`");
    inv.lab = Value::Map();
  } else {
    MapReader r(inv.lab, "the lab", lab_where, findings, kLabKeys);
    r.require("name", "name the lab, e.g. `name: cvgl`");
    r.str("name");
    r.str("domain");
    r.strings("reserved_networks");
    r.str("templates_dir");
    r.str("home_archive");
    r.map("directory");  // its keys: the directory module (modules/directory.cc)
    if (r.get("accounts")) r.one_of("accounts", {"local", "directory"});
    if (const Value* ssh = r.get("ssh")) CheckSsh(*ssh, "the lab's ssh settings", r.key_loc("ssh"), findings);
    if (const Value* d = r.get("defaults")) {
      MapReader dr(*d, "lab.defaults", r.key_loc("defaults"), findings, SettingsKeys());
      CheckCoreSettings(dr, findings);
    }
  }

  const std::vector<std::string> settings_keys = SettingsKeys();
  std::vector<std::string> node_keys = settings_keys;
  node_keys.insert(node_keys.end(), NodeOnlyKeys().begin(), NodeOnlyKeys().end());

  for (auto& d : groups) {
    GroupDef g;
    g.name = d.name;
    g.where = d.where;
    MapReader r(d.value, "group '" + d.name + "'", d.where, findings, settings_keys);
    CheckCoreSettings(r, findings);
    g.raw = r.value();
    inv.groups.push_back(std::move(g));
  }

  for (auto& d : nodes) {
    NodeDef n;
    n.name = d.name;
    n.where = d.where;
    MapReader r(d.value, "node '" + d.name + "'", d.where, findings, node_keys);
    r.require("address", "give the IP address or host name labfleet connects to");
    if (auto a = r.str("address")) n.address = *a;
    if (auto g = r.strings("groups")) n.groups = *g;
    if (auto g = r.integer("gpus", 0, 1024)) n.gpus = int(*g);
    if (r.get("connection"))
      if (auto c = r.one_of("connection", {"ssh", "local"})) n.connection = *c;
    CheckCoreSettings(r, findings);
    n.raw = r.value();
    inv.nodes.push_back(std::move(n));
  }

  for (auto& d : user_groups) {
    UserGroupDef g;
    g.name = d.name;
    g.where = d.where;
    MapReader r(d.value, "user group '" + d.name + "'", d.where, findings, kUserGroupKeys);
    if (auto s = r.boolean("system")) g.system = *s;
    // A system group (docker, sudo, ...) may leave its gid to the node: labfleet then manages membership only.
    if (!g.system) r.require("gid", "give it a gid (>= 1000), or mark an existing system group `system: true`");
    if (auto gid = r.integer("gid", 0, 4294967294LL)) g.gid = *gid;
    g.raw = r.value();
    inv.user_groups.push_back(std::move(g));
  }

  for (auto& d : users) {
    UserDef u;
    u.name = d.name;
    u.where = d.where;
    MapReader r(d.value, "user '" + d.name + "'", d.where, findings, kUserKeys);
    // remove: true | false | archive (an unquoted word, like the booleans)
    if (const Value* rm = r.get("remove"); rm && rm->is_scalar() && !rm->quoted() && rm->str() == "archive") {
      u.remove = u.archive_home = true;
    } else if (rm && !rm->as_bool()) {
      findings.error(rm->loc(), "wrong-type",
                     "'remove' of user '" + d.name + "' must be true, false or archive, got " + DescribeValue(*rm));
    } else if (auto b = r.boolean("remove")) {
      u.remove = *b;
    }
    if (!u.remove) r.require("uid", "every account needs a fixed uid (>= 1000) so files agree across nodes");
    if (auto uid = r.integer("uid", 0, 4294967294LL)) u.uid = *uid;
    if (auto s = r.str("full_name")) u.full_name = *s;
    if (auto s = r.str("primary_group")) u.primary_group = *s;
    if (auto s = r.strings("groups")) u.groups = *s;
    if (auto s = r.strings("ssh_keys")) u.ssh_keys = *s;
    if (auto s = r.str("shell")) u.shell = *s;
    if (auto s = r.str("home")) u.home = *s;
    if (auto s = r.str("expires")) u.expires = *s;
    if (auto s = r.str("password_hash")) u.password_hash = *s;
    if (auto b = r.boolean("rootless_docker")) u.rootless_docker = *b;
    if (const Value* sub = r.get("subids")) {
      MapReader s(*sub, "the subids of user '" + d.name + "'", r.key_loc("subids"), findings, {"start", "count"});
      s.require("start");
      if (auto v = s.integer("start", 1, 4294967294LL)) u.subid_start = *v;
      if (auto v = s.integer("count", 1, 4294967294LL)) u.subid_count = *v;
    }
    if (auto s = r.strings("on")) u.on = *s;
    if (auto b = r.boolean("system")) u.system = *b;
    if (r.get("accounts")) {
      if (auto a = r.one_of("accounts", {"local", "directory"})) u.accounts = *a;
    } else if (const Value* a = inv.lab.find("accounts"); a && a->is_scalar() && a->str() == "directory") {
      u.accounts = "directory";
    }
    u.raw = r.value();
    inv.users.push_back(std::move(u));
  }
  return inv;
}

// "inventory" + "users/a.yaml" -> "inventory/users/a.yaml"; "." and "" add nothing.
static std::string JoinPath(const std::string& dir, const std::string& rel) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  if (d.empty() || d == ".") return rel;
  return d + "/" + rel;
}

static bool IsYamlName(const std::string& name) {
  auto ends = [&](std::string_view suf) {
    return name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

// Lexically normalises `p` and checks that it stays below `root` (both absolute or both relative).
static std::optional<fs::path> Inside(const fs::path& root, const fs::path& p) {
  fs::path n = p.lexically_normal();
  fs::path rel = n.lexically_relative(root.lexically_normal());
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  return n;
}

// At most kMaxYamlBytes + 1 bytes of `path` (ParseYaml refuses a file of more than kMaxYamlBytes).
static std::string ReadBounded(const fs::path& path) {
  std::error_code ec;
  uintmax_t size = fs::file_size(path, ec);
  if (ec) return {};
  std::ifstream in(path, std::ios::binary);
  std::string out(size_t(std::min<uintmax_t>(size, kMaxYamlBytes + 1)), '\0');
  in.read(out.data(), std::streamsize(out.size()));
  out.resize(size_t(in.gcount()));
  return out;
}

Inventory LoadInventoryDir(const std::string& dir, Findings& findings) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    findings.error(Location{dir}, "inventory-missing",
                   "inventory directory '" + dir + "' does not exist; pass --inventory DIR");
    Inventory inv;
    inv.root = dir;
    return inv;
  }
  std::vector<std::pair<std::string, fs::path>> found;  // relative path, full path
  const fs::path real_dir = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!IsYamlName(name)) continue;
    if (it->is_symlink(ec)) {
      // A link inside the inventory is followed; one leading out of it is refused, not read.
      std::error_code ec2;
      fs::path target = fs::weakly_canonical(it->path(), ec2);
      if (ec2 || !Inside(real_dir, target)) {
        findings.error(Location{JoinPath(dir, it->path().lexically_relative(dir).generic_string())},
                       "inventory-symlink",
                       "this inventory file is a symlink to " + (ec2 ? std::string("a path that cannot be resolved")
                                                                     : target.string()) +
                           ", outside the inventory directory; labfleet does not follow it (copy the file in)");
        continue;
      }
    }
    if (!it->is_regular_file(ec)) continue;
    found.emplace_back(it->path().lexically_relative(dir).generic_string(), it->path());
  }
  std::sort(found.begin(), found.end());
  std::vector<SourceFile> files;
  for (const auto& [rel, full] : found) files.push_back({JoinPath(dir, rel), ReadBounded(full)});
  if (files.empty())
    findings.error(Location{dir}, "inventory-empty",
                   "no *.yaml files below '" + dir + "'; is --inventory pointing at the right directory?");
  Inventory inv = LoadInventory(files, findings);
  inv.root = dir;
  fs::path base = fs::absolute(dir, ec).lexically_normal();
  if (base.filename().empty()) base = base.parent_path();  // "/a/inventory/" and "/a/inventory/." -> "/a/inventory"
  fs::path boundary = base.parent_path();                  // -> "/a"
  inv.read_root = boundary.string();
  inv.refusal = [base, boundary](const std::string& rel, const std::string& within) -> std::string {
    const fs::path root = within.empty() ? boundary : (base / within).lexically_normal();
    const std::string where = within.empty() ? "the inventory repository" : "the directory " + within + "/";
    auto p = Inside(root, base / rel);
    if (!p) return "'" + rel + "' leads outside " + where;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(*p, ec))) {
      // Absent (reported as missing), unless a component on the way is a link leading out.
      fs::path parent = p->parent_path();
      if (!fs::exists(parent, ec)) return "";
      p = parent;
    }
    fs::path real = fs::weakly_canonical(*p, ec);
    fs::path real_root = fs::weakly_canonical(root, ec);
    if (ec || !Inside(real_root, real))
      return "'" + rel + "' is (or lies below) a symlink that points to " + real.string() + ", outside " + where +
             "; labfleet does not follow it";
    return "";
  };
  inv.read_file = [base, boundary, refusal = inv.refusal](const std::string& rel) -> std::optional<std::string> {
    auto p = Inside(boundary, base / rel);
    if (!p || !refusal(rel, "").empty()) return std::nullopt;
    std::error_code ec;
    if (!fs::is_regular_file(*p, ec)) return std::nullopt;
    std::ifstream in(*p, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return inv;
}

Inventory LoadInventoryRev(const std::string& dir, const std::string& rev, Findings& findings) {
  auto repo = std::make_shared<GitRepo>(GitRepo::Open(dir));
  std::string commit = repo->resolve(rev);
  std::string sub = repo->relative_path(dir);  // inventory dir relative to the repository root ("" = root)
  std::vector<SourceFile> files;
  for (auto& [rel, text] : repo->read_tree(commit, sub)) {
    bool hidden = false;
    for (const auto& part : fs::path(rel))
      if (!part.empty() && part.string()[0] == '.') hidden = true;
    if (!hidden && IsYamlName(fs::path(rel).filename().string()))
      files.push_back({JoinPath(dir, rel), std::move(text)});
  }
  if (files.empty())
    findings.error(Location{dir}, "inventory-empty",
                   "no *.yaml files below '" + (sub.empty() ? std::string(".") : sub) + "' at revision " + rev);
  Inventory inv = LoadInventory(files, findings);
  inv.root = dir;
  inv.revision = commit;
  // Git stores a symlink as a blob holding its target, which read_file returns as text: nothing is followed.
  inv.refusal = [sub](const std::string& rel, const std::string& within) -> std::string {
    fs::path root = fs::path("repo") / sub / within;
    if (!Inside(within.empty() ? fs::path("repo") : root.lexically_normal(), fs::path("repo") / sub / rel))
      return "'" + rel + "' leads outside " + (within.empty() ? "the inventory repository" : "the directory " + within + "/");
    return "";
  };
  inv.read_file = [repo, commit, sub](const std::string& rel) -> std::optional<std::string> {
    auto p = Inside(fs::path("repo"), fs::path("repo") / sub / rel);
    if (!p) return std::nullopt;
    return repo->read_file(commit, p->lexically_relative("repo").generic_string());
  };
  return inv;
}

}  // namespace labfleet
