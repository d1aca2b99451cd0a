// lines: single lines in files labfleet does not own whole (`/etc/environment`, sysctl-style KEY=VALUE files,
// a line of a vendor's config). Module `lines`, order 55 (after files and hosts, before docker and sshd).
//
//   lines:
//     - { path: /etc/environment, line: "DET_MASTER=10.0.1.66:8080", match: "^DET_MASTER=" }
//     - { path: /etc/environment, match: "^OLD_PROXY=", state: absent }
//
// Contract, per entry in list order (entries of one path are applied to that file together):
// - present: every line matching `match` (a POSIX extended regular expression, searched in the line; without
//   `match`, the line itself) is the managed line: the first becomes exactly `line`, the later ones are removed;
//   when none matches, `line` is appended. `line` must match its own `match` (validated), so a second apply finds
//   it and changes nothing.
// - absent: every line matching `match` (or equal to `line`) is removed.
// - The rest of the file is kept byte for byte, and so are its mode and owner. A missing file is an error unless
//   `create: true` (then root:root, `mode` or 0644). A file the probe could not read whole is never edited.
// - Values are checked offline for the file's own syntax where labfleet knows it (/etc/environment: NAME=VALUE;
//   sysctl files: key = value); files other modules own (accounts, sudoers, /etc/hosts with `hosts:`, fstab with
//   `mounts:`, a `files:` entry) are refused, naming the setting to use instead.
#include <nlohmann/json.hpp>

#include <regex.h>

#include <memory>
#include <regex>
#include <set>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

struct LineEntry {
  std::string path, line, match;
  bool absent = false, create = false;
  unsigned mode = 0644;
  Location where;
};

namespace {
// A POSIX extended regular expression, compiled by the C library (glibc's matcher is not recursive: node text
// of any length cannot exhaust the stack, unlike std::regex).
class Ere {
 public:
  explicit Ere(const std::string& pattern) {
    int rc = regcomp(&re_, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char buf[256];
      regerror(rc, &re_, buf, sizeof buf);
      error_ = buf;
    } else {
      ok_ = true;
    }
  }
  ~Ere() {
    if (ok_) regfree(&re_);
  }
  Ere(const Ere&) = delete;
  Ere& operator=(const Ere&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  bool search(const std::string& line) const { return ok_ && regexec(&re_, line.c_str(), 0, nullptr, 0) == 0; }

 private:
  regex_t re_{};
  bool ok_ = false;
  std::string error_;
};
}  // namespace

// Applies `entries` (all for one file) to `text`, in order; exposed for tests. Patterns were validated (one that
// does not compile matches nothing).
std::string ApplyLineEntries(const std::string& text, const std::vector<LineEntry>& entries) {
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    lines.push_back(text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
  const std::vector<std::string> before = lines;
  for (const auto& e : entries) {
    std::unique_ptr<Ere> re;
    if (!e.match.empty()) re = std::make_unique<Ere>(e.match);
    // A NUL inside a node's line ends it for regexec: such a line is compared only up to there.
    auto hits = [&](const std::string& l) { return re ? re->search(l) : l == e.line; };
    std::vector<std::string> out;
    bool placed = false;
    for (auto& l : lines) {
      if (!hits(l)) {
        out.push_back(std::move(l));
        continue;
      }
      if (!e.absent && !placed) out.push_back(e.line);
      placed = true;
    }
    if (!e.absent && !placed) out.push_back(e.line);
    lines = std::move(out);
  }
  // Unchanged lines: the text as it was (a file without a final newline keeps it that way). Changed: every
  // line ends with a newline.
  if (lines == before) return text;
  std::string result;
  for (const auto& l : lines) result += l + "\n";
  return result;
}

namespace {

const std::vector<std::string> kKeys = {"path", "line", "match", "state", "create", "mode"};

// Files whose lines belong to another module or tool: editing them line by line would fight it or bypass its
// checks. Path -> what to use instead.
std::optional<std::string> OwnedElsewhere(const std::string& path) {
  static const std::map<std::string, std::string> kFixed = {
      {"/etc/passwd", "users:"}, {"/etc/shadow", "users:"},     {"/etc/group", "user_groups:"},
      {"/etc/gshadow", "user_groups:"}, {"/etc/subuid", "users: (subids)"}, {"/etc/subgid", "users: (subids)"},
      {"/etc/sudoers", "files: (checked with visudo)"}};
  if (auto it = kFixed.find(path); it != kFixed.end()) return it->second;
  if (path.rfind("/etc/sudoers.d/", 0) == 0) return "files: (checked with visudo)";
  return std::nullopt;
}

bool IsSysctlFile(const std::string& p) {
  return p == "/etc/sysctl.conf" || (p.rfind("/etc/sysctl.d/", 0) == 0 && p.size() > 5 && p.substr(p.size() - 5) == ".conf");
}

// The file's own syntax, where labfleet knows it; "" when fine.
std::string FileSyntax(const std::string& path, const std::string& line) {
  if (line.empty() || line[0] == '#') return "";
  if (path == "/etc/environment") {
    static const std::regex env("^[A-Za-z_][A-Za-z0-9_]*=.*$");
    if (!std::regex_match(line, env))
      return "is not NAME=VALUE, the only form pam_env reads from /etc/environment (no `export`, no spaces around =)";
  }
  if (IsSysctlFile(path)) {
    static const std::regex kv(R"(^-?[A-Za-z0-9_.*/-]+[ \t]*=[ \t]*[^ \t].*$)");
    if (!std::regex_match(line, kv)) return "is not `key = value`, the form sysctl.d(5) reads";
  }
  return "";
}

std::optional<LineEntry> ParseEntry(const Value& v, Findings* f) {
  auto err = [&](const Location& l, const std::string& code, const std::string& msg) {
    if (f) f->error(l, code, msg);
  };
  Findings scratch;
  MapReader r(v, "a lines entry", v.loc(), f ? *f : scratch, kKeys);
  if (!r.is_map()) return std::nullopt;
  LineEntry e;
  e.where = v.loc();
  bool ok = r.require("path", "e.g. `path: /etc/environment`");
  auto path = r.str("path");
  if (path) {
    PathResult pr = NormalizeAbsolutePath(*path);
    if (pr.error) {
      err(r.get("path")->loc(), pr.error->code == "path-not-absolute" ? "line-path" : pr.error->code,
          "lines path " + Quoted(*path) + " " + pr.error->what);
      ok = false;
    } else {
      e.path = pr.path;
      if (auto other = OwnedElsewhere(e.path)) {
        err(r.get("path")->loc(), "line-path-owned",
            "lines may not edit " + e.path + ": its lines are managed through `" + *other + "`");
        ok = false;
      }
    }
  }
  if (auto s = r.one_of("state", {"present", "absent"})) e.absent = *s == "absent";
  if (auto b = r.boolean("create")) e.create = *b;
  if (auto m = r.str("mode")) {
    char* end = nullptr;
    unsigned long mode = strtoul(m->c_str(), &end, 8);
    if (m->size() < 3 || *end || mode > 07777) {
      err(r.get("mode")->loc(), "line-mode", "mode " + Quoted(*m) + " is not an octal file mode; write it quoted, like \"0644\"");
      ok = false;
    } else {
      e.mode = unsigned(mode);
    }
  }
  if (auto l = r.str("line")) {
    e.line = *l;
    if (Report(f ? *f : scratch, r.get("line")->loc(), "line " + Quoted(*l), CheckNoControl(*l))) ok = false;
  }
  if (auto m = r.str("match")) {
    e.match = *m;
    if (Report(f ? *f : scratch, r.get("match")->loc(), "match " + Quoted(*m), CheckNoControl(*m))) {
      ok = false;
    } else {
      Ere re(e.match);
      if (!re.ok()) {
        err(r.get("match")->loc(), "line-regex",
            "match " + Quoted(e.match) + " is not a POSIX extended regular expression (" + re.error() + ")");
        ok = false;
      } else {
        if (!e.absent && r.get("line") && !re.search(e.line)) {
          err(r.get("match")->loc(), "line-not-matching",
              "line " + Quoted(e.line) + " does not match its own match " + Quoted(e.match) +
                  "; the next apply would not find it and would add it again. Make `match` select the line "
                  "(e.g. \"^NAME=\" for NAME=VALUE)");
          ok = false;
        }
      }
    }
  }
  if (!e.absent && !r.get("line")) {
    err(v.loc(), "missing-required", "a lines entry needs `line:` (or `state: absent` with `match:`)");
    ok = false;
  }
  if (e.absent && e.match.empty() && !r.get("line")) {
    err(v.loc(), "missing-required", "a lines entry with `state: absent` needs `match:` or `line:`");
    ok = false;
  }
  if (ok && !e.absent && !e.path.empty())
    if (std::string why = FileSyntax(e.path, e.line); !why.empty()) {
      err(r.get("line")->loc(), "line-syntax", "line " + Quoted(e.line) + " for " + e.path + " " + why);
      ok = false;
    }
  if (!ok) return std::nullopt;
  return e;
}

std::vector<LineEntry> ParseEntries(const Value* list, Findings* f) {
  std::vector<LineEntry> out;
  if (!list || list->is_null()) return out;
  if (!list->is_seq()) {
    if (f) f->error(list->loc(), "wrong-type", "lines must be a list of { path: ..., line: ..., match: ... }");
    return out;
  }
  for (const auto& item : list->items())
    if (auto e = ParseEntry(item, f)) out.push_back(std::move(*e));
  return out;
}

struct LinesWant {
  std::string path;
  std::vector<LineEntry> entries;
};

class LinesModule : public Module {
 public:
  std::string name() const override { return "lines"; }
  int order() const override { return 55; }
  std::vector<std::string> settings_keys() const override { return {"lines"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kKeys, {{"path", Scalar("absolute path of the file (required)")},
                                 {"line", Scalar("the exact line")},
                                 {"match", Scalar("POSIX extended regular expression selecting the line")},
                                 {"state", Enum({"present", "absent"})},
                                 {"create", Boolean()},
                                 {"mode", Scalar("octal mode of a created file")}}),
                  "single lines in files labfleet does not own whole");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    const Value* defaults = inv.lab.find("defaults");
    ParseEntries(defaults ? defaults->find("lines") : nullptr, &f);
    for (const auto& g : inv.groups) ParseEntries(g.raw.find("lines"), &f);
    for (const auto& n : inv.nodes) ParseEntries(n.raw.find("lines"), &f);
    // Per node: a file another module or a `files:` entry writes whole would flap between the two.
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      auto entries = ParseEntries(settings.find("lines"), nullptr);
      if (entries.empty()) continue;
      NodeContext ctx{inv, n, settings};
      std::map<std::string, std::string> owned;  // path -> the setting that writes it
      for (const auto& m : Modules())
        if (m->name() != name())
          for (auto& o : m->owned_files(ctx)) owned.emplace(o.path, o.by);
      if (const Value* files = settings.find("files"); files && files->is_seq())
        for (const auto& item : files->items())
          if (const Value* p = item.find("path"); p && p->is_scalar())
            if (PathResult pr = NormalizeAbsolutePath(p->str()); !pr.error) owned.emplace(pr.path, "files:");
      for (const auto& e : entries) {
        auto it = owned.find(e.path);
        if (it == owned.end() || !reported.insert(e.where.str() + "|" + n.name).second) continue;
        f.error(e.where, "file-owned-by-module",
                "lines edits " + e.path + ", which `" + it->second + "` writes on node '" + n.name +
                    "'; every apply would undo the other's change. Set what it should say through `" + it->second + "`");
      }
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    std::map<std::string, std::shared_ptr<LinesWant>> by_path;
    for (auto& e : ParseEntries(ctx.settings.find("lines"), nullptr)) {
      auto& w = by_path[e.path];
      if (!w) {
        w = std::make_shared<LinesWant>();
        w->path = e.path;
        out.push_back({name(), "lines:" + e.path, e.where, w});
      }
      w->entries.push_back(std::move(e));
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) out.push_back(FileProbe(r.as<LinesWant>().path));
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const LinesWant& w = r.as<LinesWant>();
    FileState live = ParseFileProbe(results, w.path);
    const std::string what = "lines in " + w.path + " (" + Counted(w.entries.size(), "entry", "entries") + ")";
    if (live.exists && !live.regular)
      return Failure(w.path + " is not a regular file (a link, a directory?); lines edits only a plain file");
    if (auto refused = RefuseUnreadEdit(live, w.path)) return *refused;
    bool create = false;
    unsigned mode = 0644;
    for (const auto& e : w.entries)
      if (e.create) create = true, mode = e.mode;
    if (!live.exists && !create) {
      bool only_absent = true;
      for (const auto& e : w.entries) only_absent = only_absent && e.absent;
      if (only_absent) return Noop(w.path + " does not exist, so none of its lines to remove is there");
      return Failure(w.path + " does not exist; lines edits an existing file (set `create: true` on the entry to "
                              "create it as root:root " + Octal(mode) + ")");
    }
    FileSpec want{w.path, ApplyLineEntries(live.exists ? live.content : "", w.entries),
                  live.exists ? live.mode : mode, live.exists ? live.owner : "root", live.exists ? live.group : "root"};
    return DiffFile(want, live, what, !LooksSecret(w.path, live.content + want.bytes));
  }
};

ModuleRegistrar registrar(std::make_unique<LinesModule>());

}  // namespace
}  // namespace labfleet
