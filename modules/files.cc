// files: whole files on nodes, from inline `content`, a `source` file of the inventory repository, or a
// Mustache `template` rendered with the node's variables (engine/node_vars.h). Mode, owner and group are
// managed too; the previous version is kept in the run's backup by the executor.
//
//   files:
//     - { path: /etc/motd, template: motd.mustache, mode: "0644" }
//     - { path: /etc/lab/README, content: "hello\n", owner: root, group: root }
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "modules/facts/accounts_probe.h"
#include <nlohmann/json.hpp>

#include "engine/schema.h"
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
  return (std::filesystem::path(inv.root) / TemplatesDir(inv, name) / name).lexically_normal().string();
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

// ---- sudoers files: checked with visudo -cf, offline (here) and on the node before they are put in place

// /etc/sudoers and the files below /etc/sudoers.d/: a syntax error in one makes sudo refuse everyone.
bool IsSudoers(const std::string& path) { return path == "/etc/sudoers" || path.rfind("/etc/sudoers.d/", 0) == 0; }

// Runs on the node with the new version in "$LF_NEW" (Change::precheck): visudo's verdict, or a note when the
// node has no visudo (no sudo either, so the file cannot break it).
std::string VisudoPrecheck() {
  return "lf_v=$(command -v visudo 2>/dev/null || echo /usr/sbin/visudo)\n"
         "if [ -x \"$lf_v\" ]; then \"$lf_v\" -c -f \"$LF_NEW\"; "
         "else echo 'no visudo on the node (no sudo): not checked'; fi";
}

// The controller's visudo: $LABFLEET_VISUDO when set (a path that is not executable turns the check off), else
// visudo in /usr/sbin, /sbin or PATH; "" when there is none (validate then skips the check).
std::string ControllerVisudo() {
  if (const char* env = std::getenv("LABFLEET_VISUDO")) return access(env, X_OK) == 0 ? env : "";
  std::vector<std::string> dirs = {"/usr/sbin", "/sbin"};
  if (const char* path = std::getenv("PATH"))
    for (const auto& d : SplitWords(path, ":")) dirs.push_back(d);
  for (const auto& d : dirs)
    if (!d.empty() && d[0] == '/' && access((d + "/visudo").c_str(), X_OK) == 0) return d + "/visudo";
  return "";
}

// visudo -c -f on `bytes` (no shell: argv only). nullopt when visudo accepts it; else its output, with the
// temporary file's name replaced by `path`. Bounded: 10 s, 64 KiB of output.
std::optional<std::string> VisudoCheck(const std::string& visudo, const std::string& path, const std::string& bytes) {
  char tmpl[] = "/tmp/labfleet-sudoers-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return std::nullopt;
  const std::string tmp = tmpl;
  bool written = true;
  for (size_t off = 0; off < bytes.size() && written;) {
    ssize_t n = write(fd, bytes.data() + off, bytes.size() - off);
    if (n <= 0) written = false;
    else off += size_t(n);
  }
  close(fd);
  std::optional<std::string> result;
  int pipefd[2];
  if (written && pipe2(pipefd, O_CLOEXEC) == 0) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    std::vector<std::string> args = {visudo, "-c", "-f", tmp};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, visudo.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc == 0) {
      std::string out;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      char buf[4096];
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          kill(pid, SIGKILL);
          out += "\n(visudo did not finish within 10 s)";
          break;
        }
        pollfd p{pipefd[0], POLLIN, 0};
        if (poll(&p, 1, int(left.count())) <= 0) continue;
        ssize_t n = read(pipefd[0], buf, sizeof buf);
        if (n <= 0) break;
        if (out.size() < 65536) out.append(buf, size_t(n));
      }
      int status = 0;
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        for (size_t p = out.find(tmp); p != std::string::npos; p = out.find(tmp, p + path.size()))
          out.replace(p, tmp.size(), path);
        // One line for a compiler-style finding: visudo's "FILE:LINE:COL: syntax error" lines (or its first
        // line), without the quoted source line and the caret under it.
        std::vector<std::string> keep, lines = SplitWords(out, "\n");
        for (const auto& l : lines)
          if (l.rfind(path, 0) == 0 || l.find(" " + path) != std::string::npos) keep.push_back(TrimChars(l, " "));
        if (keep.empty() && !lines.empty()) keep.push_back(TrimChars(lines[0], " "));
        result = keep.empty() ? std::string("visudo failed without a message") : Join(keep, "; ");
      }
    }
    close(pipefd[0]);
  }
  unlink(tmp.c_str());
  return result;
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
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kKeys, {{"path", Scalar("absolute path (required)")},
                                 {"content", Scalar()},
                                 {"source", Scalar("file of the inventory repository")},
                                 {"template", Scalar("Mustache template")},
                                 {"mode", Scalar("octal, e.g. \"0644\"")},
                                 {"owner", Scalar()},
                                 {"group", Scalar()},
                                 {"secret", Boolean()}}),
                  "whole files: content, source or template");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    // Structure, once per place a list is written.
    const Value* defaults = inv.lab.find("defaults");
    ParseFiles(defaults ? defaults->find("files") : nullptr, &f);
    for (const auto& g : inv.groups) ParseFiles(g.raw.find("files"), &f);
    for (const auto& n : inv.nodes) ParseFiles(n.raw.find("files"), &f);
    // Sources and templates, per node (a template may use a variable one node lacks).
    std::map<std::string, std::optional<std::vector<MustacheRef>>> parsed;
    std::set<std::string> reported;
    // sudoers files: what visudo on this machine says of the bytes each node would get (once per distinct text).
    const std::string visudo = ControllerVisudo();
    std::map<std::string, std::optional<std::string>> verdicts;  // path + bytes -> visudo's complaint
    auto check_sudoers = [&](const NodeDef& n, const Value& settings, const FileWant& w) {
      if (visudo.empty()) return;
      std::optional<std::string> bytes;
      if (w.has_content) {
        bytes = w.content;
      } else if (!w.source.empty()) {
        if (inv.read_file) bytes = inv.read_file(w.source);
      } else {
        try {
          bytes = RenderForNode(inv, n, settings, w.tmpl);
        } catch (const std::exception&) {  // reported as template-missing/-syntax/-variable
        }
      }
      if (!bytes) return;
      auto key = w.path + '\0' + *bytes;
      auto it = verdicts.find(key);
      if (it == verdicts.end()) it = verdicts.emplace(key, VisudoCheck(visudo, w.path, *bytes)).first;
      // Per node: the same complaint on the nodes of a group becomes one finding naming them (MergeNodeFindings).
      if (it->second && reported.insert("sudo:" + w.where.str() + "|" + n.name + "|" + *it->second).second)
        f.error(w.where, "sudoers-syntax",
                "visudo rejects sudoers file " + w.path + " for node '" + n.name + "': " + *it->second +
                    "; with it in place sudo refuses everyone on the node. Fix it (check with `visudo -cf FILE`); "
                    "apply would refuse to install it");
    };
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
        if (IsSudoers(w.path)) check_sudoers(n, settings, w);
        if (w.tmpl.empty()) continue;
        auto it = parsed.find(w.tmpl);
        if (it == parsed.end()) {
          std::optional<std::vector<MustacheRef>> names;
          auto text = ReadTemplate(inv, w.tmpl);
          if (std::string why = TemplateRefusal(inv, w.tmpl); !text && !why.empty()) {
            f.error(w.where, "template-refused", "template " + why);
          } else if (!text) {
            f.error(w.where, "template-missing", "template '" + w.tmpl + "' not found in " + TemplateSearchText(inv));
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
    if (IsSudoers(w.path))
      for (auto& c : d.changes)
        if (c.kind == Change::Kind::PutFile) c.precheck = VisudoPrecheck();
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
