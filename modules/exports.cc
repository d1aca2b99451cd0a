// exports: NFS exports of a storage server, as one file labfleet owns whole, /etc/exports.d/labfleet.exports.
// The admin's /etc/exports is never written (only read, to warn about a path exported there too). Module
// `exports`, order 76 (after mounts: a node that is both client and server has its mounts' fstab first).
//
//   exports:
//     - { path: /mnt/HDD/home, clients: [gpu, login], options: [rw, sync, no_subtree_check] }
//     - { path: /mnt/SSD/public, clients: [gpu, 10.0.2.0/24], options: [ro] }
//
// Contract:
// - path: absolute, normalised ("//", "/./" and a trailing "/" dropped), only [A-Za-z0-9._+@/-]: no blank,
//   quote, backslash or '#' can reach the line (exports(5) would read them as separators, escapes or comments).
// - clients: each is an inventory node (its address), an inventory group (every member's address, in inventory
//   order), or a literal IPv4/IPv6 address, CIDR network or host name (wildcards * and ? allowed; a bare "*"
//   is a warning: every host that reaches the server). A client is written once per path.
// - options: from exports(5)'s list of flags, or key=value with a strict value pattern (anonuid/anongid
//   numbers, fsid number/root/UUID, sec flavours, mountpoint path). rw and ro together are an error; without
//   either the export is read-only (exportfs's default); without subtree_check or no_subtree_check,
//   no_subtree_check is written (the default exportfs assumes, said out loud so it does not warn).
// - The file is `path client(options) client(options) ...`, one line per entry, in inventory order.
// - Reload: `exportfs -ra` as a handler, only when the file changed. A node without exportfs (no NFS server
//   package) gets the file, a warning on every plan (and in apply's report, from its re-plan) that nothing
//   serves it, and the handler prints a note and succeeds instead of failing (nothing to reload there). A node whose
//   exportfs fails fails the apply with exportfs's output, and the reload stays pending until it works.
// - Each plan warns about an export path that is not a directory on the node (exportfs would skip it) and
//   about a path that the admin's /etc/exports exports too.
// Validate, across the inventory: an NFS `mounts:` entry (or an `automounts:` map location) whose source is
// SERVER:/path, SERVER an inventory node (by name or address) with `exports:`, must name a path exported there
// (the path or one below it) to that client, and a read-write mount needs a read-write export (error); a
// read-only mount of a read-write export is a warning (export it ro to that client). A server without
// `exports:` is not checked (its exports are managed outside labfleet).
#include <fnmatch.h>

#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/cidr.h"
#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

constexpr const char* kExportsFile = "/etc/exports.d/labfleet.exports";
constexpr const char* kAdminExports = "/etc/exports";

// One line of an exports file, as labfleet writes it and as ParseExports reads any exports file.
struct ExportLine {
  std::string path;
  std::vector<std::pair<std::string, std::string>> clients;  // client, options ("" when none in parentheses)
  size_t line = 0;  // 1-based, when parsed
};

struct ExportsText {
  std::vector<ExportLine> lines;
  int skipped = 0;  // lines that are not `/path client...` (garbage, a relative path)
};

// exports(5): '#' comments, blank lines, a trailing backslash continues the line, the path optionally in double
// quotes, then blank-separated `client(options)` or `client` or `-options` defaults. Pure; never throws.
ExportsText ParseExports(std::string_view text) {
  ExportsText out;
  std::vector<std::pair<std::string, size_t>> logical;
  std::string cur;
  size_t n = 0, start = 0;
  for (std::string_view l : LineViews(text)) {
    ++n;
    if (cur.empty()) start = n;
    if (!l.empty() && l.back() == '\\') {
      cur += std::string(l.substr(0, l.size() - 1)) + " ";
      continue;
    }
    cur += std::string(l);
    logical.push_back({cur, start});
    cur.clear();
  }
  if (!cur.empty()) logical.push_back({cur, start});
  for (auto& [raw, at] : logical) {
    std::string s = raw.substr(0, raw.find('#'));
    std::string t = TrimChars(s, " \t\r");
    if (t.empty()) continue;
    ExportLine e;
    e.line = at;
    size_t pos = 0;
    if (t[0] == '"') {
      size_t close = t.find('"', 1);
      if (close == std::string::npos) {
        ++out.skipped;
        continue;
      }
      e.path = t.substr(1, close - 1);
      pos = close + 1;
    } else {
      size_t sp = t.find_first_of(" \t");
      e.path = t.substr(0, sp);
      pos = sp == std::string::npos ? t.size() : sp;
    }
    if (e.path.empty() || e.path[0] != '/') {
      ++out.skipped;
      continue;
    }
    bool bad = false;
    for (const auto& w : SplitWords(t.substr(pos), " \t")) {
      if (w[0] == '-') continue;  // default options for the line
      size_t open = w.find('(');
      if (open == std::string::npos) {
        e.clients.push_back({w, ""});
        continue;
      }
      if (w.back() != ')' || open == 0) {
        bad = true;
        break;
      }
      e.clients.push_back({w.substr(0, open), w.substr(open + 1, w.size() - open - 2)});
    }
    if (bad) {
      ++out.skipped;
      continue;
    }
    out.lines.push_back(std::move(e));
  }
  return out;
}

// What the module's node probe prints: "exportfs PATH" or "exportfs -", then "INDEX dir|other|missing" per
// export path (in the order of ExportsStateProbe's paths).
struct ExportsNodeState {
  bool have_exportfs = false;
  std::string exportfs;
  std::map<size_t, std::string> paths;  // index -> dir | other | missing
  int skipped = 0;
};

ExportsNodeState ParseExportsState(std::string_view text) {
  ExportsNodeState st;
  for (std::string_view l : LineViews(text)) {
    std::vector<std::string> w = SplitWords(l, " \t");
    if (w.size() == 2 && w[0] == "exportfs") {
      st.have_exportfs = w[1] != "-" && w[1][0] == '/';
      st.exportfs = st.have_exportfs ? w[1] : "";
      continue;
    }
    if (w.size() == 2 && (w[1] == "dir" || w[1] == "other" || w[1] == "missing")) {
      if (auto i = ParseInteger(w[0]); i && *i >= 0) {
        st.paths[size_t(*i)] = w[1];
        continue;
      }
    }
    ++st.skipped;
  }
  return st;
}

// The file labfleet writes.
std::string RenderExports(const std::vector<ExportLine>& lines) {
  std::string s =
      "# Managed by labfleet (exports:); changes here are overwritten by the next apply.\n"
      "# The admin's own exports stay in /etc/exports.\n";
  for (const auto& l : lines) {
    s += l.path;
    for (const auto& [c, o] : l.clients) s += " " + c + (o.empty() ? "" : "(" + o + ")");
    s += "\n";
  }
  return s;
}

namespace {

const std::vector<std::string> kExportKeys = {"path", "clients", "options"};

const std::set<std::string>& ExportFlags() {
  static const std::set<std::string> f = {
      "rw",           "ro",          "sync",           "async",        "secure",        "insecure",
      "wdelay",       "no_wdelay",   "hide",           "nohide",       "crossmnt",      "nocrossmnt",
      "subtree_check", "no_subtree_check", "secure_locks", "insecure_locks", "auth_nlm", "no_auth_nlm",
      "mountpoint",   "mp",          "root_squash",    "no_root_squash", "all_squash",  "no_all_squash",
      "acl",          "no_acl",      "pnfs",           "no_pnfs",      "security_label"};
  return f;
}
const std::vector<std::string> kExportKeyOptions = {"anonuid", "anongid", "fsid", "sec", "mountpoint", "mp"};

bool AllOf(std::string_view s, std::string_view allowed) {
  return !s.empty() && s.find_first_not_of(allowed) == std::string_view::npos;
}
constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kPathChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+@/-";

// "" when `opt` is a valid exports option, else why not.
std::string CheckExportOption(const std::string& opt) {
  if (ExportFlags().count(opt)) return "";
  size_t eq = opt.find('=');
  if (eq == std::string::npos) {
    std::vector<std::string> known(ExportFlags().begin(), ExportFlags().end());
    auto sug = Suggest(opt, known);
    return "is not an exports(5) option" + (sug ? "; did you mean '" + *sug + "'?" : std::string());
  }
  std::string k = opt.substr(0, eq), v = opt.substr(eq + 1);
  if (k == "anonuid" || k == "anongid")
    return AllOf(v, kDigits) && v.size() <= 10 ? "" : "needs a number (" + k + "=65534)";
  if (k == "fsid") {
    if (v == "root" || (AllOf(v, kDigits) && v.size() <= 10) || (AllOf(v, "0123456789abcdefABCDEF-") && v.size() >= 8))
      return "";
    return "needs a number, root or a UUID (fsid=0)";
  }
  if (k == "sec") {
    for (const auto& f : Split(v, ':'))
      if (f != "sys" && f != "krb5" && f != "krb5i" && f != "krb5p" && f != "none")
        return "needs flavours from sys, krb5, krb5i, krb5p, none joined by ':' (sec=krb5p:sys)";
    return "";
  }
  if (k == "mountpoint" || k == "mp")
    return !v.empty() && v[0] == '/' && AllOf(v, kPathChars) && v.find("..") == std::string::npos
               ? ""
               : "needs an absolute path of [A-Za-z0-9._+@/-]";
  auto sug = Suggest(k, kExportKeyOptions);
  return "is not an exports(5) option" + (sug ? "; did you mean '" + *sug + "=...'?" : std::string());
}

// A literal client: address, CIDR, or host name pattern. "" when fine.
std::string CheckLiteralClient(const std::string& c) {
  if (c.find('/') != std::string::npos) {
    std::string err;
    if (!ParseCidr(c, &err)) return "is not a CIDR network (" + err + ")";
    return "";
  }
  if (ParseIp(c)) return "";
  if (c.find(':') != std::string::npos) return "is not an IP address";
  std::string probe = c;
  for (char& ch : probe)
    if (ch == '*' || ch == '?') ch = 'x';
  if (!IsHostName(probe))
    return "is neither an inventory node or group, nor an address, CIDR network or host name (letters, digits, "
           "'-', '.', wildcards * and ?)";
  return "";
}

struct ClientRef {
  std::string host;  // as written into the file
  std::string from;  // "node asahi", "group gpu", "" for a literal
};

struct ExportSpec {
  std::string path;
  std::vector<ClientRef> clients;
  std::vector<std::string> options;  // as written (with no_subtree_check added when neither is given)
  bool rw = false;
  Location where, path_where;
};

std::vector<std::string> GroupMembers(const Inventory& inv, const std::string& group) {
  std::vector<std::string> out;
  for (const auto& n : inv.nodes)
    for (const auto& g : n.groups)
      if (g == group) out.push_back(n.name);
  return out;
}

const NodeDef* NodeByName(const Inventory& inv, const std::string& name) {
  for (const auto& n : inv.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

bool IsGroup(const Inventory& inv, const std::string& name) {
  for (const auto& g : inv.groups)
    if (g.name == name) return true;
  for (const auto& n : inv.nodes)
    for (const auto& g : n.groups)
      if (g == name) return true;
  return false;
}

// Parses an `exports:` list. Findings go to `f` when given; entries with errors are left out.
std::vector<ExportSpec> ParseExportList(const Inventory& inv, const Value* v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  std::vector<ExportSpec> list;
  if (!v || v->is_null()) return list;
  if (!v->is_seq()) {
    out.error(v->loc(), "wrong-type", "exports must be a list of { path: ..., clients: [...], options: [...] }, got " +
                                          DescribeValue(*v));
    return list;
  }
  for (const auto& item : v->items()) {
    MapReader r(item, "an export", item.loc(), out, kExportKeys);
    if (!r.is_map()) continue;
    ExportSpec e;
    e.where = item.loc();
    bool ok = r.require("path", "the exported directory, e.g. path: /mnt/HDD/home");
    ok = r.require("clients", "who may mount it: inventory nodes or groups, addresses, CIDR networks") && ok;
    if (auto p = r.str("path")) {
      e.path_where = r.get("path")->loc();
      PathResult pr = NormalizeAbsolutePath(*p);
      if (Report(out, e.path_where, "export path " + Quoted(*p), pr.error)) {
        ok = false;
      } else if (!AllOf(pr.path, kPathChars) || pr.path == "/") {
        out.error(e.path_where, "export-path",
                  "export path " + Quoted(*p) +
                      " may hold only letters, digits and ._+@/- (no blank, quote, backslash or '#', which "
                      "exports(5) reads as separators, escapes or a comment), and may not be /");
        ok = false;
      } else {
        e.path = pr.path;
      }
    }
    if (const Value* c = r.get("clients")) {
      if (!c->is_seq() || c->items().empty()) {
        out.error(c->loc(), "export-clients", "clients must be a non-empty list, e.g. clients: [gpu, 10.0.2.0/24]");
        ok = false;
      } else {
        for (const auto& ci : c->items()) {
          if (!ci.is_scalar()) {
            out.error(ci.loc(), "wrong-type", "an export client must be a string, got " + DescribeValue(ci));
            ok = false;
            continue;
          }
          std::string name = ci.str();
          if (Report(out, ci.loc(), "export client " + Quoted(name), CheckOneWord(name))) {
            ok = false;
            continue;
          }
          auto add = [&](const std::string& host, const std::string& from) {
            // A node's address goes into the line as it is: it must be one for exports(5) too.
            if (!from.empty())
              if (std::string why = CheckLiteralClient(host); !why.empty()) {
                out.error(ci.loc(), "export-client",
                          "export client " + Quoted(name) + " (" + from + ") has the address " + Quoted(host) +
                              ", which " + why);
                ok = false;
                return;
              }
            for (const auto& have : e.clients)
              if (have.host == host) {
                out.error(ci.loc(), "export-client-twice",
                          "export client " + Quoted(name) + " gives " + host + ", which this export already lists" +
                              (have.from.empty() ? "" : " (from " + have.from + ")") + "; name each client once");
                ok = false;
                return;
              }
            e.clients.push_back({host, from});
          };
          if (const NodeDef* n = NodeByName(inv, name)) {
            if (n->address.empty()) {
              out.error(ci.loc(), "export-client", "export client node '" + name + "' has no address to export to");
              ok = false;
            } else {
              add(n->address, "node " + name);
            }
          } else if (IsGroup(inv, name)) {
            auto members = GroupMembers(inv, name);
            if (members.empty()) {
              out.error(ci.loc(), "export-client", "export client group '" + name + "' has no nodes");
              ok = false;
            }
            for (const auto& m : members) {
              const NodeDef* n = NodeByName(inv, m);
              if (n && !n->address.empty()) add(n->address, "group " + name);
            }
          } else if (std::string why = CheckLiteralClient(name); !why.empty()) {
            std::vector<std::string> names;
            for (const auto& n : inv.nodes) names.push_back(n.name);
            for (const auto& g : inv.groups) names.push_back(g.name);
            auto sug = Suggest(name, names);
            out.error(ci.loc(), "export-client",
                      "export client " + Quoted(name) + " " + why + (sug ? "; did you mean '" + *sug + "'?" : ""));
            ok = false;
          } else {
            if (name.find_first_of(".:*?/") == std::string::npos) {
              // A single word that is no inventory node or group: likely a typo of one.
              std::vector<std::string> names;
              for (const auto& n : inv.nodes) names.push_back(n.name);
              for (const auto& g : inv.groups) names.push_back(g.name);
              auto sug = Suggest(name, names);
              out.warning(ci.loc(), "export-client-unknown",
                          "export client '" + name + "' is no inventory node or group; it is written as a host name "
                          "for the server to resolve" + (sug ? "; did you mean '" + *sug + "'?" : std::string()));
            }
            if (name == "*")
              out.warning(ci.loc(), "export-everyone",
                          "export client \"*\" lets every host that reaches the server mount " + e.path +
                              "; name the nodes, groups or networks instead");
            add(name, "");
          }
        }
      }
    }
    if (const Value* o = r.get("options")) {
      std::vector<std::pair<std::string, Location>> opts;
      if (o->is_scalar()) {
        for (const auto& s : Split(o->str(), ','))
          if (!s.empty()) opts.push_back({s, o->loc()});
      } else if (auto l = r.strings("options")) {
        for (size_t i = 0; i < l->size(); ++i) opts.push_back({(*l)[i], o->items()[i].loc()});
      } else {
        ok = false;
      }
      bool ro = false, subtree = false;
      for (const auto& [opt, at] : opts) {
        if (Report(out, at, "export option " + Quoted(opt), CheckOneWord(opt))) {
          ok = false;
          continue;
        }
        if (std::string why = CheckExportOption(opt); !why.empty()) {
          out.error(at, "export-option", "export option " + Quoted(opt) + " " + why);
          ok = false;
          continue;
        }
        e.rw |= opt == "rw";
        ro |= opt == "ro";
        subtree |= opt == "subtree_check" || opt == "no_subtree_check";
        e.options.push_back(opt);
      }
      if (e.rw && ro) {
        out.error(o->loc(), "export-option", "export options give both rw and ro; choose one");
        ok = false;
      }
      if (!subtree) e.options.push_back("no_subtree_check");
    } else {
      e.options.push_back("no_subtree_check");
    }
    if (ok) list.push_back(std::move(e));
  }
  return list;
}

// ---- the cross-check of clients' NFS sources against the servers' exports ----

struct NfsUse {
  std::string server, path;  // of SERVER:/path (a '&' already replaced)
  bool ro = false;
  Location where;
  std::string what;  // "mount /home", "automount /home key *"
};

bool HasOpt(const Value* opts, const std::string& name) {
  if (!opts) return false;
  if (opts->is_scalar()) {
    for (const auto& s : Split(opts->str(), ','))
      if (s == name || s == "-" + name) return true;
    return false;
  }
  if (opts->is_seq())
    for (const auto& i : opts->items())
      if (i.is_scalar() && (i.str() == name || i.str() == "-" + name)) return true;
  return false;
}

bool SplitSource(const std::string& s, std::string& host, std::string& path) {
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || s[0] == '[' || colon + 1 >= s.size() || s[colon + 1] != '/')
    return false;
  host = s.substr(0, colon);
  path = s.substr(colon + 1);
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return true;
}

// Every NFS source a node's effective settings use: `mounts:` (nfs/nfs4, not removed) and `automounts:` maps.
std::vector<NfsUse> NfsUses(const Value& settings) {
  std::vector<NfsUse> out;
  if (const Value* m = settings.find("mounts"); m && m->is_seq()) {
    for (const auto& item : m->items()) {
      if (!item.is_map()) continue;
      const Value* type = item.find("type");
      std::string t = type && type->is_scalar() ? type->str() : "nfs";
      const Value* rm = item.find("remove");
      const Value* src = item.find("source");
      const Value* tgt = item.find("target");
      if ((t != "nfs" && t != "nfs4") || (rm && rm->is_scalar() && rm->str() == "true") || !src || !src->is_scalar())
        continue;
      NfsUse u;
      if (!SplitSource(src->str(), u.server, u.path)) continue;
      u.ro = HasOpt(item.find("options"), "ro");
      u.where = src->loc();
      u.what = "mount " + (tgt && tgt->is_scalar() ? tgt->str() : src->str());
      out.push_back(std::move(u));
    }
  }
  if (const Value* a = settings.find("automounts"); a && a->is_seq()) {
    for (const auto& item : a->items()) {
      if (!item.is_map()) continue;
      const Value* map = item.find("map");
      const Value* mnt = item.find("mount");
      if (!map || !map->is_map()) continue;
      bool ro = HasOpt(item.find("options"), "ro");
      for (const auto& entry : map->entries()) {
        const std::string& key = entry.key;
        const Value& val = entry.value;
        if (!val.is_scalar()) continue;
        NfsUse u;
        std::string loc = val.str();
        for (size_t p; (p = loc.find('&')) != std::string::npos;) loc.replace(p, 1, key == "*" ? "x" : key);
        if (!SplitSource(loc, u.server, u.path)) continue;
        u.ro = ro;
        u.where = val.loc();
        u.what = "automount " + (mnt && mnt->is_scalar() ? mnt->str() : std::string("?")) + " key " + key;
        out.push_back(std::move(u));
      }
    }
  }
  return out;
}

// Whether an export client admits `node` (a group or node name was resolved to addresses already).
bool Admits(const ClientRef& c, const NodeDef& node) {
  if (c.host == node.address || c.host == node.name) return true;
  if (c.host.find('/') != std::string::npos) {
    auto net = ParseCidr(c.host);
    auto ip = ParseIp(node.address);
    return net && ip && Contains(*net, *ip);
  }
  if (c.host.find_first_of("*?") != std::string::npos)
    return fnmatch(c.host.c_str(), node.address.c_str(), 0) == 0 || fnmatch(c.host.c_str(), node.name.c_str(), 0) == 0;
  return false;
}

bool Below(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

struct ExportsWant {
  std::vector<ExportLine> lines;
  std::vector<std::string> paths;  // distinct, for the directory probe
};

Probe ExportsStateProbe(const std::vector<std::string>& paths) {
  Script s;
  s.raw("if command -v exportfs >/dev/null 2>&1; then echo \"exportfs $(command -v exportfs)\"; else echo 'exportfs -'; fi");
  for (size_t i = 0; i < paths.size(); ++i) {
    std::string q = ShellQuote(paths[i]), n = std::to_string(i);
    s.raw("if [ -d " + q + " ]; then echo '" + n + " dir'; elif [ -e " + q + " ] || [ -L " + q + " ]; then echo '" + n +
          " other'; else echo '" + n + " missing'; fi");
  }
  s.raw("true");
  return {"exports:state", s.str()};
}

// The handler: exportfs re-reads every exports file. Without exportfs there is nothing to reload: a note.
std::string ReloadCommand() {
  return "if command -v exportfs >/dev/null 2>&1; then exportfs -ra; else echo 'note: exportfs is not installed on "
         "this node (no NFS server package): " +
         std::string(kExportsFile) + " is written but nothing serves it; install nfs-kernel-server'; fi";
}

class ExportsModule : public Module {
 public:
  std::string name() const override { return "exports"; }
  int order() const override { return 76; }
  std::vector<std::string> settings_keys() const override { return {"exports"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kExportKeys, {{"path", Scalar("absolute path of the exported directory (required)")},
                                       {"clients", Strings()},
                                       {"options", OneOf({Strings(), Scalar()})}}),
                  "NFS exports in /etc/exports.d/labfleet.exports");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    if (const Value* d = inv.lab.find("defaults"); d && d->is_map()) ParseExportList(inv, d->find("exports"), &f);
    for (const auto& g : inv.groups) ParseExportList(inv, g.raw.find("exports"), &f);
    for (const auto& n : inv.nodes) ParseExportList(inv, n.raw.find("exports"), &f);
    // Per server node: one client once per path.
    std::map<std::string, std::vector<ExportSpec>> served;  // server node -> its effective exports
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value eff = inv.settings(n);
      const Value* ex = eff.find("exports");
      if (!ex || !ex->is_seq()) continue;
      auto list = ParseExportList(inv, ex, nullptr);
      std::map<std::pair<std::string, std::string>, Location> seen;
      for (const auto& e : list)
        for (const auto& c : e.clients) {
          auto [it, fresh] = seen.emplace(std::make_pair(e.path, c.host), e.where);
          if (!fresh && reported.insert(e.where.str() + c.host).second)
            f.error(e.where, "export-client-twice",
                    "export " + e.path + " on node '" + n.name + "' lists " + c.host + " again (also at " +
                        it->second.str() + "); exportfs would take only one: one client, one line per path");
        }
      served[n.name] = std::move(list);
    }
    // Every client's NFS source on a server with exports: exported there, to that client, rw agreeing.
    for (const auto& client : inv.nodes) {
      Value eff = inv.settings(client);
      for (const auto& u : NfsUses(eff)) {
        const NodeDef* server = NodeByName(inv, u.server);
        if (!server)
          for (const auto& n : inv.nodes)
            if (!n.address.empty() && n.address == u.server) server = &n;
        if (!server) continue;
        auto it = served.find(server->name);
        if (it == served.end()) continue;
        const ExportSpec* path_match = nullptr;
        const ExportSpec* admitted = nullptr;
        std::vector<std::string> paths;
        for (const auto& e : it->second) {
          paths.push_back(e.path);
          if (!Below(u.path, e.path)) continue;
          if (!path_match || e.path.size() > path_match->path.size()) path_match = &e;
          for (const auto& c : e.clients)
            if (Admits(c, client) && (!admitted || e.path.size() >= admitted->path.size())) admitted = &e;
        }
        std::string key = u.where.str() + "|" + client.name;
        if (!reported.insert(key).second) continue;
        std::string subject = u.what + " on node '" + client.name + "' (" + u.server + ":" + u.path + ")";
        if (!path_match) {
          f.error(u.where, "export-missing",
                  subject + " names no export of node '" + server->name + "'; it exports " +
                      (paths.empty() ? std::string("nothing") : Join(paths, ", ")) +
                      ". Add the path to that node's exports: or fix the source");
          continue;
        }
        if (!admitted) {
          std::vector<std::string> hosts;
          for (const auto& c : path_match->clients) hosts.push_back(c.host);
          f.error(u.where, "export-client-missing",
                  subject + ": export " + path_match->path + " on '" + server->name + "' (" + path_match->where.str() +
                      ") does not list this node (" + client.address + "); its clients are " + Join(hosts, ", ") +
                      ". Add the node or its group to that export's clients");
          continue;
        }
        if (!u.ro && !admitted->rw)
          f.error(u.where, "export-mode-mismatch",
                  subject + " is read-write, but export " + admitted->path + " on '" + server->name + "' (" +
                      admitted->where.str() + ") is read-only; add `ro` to the mount or `rw` to the export");
        else if (u.ro && admitted->rw)
          f.warning(u.where, "export-mode-mismatch",
                    subject + " is read-only, but export " + admitted->path + " on '" + server->name + "' (" +
                        admitted->where.str() + ") gives this node read-write; export it `ro` to this node");
      }
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("exports");
    if (!v || !v->is_seq()) return {};
    return {{kExportsFile, "exports:"}};
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("exports");
    if (!v || !v->is_seq()) return {};
    auto w = std::make_shared<ExportsWant>();
    for (const auto& e : ParseExportList(ctx.inv, v, nullptr)) {
      ExportLine l;
      l.path = e.path;
      std::string opts = Join(e.options, ",");
      for (const auto& c : e.clients) l.clients.push_back({c.host, opts});
      w->lines.push_back(std::move(l));
      bool seen = false;
      for (const auto& p : w->paths) seen |= p == e.path;
      if (!seen) w->paths.push_back(e.path);
    }
    return {{name(), std::string("exports:") + kExportsFile, v->loc(), w}};
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out{FileProbe(kExportsFile), FileProbe(kAdminExports)};
    for (const auto& r : rs) out.push_back(ExportsStateProbe(r.as<ExportsWant>().paths));
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const ExportsWant& w = r.as<ExportsWant>();
    FileState live = ParseFileProbe(results, kExportsFile);
    if (live.exists && !live.regular)
      return Failure(std::string(kExportsFile) + " is not a regular file (a link, a directory?); move it away on the node");
    const ProbeOutput* sp = FindProbe(results, "exports:state");
    ExportsNodeState st = ParseExportsState(sp ? sp->out : "");
    std::vector<std::string> warnings;
    if (!st.have_exportfs)
      warnings.push_back("exports: exportfs is not installed on this node, so nothing serves " + std::string(kExportsFile) +
                         "; install nfs-kernel-server (packages:) for the exports to take effect");
    for (size_t i = 0; i < w.paths.size(); ++i) {
      auto it = st.paths.find(i);
      std::string s = it == st.paths.end() ? "missing" : it->second;
      if (s != "dir")
        warnings.push_back("export path " + w.paths[i] + " " + (s == "missing" ? "does not exist" : "is not a directory") +
                           " on this node; exportfs skips it until it is a directory");
    }
    FileState admin = ParseFileProbe(results, kAdminExports);
    if (admin.exists && admin.regular && admin.content_read) {
      for (const auto& l : ParseExports(admin.content).lines)
        for (const auto& p : w.paths)
          if (l.path == p)
            warnings.push_back("export path " + p + " is also exported by line " + std::to_string(l.line) +
                               " of /etc/exports (the admin's file); exportfs merges both, so remove one of them");
    }
    FileSpec want{kExportsFile, RenderExports(w.lines), 0644, "root", "root"};
    DiffResult d = DiffFile(want, live, "NFS exports in " + std::string(kExportsFile) + " (" +
                                            Counted(w.lines.size(), "export", "exports") + ")");
    bool content = false;
    for (const auto& c : d.changes) content |= c.kind == Change::Kind::PutFile;
    if (content) {
      d.changes.push_back(NotifyChange(
          "exportfs -ra", ReloadCommand(), "exportfs -ra",
          std::string(kExportsFile) + " changed: the NFS server re-reads its exports" +
              (st.have_exportfs ? "" : " (no exportfs on this node: the handler prints a note and does nothing)")));
    }
    for (auto& x : warnings) d.warnings.push_back(std::move(x));
    return d;
  }
};

const ModuleRegistrar kExports(std::make_unique<ExportsModule>());

}  // namespace
}  // namespace labfleet
