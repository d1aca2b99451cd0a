// files: whole files on nodes, from inline `content`, a `source` file of the inventory repository, or a
// Mustache `template` rendered with the node's variables (engine/node_vars.h). Mode, owner and group are
// managed too; the previous version is kept in the run's backup by the executor.
//
//   files:
//     - { path: /etc/motd, template: motd.mustache, mode: "0644" }
//     - { path: /etc/lab/README, content: "hello\n", owner: root, group: root }
#include <filesystem>
#include <map>
#include <set>

#include "engine/accounts_probe.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/mustache.h"
#include "engine/node_vars.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {
namespace {

struct FileWant {
  std::string path, content, source, tmpl, owner = "root", group = "root";
  unsigned mode = 0644;
  bool has_content = false;
  int secret = -1;  // `secret:` true 1 / false 0; -1: decided by LooksSecret (path and content)
  Location where;
};

// "inventory/../templates/motd.mustache" -> "templates/motd.mustache", as a person would look for it.
std::string TemplatePath(const Inventory& inv, const std::string& name) {
  return (std::filesystem::path(inv.root) / TemplatesDir(inv) / name).lexically_normal().string();
}

// The uid the inventory gives the account `owner` on this node (-1 when it is not an inventory account), and the
// gid it gives the group `group` (an inventory group with a gid, or an inventory user's personal group).
long long InventoryUid(const NodeContext& ctx, const std::string& owner) {
  const UserDef* u = ctx.inv.user(owner);
  return u && !u->remove && ctx.inv.user_on_node(*u, ctx.node) ? u->uid : -1;
}
long long InventoryGid(const NodeContext& ctx, const std::string& group) {
  if (const UserGroupDef* g = ctx.inv.user_group(group)) return g->gid;
  const UserDef* u = ctx.inv.user(group);
  return u && u->primary_group.empty() && !u->remove && ctx.inv.user_on_node(*u, ctx.node) ? u->uid : -1;
}

const std::vector<std::string> kKeys = {"path", "content", "source", "template", "mode", "owner", "group", "secret"};

// Parses one entry; reports problems to `f` when given.
std::optional<FileWant> ParseFile(const Value& v, Findings* f) {
  auto err = [&](const Location& l, const std::string& code, const std::string& msg) {
    if (f) f->error(l, code, msg);
  };
  if (!v.is_map()) {
    err(v.loc(), "file-type", "a files entry must be a map like { path: /etc/motd, template: motd.mustache }");
    return std::nullopt;
  }
  FileWant w;
  w.where = v.loc();
  bool ok = true;
  for (const auto& e : v.entries()) {
    if (std::find(kKeys.begin(), kKeys.end(), e.key) == kKeys.end()) {
      auto s = Suggest(e.key, kKeys);
      err(e.key_loc, "unknown-key", "unknown key '" + e.key + "' in a files entry" + (s ? "; did you mean '" + *s + "'?" : ""));
      ok = false;
      continue;
    }
    if (!e.value.is_scalar()) {
      err(e.value.loc(), "file-type", "'" + e.key + "' of a files entry must be a string");
      ok = false;
      continue;
    }
    const std::string& s = e.value.str();
    if (e.key == "path") w.path = s;
    if (e.key == "content") w.content = s, w.has_content = true;
    if (e.key == "source") w.source = s;
    if (e.key == "template") w.tmpl = s;
    if (e.key == "owner") w.owner = s;
    if (e.key == "group") w.group = s;
    if (e.key == "secret") {
      if (s != "true" && s != "false") {
        err(e.value.loc(), "file-secret", "'secret' of a files entry is true or false, not '" + s + "'");
        ok = false;
      }
      w.secret = s == "true";
    }
    if (e.key == "mode") {
      char* end = nullptr;
      unsigned long m = strtoul(s.c_str(), &end, 8);
      if (s.empty() || *end || m > 07777 || s.size() < 3) {
        err(e.value.loc(), "file-mode", "mode '" + s + "' is not an octal file mode; write it quoted, like \"0644\"");
        ok = false;
      } else {
        w.mode = unsigned(m);
      }
    }
  }
  const Value* pv = v.find("path");
  const Location ploc = pv && pv->loc().known() ? pv->loc() : v.loc();
  if (PathResult pr = NormalizeAbsolutePath(w.path); pr.error) {
    // A NUL or newline in a path would write another file; ".." would leave the directory it names.
    if (w.path.empty())
      err(v.loc(), "file-path", "a files entry needs an absolute 'path'");
    else if (pr.error->code == "path-not-absolute")
      err(v.loc(), "file-path", "file path " + Quoted(w.path) + " is not absolute");
    else
      err(ploc, pr.error->code, "file path " + Quoted(w.path) + " " + pr.error->what);
    ok = false;
  } else {
    w.path = pr.path;
  }
  for (const char* k : {"owner", "group"}) {
    const Value* ov = v.find(k);
    if (!ov || !ov->is_scalar()) continue;
    if (auto e = CheckOwnerName(ov->str())) {
      err(ov->loc(), e->code, std::string(k) + " " + Quoted(ov->str()) + " of file " + w.path + " " + e->what);
      ok = false;
    }
  }
  for (const char* k : {"source", "template"}) {
    const Value* sv = v.find(k);
    if (!sv || !sv->is_scalar()) continue;
    if (auto e = CheckNoControl(sv->str())) {
      err(sv->loc(), e->code, std::string(k) + " " + Quoted(sv->str()) + " of file " + w.path + " " + e->what);
      ok = false;
    }
  }
  int sources = int(w.has_content) + int(!w.source.empty()) + int(!w.tmpl.empty());
  if (sources != 1) {
    err(v.loc(), "file-source", "file " + w.path + " needs exactly one of 'content', 'source' or 'template'");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return w;
}

std::vector<FileWant> ParseFiles(const Value* list, Findings* f) {
  std::vector<FileWant> out;
  if (!list) return out;
  if (!list->is_seq()) {
    if (f) f->error(list->loc(), "file-type", "files must be a list of { path: ..., content|source|template: ... }");
    return out;
  }
  for (const auto& item : list->items())
    if (auto w = ParseFile(item, f)) out.push_back(*w);
  return out;
}

class FilesModule : public Module {
 public:
  std::string name() const override { return "files"; }
  int order() const override { return 50; }
  std::vector<std::string> settings_keys() const override { return {"files", "vars"}; }

  void validate(const Inventory& inv, Findings& f) const override {
    // Structure, once per place a list is written.
    const Value* defaults = inv.lab.find("defaults");
    ParseFiles(defaults ? defaults->find("files") : nullptr, &f);
    for (const auto& g : inv.groups) ParseFiles(g.raw.find("files"), &f);
    for (const auto& n : inv.nodes) ParseFiles(n.raw.find("files"), &f);
    // Sources and templates, per node (a template may use a variable one node lacks).
    std::map<std::string, std::optional<std::vector<MustacheRef>>> parsed;
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      std::map<std::string, Location> paths;  // path -> its first entry
      for (const auto& w : ParseFiles(settings.find("files"), nullptr)) {
        // Once per entry, though every node of a group carries the group's list.
        if (auto [first, fresh] = paths.emplace(w.path, w.where); !fresh && reported.insert("d:" + w.where.str()).second)
          f.error(w.where, "file-duplicate",
                  "file " + w.path + " is already listed at " + first->second.str() + " for node '" + n.name +
                      "'; one path takes one entry (merge the two)");
        if (!w.source.empty() && !(inv.read_file && inv.read_file(w.source)) && reported.insert("s:" + w.source).second) {
          std::string why = inv.refusal ? inv.refusal(w.source, "") : "";
          if (why.empty())
            f.error(w.where, "file-source-missing", "source file '" + w.source + "' not found (relative to the inventory directory)");
          else
            f.error(w.where, "file-source-refused", "source file " + why);
        }
        if (w.tmpl.empty()) continue;
        auto it = parsed.find(w.tmpl);
        if (it == parsed.end()) {
          std::optional<std::vector<MustacheRef>> names;
          auto text = ReadTemplate(inv, w.tmpl);
          if (std::string why = TemplateRefusal(inv, w.tmpl); !text && !why.empty()) {
            f.error(w.where, "template-refused", "template " + why);
          } else if (!text) {
            f.error(w.where, "template-missing", "template '" + w.tmpl + "' not found in " + TemplatesDir(inv) + "/");
          } else {
            try {
              names = MustacheNames(*text);
            } catch (const MustacheError& e) {
              f.error({TemplatePath(inv, w.tmpl), e.line, e.col}, "template-syntax", e.what());
            }
          }
          it = parsed.emplace(w.tmpl, names).first;
        }
        if (!it->second) continue;
        bool uses_users = false;
        for (const auto& ref : *it->second) uses_users |= ref.name == "users" || ref.name.rfind("users.", 0) == 0;
        nlohmann::json vars = NodeVariables(inv, n, settings, uses_users);
        for (const auto& ref : *it->second) {
          if (ref.in_section || ref.section) continue;
          // Resolve a dotted name against the node's variables.
          const nlohmann::json* cur = &vars;
          size_t start = 0;
          bool found = true;
          while (found) {
            size_t dot = ref.name.find('.', start);
            std::string part = ref.name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
            if (!cur->is_object() || !cur->contains(part)) found = false;
            else cur = &(*cur)[part];
            if (dot == std::string::npos) break;
            start = dot + 1;
          }
          if (!found && reported.insert(w.tmpl + "|" + ref.name + "|" + n.name).second)
            f.error({TemplatePath(inv, w.tmpl), ref.line, ref.col}, "template-variable",
                    "template '" + w.tmpl + "' uses '" + ref.name + "', which node '" + n.name +
                        "' does not define (add it under vars:, or guard it with {{#" + ref.name + "}})");
        }
      }
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    for (auto& w : ParseFiles(ctx.settings.find("files"), nullptr))
      out.push_back({name(), "file:" + w.path, w.where, std::make_shared<FileWant>(w)});
    return out;
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    bool accounts = false;
    for (const auto& r : rs) {
      const auto& w = r.as<FileWant>();
      out.push_back(FileProbe(w.path));
      accounts |= InventoryUid(ctx, w.owner) >= 0 || InventoryGid(ctx, w.group) >= 0;
    }
    // Owned by an inventory account: its live uid/gid tell whether this run renumbers it (see diff).
    if (accounts) out.insert(out.end(), {kPasswd.probe(), kGroup.probe()});
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const auto& w = r.as<FileWant>();
    std::string bytes;
    if (w.has_content) {
      bytes = w.content;
    } else if (!w.source.empty()) {
      auto text = ctx.inv.read_file ? ctx.inv.read_file(w.source) : std::nullopt;
      if (!text) return Failure("source file '" + w.source + "' not found in the inventory repository");
      bytes = *text;
    } else {
      try {
        bytes = RenderForNode(ctx.inv, ctx.node, ctx.settings, w.tmpl);
      } catch (const std::exception& e) {
        return Failure(e.what());
      }
    }
    FileSpec want{w.path, bytes, w.mode, w.owner, w.group};
    const bool secret = w.secret == 1 || (w.secret == -1 && LooksSecret(w.path, bytes));
    DiffResult d = DiffFile(want, ParseFileProbe(results, w.path), "file " + w.path, !secret);
    if (!d.changes.empty()) return d;  // written or chown-ed by name after the accounts modules ran: new ids
    // Up to date by name, but the users/user_groups modules renumber its owner or group in this run (usermod -u
    // and groupmod -g leave files outside the home with the old id): chown it again after them, or the re-plan
    // finds it owned by "UNKNOWN".
    long long uid = InventoryUid(ctx, w.owner), gid = InventoryGid(ctx, w.group);
    if (uid < 0 && gid < 0) return d;
    const auto& passwd = results.fact(kPasswd);
    const auto& groups = results.fact(kGroup);
    std::vector<std::string> moved;
    if (auto it = passwd.by_name.find(w.owner); uid >= 0 && it != passwd.by_name.end() && it->second.uid != uid)
      moved.push_back("owner " + w.owner + ": uid " + std::to_string(it->second.uid) + " -> " + std::to_string(uid));
    if (auto it = groups.by_name.find(w.group); gid >= 0 && it != groups.by_name.end() && it->second.gid != gid)
      moved.push_back("group " + w.group + ": gid " + std::to_string(it->second.gid) + " -> " + std::to_string(gid));
    if (moved.empty()) return d;
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '~';
    c.summary = "file " + w.path + " (" + Join(moved, ", ") + ")";
    c.reason = "renumbered in this run; the file keeps the old id unless chown-ed again";
    c.command = FixMetaCommand(want);
    d.changes.push_back(std::move(c));
    d.noop.clear();
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<FilesModule>());

}  // namespace
}  // namespace labfleet
