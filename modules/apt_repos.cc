// apt_repos: third-party apt repositories (Docker CE, NVIDIA's container toolkit, a lab's own), each one deb822
// file and its signing key. Module `apt_repos`, order 4: before packages (5), so what they install can come from
// these repositories in the same apply.
//
//   apt_repos:                                   # lab.defaults, a group or a node; a list replaces what it overrides
//     - name: docker                             # -> /etc/apt/sources.list.d/labfleet-docker.sources
//       uris: https://download.docker.com/linux/debian     # one URL or a list (http, https, file)
//       suites: [bookworm]                       # a suite ending in "/" is a flat repository: no components
//       components: [stable]
//       key: files/docker.asc                    # inventory file: ASCII-armored or binary OpenPGP public key
//       architectures: [amd64]                   # optional
//
// Contract:
// - the key is checked OFFLINE (validate) to be an OpenPGP public key (framing, first packet a public key, no
//   secret key material) and dearmored HERE, on the admin's machine: the node needs no gpg (a minimal Debian has
//   only apt's verifier), and the plan compares exact bytes. It lands as /etc/apt/keyrings/labfleet-NAME.gpg
//   (0644), named by `Signed-By:` of the .sources file: the key is trusted for that repository only.
// - every value is one deb822 word (no blank, no control character: no field can be injected), URLs parse as
//   URLs, `$(ARCH)` is allowed in URIs and suites (apt expands it).
// - labfleet-*.sources and labfleet-*.gpg files of names no longer declared are removed (when `apt_repos` is
//   set for the node; `apt_repos: []` removes them all).
// - `apt-get update --error-on=any` runs once, right after these files changed, before packages installs
//   anything (the executor's handlers run after every change, too late for that). It is owed until it succeeds:
//   labfleet records the SHA-256 of the repositories it updated for in /var/lib/labfleet/apt-repos.sha256
//   after a successful update, so a failed update (a wrong key) fails the apply and is planned again.
// - with package_mirror.apt (validated by packages), the distribution's own sources are moved aside FIRST
//   (MoveDistroSourcesChange, to /var/lib/labfleet/apt-orig), so that this update never reaches them: a lab
//   behind a mirror has no route to them. packages writes the mirror's list and runs its update handler.
#include <nlohmann/json.hpp>

#include <map>
#include <set>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/settings_layers.h"
#include "engine/sha256.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/facts/apt_facts.h"
#include "modules/facts/package_facts.h"

namespace labfleet {
namespace {

const std::vector<std::string> kKeys = {"name", "uris", "suites", "components", "key", "architectures"};
const char* kSourcesDir = "/etc/apt/sources.list.d";
const char* kKeyringDir = "/etc/apt/keyrings";
const char* kStamp = "/var/lib/labfleet/apt-repos.sha256";

std::string SourcesPath(const std::string& name) { return std::string(kSourcesDir) + "/labfleet-" + name + ".sources"; }
std::string KeyPath(const std::string& name) { return std::string(kKeyringDir) + "/labfleet-" + name + ".gpg"; }

struct Repo {
  std::string name, key_file;
  std::vector<std::string> uris, suites, components, architectures;
  std::string key;  // dearmored (binary) keyring; empty when it could not be read
  Location where;
};

struct Repos {
  std::vector<Repo> items;
  bool complete = true;  // false: an entry could not be read (then nothing is removed or recorded)
};

bool IsRepoName(std::string_view s) {
  if (s.empty() || s.size() > 64 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]))) return false;
  for (char c : s)
    if (!islower((unsigned char)c) && !isdigit((unsigned char)c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

// A deb822 word of a suite or component: letters, digits and ./_+-~, and apt's own `$(ARCH)`.
bool IsDebWord(std::string s, bool allow_arch_var) {
  if (allow_arch_var)
    for (size_t p; (p = s.find("$(ARCH)")) != std::string::npos;) s.replace(p, 7, "x");
  if (s.empty() || s.size() > 200) return false;
  for (char c : s)
    if (!isalnum((unsigned char)c) && std::string_view("./_+-~").find(c) == std::string_view::npos) return false;
  return true;
}

bool IsArch(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s)
    if (!islower((unsigned char)c) && !isdigit((unsigned char)c) && c != '-') return false;
  return true;
}

// A list of scalars, or one scalar: `uris: URL` and `uris: [URL, URL]` alike.
std::optional<std::vector<std::string>> Words(const Value* v, const std::string& what, Findings& f) {
  if (!v) return std::nullopt;
  std::vector<std::string> out;
  if (v->is_scalar()) return std::vector<std::string>{v->str()};
  if (!v->is_seq()) {
    f.error(v->loc(), "wrong-type", what + " must be a word or a list of words, got " + DescribeValue(*v));
    return std::nullopt;
  }
  for (const auto& i : v->items()) {
    if (!i.is_scalar()) {
      f.error(i.loc(), "wrong-type", "items of " + what + " must be words, got " + DescribeValue(i));
      return std::nullopt;
    }
    out.push_back(i.str());
  }
  return out;
}

// Parses `apt_repos:` of one settings layer. With `inv`, keys are read and checked. Findings to `f` when given;
// invalid entries are left out.
Repos ParseRepos(const Value& v, const Inventory* inv, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  Repos rs;
  if (v.is_null()) return rs;
  if (!v.is_seq()) {
    out.error(v.loc(), "wrong-type",
              "apt_repos must be a list of { name, uris, suites, components, key }, got " + DescribeValue(v));
    return rs;
  }
  std::map<std::string, Location> seen;
  for (const auto& e : v.items()) {
    MapReader r(e, "apt_repos entry", e.loc(), out, kKeys);
    if (!r.is_map()) continue;
    bool ok = r.require("name", "e.g. name: docker") & r.require("uris", "e.g. uris: https://download.docker.com/linux/debian") &
              r.require("suites", "e.g. suites: [bookworm]") &
              r.require("key", "the repository's public key file in the inventory, e.g. key: files/docker.asc");
    Repo repo;
    repo.where = e.loc();
    if (auto n = r.str("name")) {
      repo.name = *n;
      Location nl = r.get("name")->loc();
      if (!IsRepoName(*n)) {
        out.error(nl, "apt-repo-name",
                  "apt repository name " + Quoted(*n) +
                      " must be lower case letters, digits and ._- (it names labfleet-NAME.sources and labfleet-NAME.gpg)");
        ok = false;
      } else if (auto it = seen.find(*n); it != seen.end()) {
        out.error(nl, "apt-repo-duplicate", "apt repository " + *n + " is listed twice (first at " + it->second.str() + ")");
        ok = false;
      } else {
        seen.emplace(*n, nl);
      }
    }
    if (auto u = Words(r.get("uris"), "uris", out)) {
      for (const auto& url : *u) {
        SyntaxError se;
        std::string probe = url;
        for (size_t p; (p = probe.find("$(ARCH)")) != std::string::npos;) probe.replace(p, 7, "x");
        if (!ParseUrl(probe, {"http", "https", "file"}, &se) || url.find_first_of("'\"`\\") != std::string::npos) {
          out.error(r.get("uris")->loc(), se.code == "control-character" ? se.code : "apt-repo-uri",
                    "uri " + Quoted(url) + " of apt repository " + repo.name +
                        " must be an http://, https:// or file:/ URL" + (se.what.empty() ? "" : ", but it " + se.what));
          ok = false;
        }
      }
      repo.uris = *u;
    } else if (r.get("uris")) {
      ok = false;
    }
    auto words = [&](const char* key, std::vector<std::string>& into, bool arch_var, auto valid, const char* what) {
      const Value* kv = r.get(key);
      auto w = Words(kv, key, out);
      if (!w) {
        if (kv) ok = false;
        return;
      }
      if (w->empty()) {
        out.error(kv->loc(), "apt-repo-empty", std::string(key) + " of apt repository " + repo.name + " is empty");
        ok = false;
      }
      for (const auto& s : *w)
        if (!(arch_var ? IsDebWord(s, true) : valid(s))) {
          out.error(kv->loc(), FindControl(s) != std::string::npos ? "control-character" : "apt-repo-word",
                    std::string(what) + " " + Quoted(s) + " of apt repository " + repo.name +
                        " is not one deb822 word (letters, digits and ./_+-~ only)");
          ok = false;
        }
      into = *w;
    };
    words("suites", repo.suites, true, [](const std::string& s) { return IsDebWord(s, true); }, "suite");
    words("components", repo.components, false, [](const std::string& s) { return IsDebWord(s, false); }, "component");
    words("architectures", repo.architectures, false, IsArch, "architecture");
    bool flat = false, normal = false;
    for (const auto& s : repo.suites) (s.back() == '/' ? flat : normal) = true;
    if (flat && normal) {
      out.error(r.get("suites")->loc(), "apt-repo-suites",
                "apt repository " + repo.name + " mixes flat suites (ending in /) with named ones; write two entries");
      ok = false;
    } else if (flat && r.get("components")) {
      out.error(r.key_loc("components"), "apt-repo-components",
                "apt repository " + repo.name + " has a flat suite (ending in /): it takes no components (apt refuses them)");
      ok = false;
    } else if (normal && !r.get("components") && r.get("suites")) {
      out.error(r.key_loc("suites"), "apt-repo-components",
                "apt repository " + repo.name + " needs components (e.g. components: [main]) for its suites");
      ok = false;
    }
    if (auto k = r.str("key")) {
      repo.key_file = *k;
      Location kl = r.get("key")->loc();
      if (auto e = CheckNoControl(*k)) {
        Report(out, kl, "key file " + Quoted(*k), e);
        ok = false;
      } else if (inv) {
        std::optional<std::string> bytes = inv->read_file ? inv->read_file(*k) : std::nullopt;
        if (!bytes) {
          std::string why = inv->refusal ? inv->refusal(*k, "") : "";
          out.error(kl, why.empty() ? "apt-repo-key-missing" : "apt-repo-key-refused",
                    why.empty() ? "key file '" + *k + "' of apt repository " + repo.name +
                                      " not found (relative to the inventory directory)"
                                : "key file " + why);
          ok = false;
        } else {
          std::string err;
          if (auto bin = DearmorPublicKey(*bytes, &err)) {
            repo.key = *bin;
          } else {
            out.error(kl, "apt-repo-key",
                      "key file '" + *k + "' of apt repository " + repo.name + " " + err +
                          " (apt needs the repository's OpenPGP public key, e.g. the vendor's gpg/.asc file)");
            ok = false;
          }
        }
      }
    }
    if (ok) rs.items.push_back(std::move(repo));
  }
  return rs;
}

std::string SourcesText(const Repo& r) {
  std::string t = "# Managed by labfleet (apt_repos: " + r.name + "); edits here are overwritten.\n";
  t += "Types: deb\nURIs: " + Join(r.uris, " ") + "\nSuites: " + Join(r.suites, " ") + "\n";
  if (!r.components.empty()) t += "Components: " + Join(r.components, " ") + "\n";
  if (!r.architectures.empty()) t += "Architectures: " + Join(r.architectures, " ") + "\n";
  t += "Signed-By: " + KeyPath(r.name) + "\n";
  return t;
}

// What the update is owed for: every declared source and key, by name (sha256 hex).
std::string ReposHash(const Repos& rs) {
  std::map<std::string, const Repo*> by_name;
  for (const auto& r : rs.items) by_name[r.name] = &r;
  std::string all;
  for (const auto& [n, r] : by_name) all += n + '\0' + SourcesText(*r) + '\0' + Sha256Hex(r->key) + '\n';
  return Sha256Hex(all);
}

// labfleet-*.sources in sources.list.d and labfleet-*.gpg in keyrings, one path a line; names not ours skipped.
struct LabfleetAptFiles {
  std::set<std::string> paths;
  int skipped = 0;
};
LabfleetAptFiles ParseLabfleetAptFiles(std::string_view text) {
  LabfleetAptFiles out;
  for (const auto& line : SplitLines(text)) {
    if (line.empty()) continue;
    bool ok = false;
    for (auto [dir, ext] : {std::pair{kSourcesDir, ".sources"}, std::pair{kKeyringDir, ".gpg"}}) {
      std::string pre = std::string(dir) + "/labfleet-", e = ext;
      if (line.size() > pre.size() + e.size() && line.rfind(pre, 0) == 0 &&
          line.compare(line.size() - e.size(), e.size(), e) == 0 &&
          IsRepoName(line.substr(pre.size(), line.size() - pre.size() - e.size())))
        ok = true;
    }
    if (ok) out.paths.insert(line);
    else ++out.skipped;
  }
  return out;
}

const Fact<LabfleetAptFiles> kLabfleetAptFiles{
    "apt-repos-files",
    Cmd("find").arg(kSourcesDir).arg(kKeyringDir).arg("-maxdepth").arg("1").arg("-type").arg("f")
        .raw("\\(").arg("-name").arg("labfleet-*.sources").arg("-o").arg("-name").arg("labfleet-*.gpg").raw("\\)")
        .arg("-print").raw("2>/dev/null").str() + "\n:",
    ParseLabfleetAptFiles};

// package_mirror.apt is set (its value is validated by the packages module, and plan refuses an invalid one).
bool HasAptMirror(const Value& settings) {
  const Value* m = settings.find("package_mirror");
  if (!m || !m->is_map()) return false;
  const Value* a = m->find("apt");
  return a && (a->is_scalar() || a->is_map());
}

class AptReposModule : public Module {
 public:
  std::string name() const override { return "apt_repos"; }
  // Before packages (5): a package of one of these repositories is installed in the same apply.
  int order() const override { return 4; }
  std::vector<std::string> settings_keys() const override { return {"apt_repos"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    auto words = OneOf({Scalar(), Strings()}, "a word or a list of words");
    nlohmann::json entry = Closed(kKeys,
                                  {{"name", Scalar("names labfleet-NAME.sources and labfleet-NAME.gpg")},
                                   {"uris", OneOf({Scalar("URL"), Strings()}, "URL or list of URLs")},
                                   {"suites", words},
                                   {"components", words},
                                   {"key", Scalar("OpenPGP public key file of the inventory (armored or binary)")},
                                   {"architectures", words}},
                                  "an apt repository");
    return nlohmann::json{{"type", "array"}, {"items", entry}, {"description", "apt repositories (deb822) with keys"}};
  }

  void validate(const Inventory& inv, Findings& f) const override {
    ForEachSettingsLayer(inv, [&](const Value& settings) {
      if (const Value* v = settings.find("apt_repos")) ParseRepos(*v, &inv, &f);
    });
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    if (const Value* v = ctx.settings.find("apt_repos"))
      for (const auto& r : ParseRepos(*v, nullptr, nullptr).items) {
        out.push_back({SourcesPath(r.name), "apt_repos: " + r.name});
        out.push_back({KeyPath(r.name), "apt_repos: " + r.name});
      }
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    if (HasAptMirror(ctx.settings)) out.push_back({name(), "apt-repos:distro", ctx.settings.find("package_mirror")->loc(), nullptr});
    const Value* v = ctx.settings.find("apt_repos");
    if (!v) return out;
    Findings f;
    auto rs = std::make_shared<Repos>(ParseRepos(*v, &ctx.inv, &f));
    rs->complete = !f.has_errors();
    for (const auto& r : rs->items)
      out.push_back({name(), "apt-repo:" + r.name, r.where, std::make_shared<Repo>(r)});
    out.push_back({name(), "apt-repos:update", v->loc(), rs});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out{PackageManagerProbe()};
    for (const auto& r : rs) {
      if (r.id == "apt-repos:distro") {
        for (const auto& p : kDistroSources) out.push_back(FileProbe(p));
      } else if (r.id == "apt-repos:update") {
        out.push_back(FileProbe(kStamp));
        out.push_back(kLabfleetAptFiles.probe());
      } else {
        out.push_back(FileProbe(SourcesPath(r.as<Repo>().name)));
        out.push_back(FileProbe(KeyPath(r.as<Repo>().name)));
      }
    }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    if (PackageManagerOf(results) != "apt")
      return Noop("nothing to do because this node does not use apt (apt_repos applies to apt nodes)");
    if (r.id == "apt-repos:update") return DiffUpdate(r.as<Repos>(), results);
    if (r.id == "apt-repos:distro") {
      auto in_use = DistroSourcesInUse(results);
      if (in_use.empty()) return Noop("nothing to do because the distribution's own apt sources are already set aside for package_mirror.apt");
      DiffResult d;
      d.changes.push_back(MoveDistroSourcesChange(in_use));
      return d;
    }
    const Repo& repo = r.as<Repo>();
    DiffResult d = DiffFile({KeyPath(repo.name), repo.key, 0644, "root", "root"},
                            ParseFileProbe(results, KeyPath(repo.name)), "apt key " + KeyPath(repo.name),
                            /*show_diff=*/false);
    DiffResult s = DiffFile({SourcesPath(repo.name), SourcesText(repo), 0644, "root", "root"},
                            ParseFileProbe(results, SourcesPath(repo.name)), "apt source " + SourcesPath(repo.name));
    for (auto& c : s.changes) d.changes.push_back(std::move(c));
    for (auto& w : s.warnings) d.warnings.push_back(std::move(w));
    if (d.changes.empty()) d.noop = "nothing to do because the source and key of apt repository " + repo.name + " are up to date";
    return d;
  }

 private:
  static DiffResult DiffUpdate(const Repos& rs, const ProbeResults& results) {
    // Defensive (validate refuses such an inventory first): a repository that could not be read must not look
    // undeclared, or its files would be removed.
    if (!rs.complete) return Failure("an apt_repos entry could not be read (run labfleet validate); nothing is removed");
    DiffResult d;
    const ProbeOutput* lf = FindProbe(results, kLabfleetAptFiles.name);
    std::set<std::string> want;
    for (const auto& r : rs.items) want.insert(SourcesPath(r.name)), want.insert(KeyPath(r.name));
    std::vector<std::string> changed;
    if (lf)
      for (const auto& p : results.fact(kLabfleetAptFiles).paths) {
        if (want.count(p)) continue;
        Change c;
        c.kind = Change::Kind::Remove;
        c.sign = '-';
        c.path = p;
        c.summary = "apt: remove " + p;
        c.reason = "no apt repository of that name is declared in apt_repos";
        d.changes.push_back(std::move(c));
        changed.push_back(p);
      }
    for (const auto& r : rs.items)
      for (const auto& [path, bytes] : {std::pair{SourcesPath(r.name), SourcesText(r)}, std::pair{KeyPath(r.name), r.key}}) {
        FileState st = ParseFileProbe(results, path);
        if (!st.exists || !st.content_read || st.content != bytes) changed.push_back(path);
      }
    FileState stamp = ParseFileProbe(results, kStamp);
    std::string hash = ReposHash(rs);
    bool recorded = stamp.exists && stamp.content == hash + "\n";
    // Nothing declared, nothing left to remove, never updated for: nothing is owed.
    if (rs.items.empty() && changed.empty() && !stamp.exists)
      return Noop("nothing to do because no apt repository is declared and none of labfleet's is left on the node");
    if (recorded && changed.empty())
      return Noop("nothing to do because the package lists were updated after the apt repositories last changed");
    Change u;
    u.sign = '~';
    u.summary = "apt-get update (apt_repos changed)";
    u.reason = changed.empty() ? "no successful apt-get update is recorded since the apt repositories were written "
                                 "(a previous one failed or was interrupted)"
                               : "changed: " + Join(changed, ", ");
    Script s;
    // --error-on=any: a repository that cannot be fetched or verified (a wrong key) fails the change, and the
    // update stays owed (the record is written only after a successful update).
    s.add(AptGet("update").arg("--error-on=any"));
    s.raw(Cmd("printf").arg("%s\\n").arg(hash).str() + " > " + ShellQuote(std::string(kStamp) + ".tmp"));
    s.add(Cmd("mv").arg("-f").arg(std::string(kStamp) + ".tmp").arg(kStamp));
    u.command = s.str();
    d.changes.push_back(std::move(u));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<AptReposModule>());

}  // namespace
}  // namespace labfleet
