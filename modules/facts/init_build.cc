#include "modules/facts/init_build.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "modules/facts/accounts.h"
#include "engine/cidr.h"
#include "modules/facts/init_yaml.h"
#include "engine/inventory.h"
#include "modules/facts/nvidia_facts.h"
#include "modules/facts/package_facts.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

bool InitNameOk(const std::string& s) {
  static const std::regex re("^[a-z_][a-z0-9_-]*[$]?$");
  return !s.empty() && s.size() <= 32 && std::regex_match(s, re);
}

bool InitNodeNameOk(const std::string& s) {
  static const std::regex re("^[A-Za-z0-9][A-Za-z0-9._-]*$");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

namespace {

// Markers of the blocks labfleet owns; they must stay equal to modules/hosts.cc and modules/mounts.cc (the
// integration test plans a written inventory, which proves it).
constexpr const char* kHostsBegin = "# BEGIN labfleet managed block: edits inside are overwritten";
constexpr const char* kHostsEnd = "# END labfleet managed block";
constexpr const char* kFstabBegin = "# BEGIN labfleet mounts: edits inside are overwritten";
constexpr const char* kFstabEnd = "# END labfleet mounts";
constexpr const char* kSshdHeader = "# Managed by labfleet from the inventory; edits here are overwritten.\n";
constexpr const char* kDefaultSshdDropin = "/etc/ssh/sshd_config.d/50-labfleet.conf";
const std::set<std::string> kSshdRepeatable = {"Port", "ListenAddress", "HostKey", "AcceptEnv", "HostCertificate",
                                               "Subsystem", "SetEnv"};

// Votes of nodes for values; nodes are added in name order.
struct Vote {
  std::map<std::string, std::vector<std::string>> by_value;
  void add(const std::string& node, const std::string& value) { by_value[value].push_back(node); }
  // Majority first; ties: the value whose first node comes first in name order.
  std::vector<ConflictSide> sides() const {
    std::vector<ConflictSide> out;
    for (const auto& [v, ns] : by_value) out.push_back({v, ns});
    std::sort(out.begin(), out.end(), [](const ConflictSide& a, const ConflictSide& b) {
      if (a.nodes.size() != b.nodes.size()) return a.nodes.size() > b.nodes.size();
      return a.nodes.front() < b.nodes.front();
    });
    return out;
  }
  std::string winner() const { return sides().front().value; }
  bool split() const { return by_value.size() > 1; }
};

std::string Nodes(const std::vector<std::string>& ns) { return Join(ns, ", "); }

// A value for messages and Markdown: control characters escaped, bounded.
std::string Show(const std::string& s) {
  std::string e = EscapeControls(s, false, true);
  if (e.size() > 200) e = e.substr(0, 197) + "...";
  return e;
}

struct Acct {
  PasswdEntry p;
  long long expire = -1;
};

struct NodeAccounts {
  Parsed<PasswdEntry> passwd;
  Parsed<GroupEntry> group;
  Parsed<ShadowEntry> shadow;
  Parsed<SubIdEntry> subuid, subgid;
  std::map<long long, std::string> group_by_gid;
};

std::string Fix(const std::vector<std::string>& nodes, const std::string& commands) {
  return "on " + Nodes(nodes) + ": " + commands;
}

// "type base64 comment" lines, each valid for the inventory, and the file exactly as ssh_keys writes it.
bool CanonicalKeys(const std::string& content, std::vector<std::string>& keys, std::string& why) {
  if (content.size() > kInitMaxKeysFile) {
    why = "larger than " + std::to_string(kInitMaxKeysFile) + " bytes";
    return false;
  }
  keys.clear();
  for (const auto& line : SplitLines(content)) {
    SyntaxError e;
    if (line.empty() || line[0] == '#') {
      why = "has blank or comment lines that labfleet's file would drop";
      return false;
    }
    if (!YamlTextProblem(line).empty() || !ParseSshPublicKey(line, &e)) {
      why = "has a line labfleet does not accept as a key (" + (e.what.empty() ? YamlTextProblem(line) : e.code) +
            "; options such as from=\"...\" are not managed)";
      return false;
    }
    keys.push_back(line);
  }
  std::string again;
  for (const auto& k : keys) again += k + "\n";
  if (again != content) {
    why = "is not in the form labfleet writes (one key per line, each ending in a newline)";
    return false;
  }
  return true;
}

std::string KeysShow(const std::string& v) {
  if (v.rfind("#", 0) == 0) return v.substr(1);
  std::vector<std::string> names;
  for (const auto& l : SplitLines(v)) {
    auto w = SplitWords(l, " \t");
    names.push_back(w.size() >= 3 ? w[2] : w.size() >= 2 ? w[1].substr(0, 12) + "..." : "?");
  }
  return Counted(names.size(), "key", "keys") + " (" + Show(Join(names, ", ")) + ")";
}

// The lines between BEGIN and END markers; nullopt without a complete block. `outside`: the other lines.
std::optional<std::vector<std::string>> Block(const std::string& text, const std::string& begin,
                                              const std::string& end, std::vector<std::string>* outside) {
  std::vector<std::string> in;
  int state = 0;  // 0 before, 1 inside, 2 after
  for (const auto& l : SplitLines(text)) {
    if (state == 0 && l.rfind(begin.substr(0, begin.find(':')), 0) == 0) {
      state = 1;
      continue;
    }
    if (state == 1 && l == end) {
      state = 2;
      continue;
    }
    if (state == 1) in.push_back(l);
    else if (outside) outside->push_back(l);
  }
  if (state != 2) return std::nullopt;
  return in;
}

std::string FstabUnescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit((unsigned char)s[i + 1]) &&
        std::isdigit((unsigned char)s[i + 2]) && std::isdigit((unsigned char)s[i + 3])) {
      out += char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// One fstab line as a mounts: entry, or nullopt (with why) when a field would not pass the inventory's checks.
std::optional<YNode> MountEntry(const std::string& line, std::string& why) {
  auto w = SplitWords(line, " \t");
  if (w.size() < 4) {
    why = "fewer than 4 fields";
    return std::nullopt;
  }
  std::string src = FstabUnescape(w[0]), target = FstabUnescape(w[1]), type = w[2];
  for (const auto* s : {&src, &target, &type})
    if (auto p = YamlTextProblem(*s); !p.empty()) {
      why = "a field " + p;
      return std::nullopt;
    }
  PathResult pr = NormalizeAbsolutePath(target);
  if (pr.error || pr.path != target) {
    why = "target " + Quoted(target) + " is not a plain absolute path";
    return std::nullopt;
  }
  YNode m = YNode::Map(true);
  m.set("source", YNode::Str(src));
  m.set("target", YNode::Str(target));
  m.set("type", YNode::Str(type));
  YNode opts = YNode::Seq(true);
  for (const auto& o : Split(w[3], ',')) {
    if (o.empty() || !YamlTextProblem(o).empty()) {
      why = "an empty or unreadable option";
      return std::nullopt;
    }
    opts.push(YNode::Str(o));
  }
  m.set("options", opts);
  return m;
}

// The sshd drop-in as the inventory's sshd: map, when the file is exactly what labfleet would write from it.
std::optional<YNode> SshdSettings(const std::string& content, std::string& why) {
  std::vector<std::pair<std::string, std::vector<std::string>>> kv;
  for (const auto& l : SplitLines(content)) {
    std::string t = TrimChars(l, " \t");
    if (t.empty() || t[0] == '#') continue;
    auto sp = t.find_first_of(" \t");
    std::string k = t.substr(0, sp), v = sp == std::string::npos ? "" : TrimChars(t.substr(sp), " \t");
    if (k == "Match" || k == "Include") {
      why = "has a " + k + " block";
      return std::nullopt;
    }
    if (v.empty() || !YamlTextProblem(k).empty() || !YamlTextProblem(v).empty() || !InitNodeNameOk(k)) {
      why = "has a line that is not 'Keyword value'";
      return std::nullopt;
    }
    bool found = false;
    for (auto& [kk, vs] : kv)
      if (kk == k) {
        if (!kSshdRepeatable.count(k)) {
          why = "sets " + k + " twice";
          return std::nullopt;
        }
        vs.push_back(v);
        found = true;
      }
    if (!found) kv.push_back({k, {v}});
  }
  std::string rendered = kSshdHeader;
  YNode m = YNode::Map();
  for (const auto& [k, vs] : kv) {
    for (const auto& v : vs) rendered += k + " " + v + "\n";
    if (vs.size() == 1) m.set(k, YNode::Str(vs[0]));
    else {
      YNode s = YNode::Seq(true);
      for (const auto& v : vs) s.push(YNode::Str(v));
      m.set(k, s);
    }
  }
  if (rendered != content) {
    why = "was not written by labfleet (its text differs from what labfleet would write for the same values, "
          "e.g. comments or spacing)";
    return std::nullopt;
  }
  return m;
}

// daemon.json as the inventory's docker: map; nullopt (why) for what the docker settings cannot say exactly.
std::optional<YNode> DockerSettings(const std::string& content, std::string& why) {
  auto j = nlohmann::json::parse(content, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    why = "is not a JSON object";
    return std::nullopt;
  }
  auto str = [](const nlohmann::json& v) { return v.is_string() && YamlTextProblem(v.get<std::string>()).empty(); };
  auto strs = [&](const nlohmann::json& v) {
    if (!v.is_array()) return false;
    for (const auto& i : v)
      if (!str(i)) return false;
    return true;
  };
  auto seq = [](const nlohmann::json& v) {
    YNode s = YNode::Seq(true);
    for (const auto& i : v) s.push(YNode::Str(i.get<std::string>()));
    return s;
  };
  YNode d = YNode::Map(), extra = YNode::Map();
  bool nvidia_runtime = false;
  for (const auto& [k, v] : j.items()) {
    auto bad = [&](const std::string& what) {
      why = "key \"" + Show(k) + "\" " + what;
      return std::nullopt;
    };
    if (k == "data-root") {
      if (!str(v)) return bad("is not a string");
      d.set("data_root", YNode::Str(v.get<std::string>()));
    } else if (k == "default-address-pools") {
      YNode pools = YNode::Seq();
      if (!v.is_array()) return bad("is not a list");
      for (const auto& p : v) {
        if (!p.is_object() || p.size() != 2 || !p.contains("base") || !p.contains("size") || !str(p["base"]) ||
            !p["size"].is_number_integer())
          return bad("holds a pool other than {base, size}");
        YNode m = YNode::Map(true);
        m.set("base", YNode::Str(p["base"].get<std::string>()));
        m.set("size", YNode::Int(p["size"].get<long long>()));
        pools.push(m);
      }
      d.set("address_pools", pools);
    } else if (k == "bip" || k == "default-runtime" || k == "log-driver" || k == "storage-driver") {
      if (!str(v)) return bad("is not a string");
      std::string key = k;
      std::replace(key.begin(), key.end(), '-', '_');
      d.set(key, YNode::Str(v.get<std::string>()));
    } else if (k == "registry-mirrors" || k == "insecure-registries" || k == "dns") {
      if (!strs(v)) return bad("is not a list of strings");
      std::string key = k;
      std::replace(key.begin(), key.end(), '-', '_');
      d.set(key, seq(v));
    } else if (k == "log-opts") {
      if (!v.is_object()) return bad("is not a map");
      YNode m = YNode::Map();
      for (const auto& [ok, ov] : v.items()) {
        if (!str(ov) || !YamlTextProblem(ok).empty()) return bad("holds a value that is not a string");
        m.set(ok, YNode::Str(ov.get<std::string>()));
      }
      d.set("log_opts", m);
    } else if (k == "mtu") {
      if (!v.is_number_integer()) return bad("is not an integer");
      d.set("mtu", YNode::Int(v.get<long long>()));
    } else if (k == "live-restore") {
      if (!v.is_boolean()) return bad("is not a boolean");
      d.set("live_restore", YNode::Bool(v.get<bool>()));
    } else if (k == "runtimes") {
      if (v != NvidiaDockerRuntime() && v != nlohmann::json{{"nvidia", NvidiaDockerRuntime()["nvidia"]}})
        return bad("registers runtimes other than labfleet's nvidia runtime");
      nvidia_runtime = true;
    } else {
      if (!YamlTextProblem(k).empty()) return bad("is not readable text");
      if (v.is_string() && str(v)) extra.set(k, YNode::Str(v.get<std::string>()));
      else if (v.is_boolean()) extra.set(k, YNode::Bool(v.get<bool>()));
      else if (v.is_number_integer()) extra.set(k, YNode::Int(v.get<long long>()));
      else return bad("has a value other than a string, an integer or a boolean (not written under extra:)");
    }
  }
  if (nvidia_runtime) {
    const YNode* rt = d.find("default_runtime");
    if (!rt || rt->text() != "nvidia") {
      why = "registers the nvidia runtime without making it the default (that is nvidia.container_toolkit, not read "
            "yet)";
      return std::nullopt;
    }
  }
  if (!extra.empty()) d.set("extra", extra);
  return d;
}

// /etc/systemd/system/docker.service.d/proxy.conf as the docker settings' proxy: map, when the file is exactly
// what labfleet writes for it (modules/docker.cc ProxyDropin).
std::optional<YNode> DockerProxy(const std::string& content, std::string& why) {
  const std::string head = std::string(kSshdHeader) + "[Service]\n";
  why = "is not in the form labfleet writes (its header, [Service], Environment=\"HTTP_PROXY=...\" lines)";
  if (content.rfind(head, 0) != 0) return std::nullopt;
  std::map<std::string, std::string> env;
  std::string rendered = head;
  for (const auto& l : SplitLines(content.substr(head.size()))) {
    const std::string pre = "Environment=\"";
    if (l.rfind(pre, 0) != 0 || l.size() < pre.size() + 2 || l.back() != '"') return std::nullopt;
    std::string kv = l.substr(pre.size(), l.size() - pre.size() - 1), v;
    auto eq = kv.find('=');
    if (eq == std::string::npos) return std::nullopt;
    std::string k = kv.substr(0, eq), raw = kv.substr(eq + 1);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 1 < raw.size() && raw[i + 1] == '%') v += '%', ++i;
      else if (raw[i] == '\\' && i + 1 < raw.size()) v += raw[++i];
      else v += raw[i];
    }
    if ((k != "HTTP_PROXY" && k != "HTTPS_PROXY" && k != "NO_PROXY") || env.count(k) || CheckSystemdValue(v) ||
        !YamlTextProblem(v).empty())
      return std::nullopt;
    env[k] = v;
  }
  YNode p = YNode::Map(true);
  for (const auto& [k, key] : std::vector<std::pair<std::string, std::string>>{{"HTTP_PROXY", "http"}, {"HTTPS_PROXY", "https"}}) {
    if (!env.count(k)) continue;
    rendered += "Environment=\"" + k + "=" + SystemdEscape(env[k]) + "\"\n";
    p.set(key, YNode::Str(env[k]));
  }
  if (env.count("NO_PROXY")) {
    rendered += "Environment=\"NO_PROXY=" + SystemdEscape(env["NO_PROXY"]) + "\"\n";
    YNode list = YNode::Seq(true);
    for (const auto& n : Split(env["NO_PROXY"], ',')) list.push(YNode::Str(n));
    p.set("no_proxy", list);
  }
  if (rendered != content || p.empty()) return std::nullopt;
  why.clear();
  return p;
}

// A setting per node (YAML text of a YNode as the vote key), factored: the same on every node -> defaults;
// otherwise each node keeps its own.
struct Setting {
  std::string key;
  std::map<std::string, YNode> by_node;
};

}  // namespace

InitResult BuildInventory(std::vector<NodeScan> scans, const InitOptions& opts) {
  std::sort(scans.begin(), scans.end(), [](const NodeScan& a, const NodeScan& b) { return a.name < b.name; });
  InitResult r;
  std::vector<std::string> all;
  for (const auto& s : scans) all.push_back(s.name);
  auto file = [&](const NodeScan& s, const std::string& path) -> const std::string* {
    auto it = s.files.find(path);
    return it == s.files.end() ? nullptr : &it->second;
  };

  // ---- accounts ----
  std::map<std::string, NodeAccounts> acc;
  std::set<std::string> human_names;
  for (const auto& s : scans) {
    NodeAccounts& a = acc[s.name];
    a.passwd = ParsePasswd(s.passwd);
    a.group = ParseGroup(s.group);
    a.shadow = ParseShadow(s.shadow);
    if (auto* f = file(s, "/etc/subuid")) a.subuid = ParseSubIds(*f);
    if (auto* f = file(s, "/etc/subgid")) a.subgid = ParseSubIds(*f);
    for (const auto& g : a.group.in_order) a.group_by_gid.emplace(g.gid, g.name);
    for (const auto& p : a.passwd.in_order)
      if (p.uid >= opts.uid_min && p.uid < opts.uid_max) human_names.insert(p.name);
  }

  struct UserOut {
    std::string name;
    YNode node = YNode::Map();
    long long uid = -1;
    std::string primary;  // "" = personal
    std::vector<std::string> on;
  };
  std::vector<UserOut> users;
  std::set<std::string> written;  // names of users written
  auto skip = [&](const std::string& what) { r.skipped.push_back(what); };

  // First pass: which users are written (valid name, uid chosen), their presence.
  std::map<std::string, std::vector<std::string>> present;  // user -> nodes
  for (const auto& name : human_names) {
    for (const auto& s : scans) {
      auto it = acc[s.name].passwd.by_name.find(name);
      if (it != acc[s.name].passwd.by_name.end() && it->second.uid >= opts.uid_min && it->second.uid < opts.uid_max)
        present[name].push_back(s.name);
    }
    if (!InitNameOk(name)) {
      skip("user " + Quoted(name) + " on " + Nodes(present[name]) +
           ": the name is not one the inventory accepts (^[a-z_][a-z0-9_-]*[$]?$, 32 characters); rename it on the "
           "nodes (usermod -l) to manage it");
      present.erase(name);
    }
  }

  // Group membership votes: group -> user -> Vote(member / not a member), over nodes having both.
  std::map<std::string, std::map<std::string, Vote>> member_votes;
  std::set<std::string> needed_groups;  // groups the written inventory declares
  std::map<std::string, std::string> personal_of;  // personal group name -> user

  for (const auto& [name, nodes] : present) {
    Vote uid, primary, gecos, home, shell, expire, keys, subids;
    for (const auto& n : nodes) {
      const NodeAccounts& a = acc[n];
      const PasswdEntry& p = a.passwd.by_name.at(name);
      uid.add(n, std::to_string(p.uid));
      auto g = a.group_by_gid.find(p.gid);
      std::string gname = g == a.group_by_gid.end() ? "#" + std::to_string(p.gid) : g->second;
      primary.add(n, gname == name && p.gid == p.uid ? "" : gname);
      gecos.add(n, p.gecos);
      home.add(n, p.home);
      shell.add(n, p.shell);
      auto sh = a.shadow.by_name.find(name);
      expire.add(n, sh == a.shadow.by_name.end() || sh->second.expire < 0 ? "" : DateFromDays(sh->second.expire));
      const NodeScan& s = *std::find_if(scans.begin(), scans.end(), [&](const NodeScan& x) { return x.name == n; });
      auto k = s.keys.find(name);
      if (k == s.keys.end()) keys.add(n, "#not read");
      else if (k->second.rc == 0) keys.add(n, k->second.content);
      else if (k->second.rc == 3) keys.add(n, "#absent");
      else if (k->second.rc == 4) keys.add(n, "#not a regular file");
      else keys.add(n, "#unreadable (" + std::to_string(k->second.rc) + ")");
      auto su = a.subuid.by_name.find(name), sg = a.subgid.by_name.find(name);
      bool hu = su != a.subuid.by_name.end(), hg = sg != a.subgid.by_name.end();
      if (!hu && !hg) subids.add(n, "");
      else if (hu && hg && su->second.start == sg->second.start && su->second.count == sg->second.count)
        subids.add(n, std::to_string(su->second.start) + ":" + std::to_string(su->second.count));
      else subids.add(n, "#different");
      for (const auto& gr : a.group.in_order)
        if (gr.name != gname) {
          bool m = std::find(gr.members.begin(), gr.members.end(), name) != gr.members.end();
          if (m) needed_groups.insert(gr.name);
          member_votes[gr.name][name].add(n, m ? "member" : "not a member");
        }
    }
    UserOut u;
    u.name = name;
    u.on = nodes;
    u.uid = std::stoll(uid.winner());
    const std::string subject = "user " + name;
    auto conflict = [&](const std::string& kind, const std::string& field, const Vote& v,
                        const std::function<std::string(const std::string&)>& show,
                        const std::function<std::string(const ConflictSide& minority)>& fix) {
      if (!v.split()) return;
      Conflict c{kind, subject, field, v.sides(), {}, {}};
      if (kind == "uid") c.resources = {"user:" + name, "group:" + name, "ssh_keys:" + name, "subids:*"};
      else if (kind == "keys") c.resources = {"ssh_keys:" + name};
      else if (kind == "subids") c.resources = {"subids:*"};
      else c.resources = {"user:" + name};
      for (auto& side : c.sides) side.value = show(side.value);
      auto raw = v.sides();
      for (size_t i = 1; i < raw.size(); ++i)
        if (auto f = fix(raw[i]); !f.empty()) c.fix.push_back(Fix(raw[i].nodes, f));
      r.conflicts.push_back(std::move(c));
    };
    auto same = [](const std::string& s) { return Show(s); };
    auto orNone = [](const std::string& s) { return s.empty() ? std::string("(none)") : Show(s); };
    const std::string q = ShellQuote(name), nu = std::to_string(u.uid);
    conflict("uid", "uid", uid, same, [&](const ConflictSide& m) {
      std::string old = m.value;
      std::string f = Cmd("usermod").arg("-u").arg(nu).arg(name).str() + " && " +
                      Cmd("find").arg("/").arg("-xdev").arg("-uid").arg(old).arg("-exec").arg("chown").arg("-h")
                          .arg(nu).raw("{} +").str();
      if (primary.winner().empty())
        f += " && " + Cmd("groupmod").arg("-g").arg(nu).arg(name).str() + " && " +
             Cmd("find").arg("/").arg("-xdev").arg("-gid").arg(old).arg("-exec").arg("chgrp").arg("-h").arg(nu)
                 .raw("{} +").str();
      return f + "   # as root, while " + name + " has no processes (pgrep -u " + old + ")";
    });
    if (uid.split())
      for (const auto& n : nodes)  // the chosen uid held by another account on that node: the plan refuses it
        for (const auto& p : acc[n].passwd.in_order)
          if (p.uid == u.uid && p.name != name)
            r.conflicts.push_back({"uid", subject, "uid " + nu + " is taken",
                                   {{"held by " + Show(p.name), {n}}},
                                   {Fix({n}, "give " + Show(p.name) + " or " + name + " another uid (usermod -u) first")},
                                   {"user:" + name}});
    conflict("field", "primary group", primary, [&](const std::string& s) { return s.empty() ? "(personal group " + name + ")" : Show(s); },
             [&](const ConflictSide&) { return Cmd("usermod").arg("-g").arg(primary.winner().empty() ? name : primary.winner()).arg(name).str(); });
    conflict("field", "full name", gecos, orNone, [&](const ConflictSide&) { return Cmd("usermod").arg("-c").arg(gecos.winner()).arg(name).str(); });
    conflict("field", "home", home, same, [&](const ConflictSide&) { return Cmd("usermod").arg("-d").arg(home.winner()).arg(name).str() + "   # moves nothing"; });
    conflict("field", "shell", shell, same, [&](const ConflictSide&) { return Cmd("usermod").arg("-s").arg(shell.winner()).arg(name).str(); });
    conflict("field", "expires", expire, [](const std::string& s) { return s.empty() ? std::string("never") : s; },
             [&](const ConflictSide&) { return Cmd("usermod").arg("-e").arg(expire.winner()).arg(name).str(); });
    conflict("keys", "authorized_keys", keys, KeysShow, [&](const ConflictSide&) {
      return "labfleet apply writes the majority's file (or copy it to ~" + name + "/.ssh/authorized_keys)";
    });
    conflict("subids", "subuid/subgid range", subids, orNone, [&](const ConflictSide&) {
      return std::string("labfleet apply writes the chosen range to /etc/subuid and /etc/subgid");
    });

    // Validate what is written.
    std::string why;
    const std::string g = gecos.winner(), hm = home.winner(), sl = shell.winner();
    if (auto e = CheckGecos(g)) why = "full name " + Quoted(g) + " " + e->what;
    else if (auto p = YamlTextProblem(g); !p.empty()) why = "full name " + p;
    for (const auto* path : {&hm, &sl}) {
      PathResult pr = NormalizeAbsolutePath(*path);
      if (why.empty() && (pr.error || pr.path != *path || !YamlTextProblem(*path).empty()))
        why = Quoted(*path) + " is not a plain absolute path";
    }
    std::string prim = primary.winner();
    if (why.empty() && prim.rfind("#", 0) == 0) why = "its primary group (gid " + prim.substr(1) + ") has no name";
    if (why.empty() && !prim.empty() && !InitNameOk(prim)) why = "its primary group " + Quoted(prim) + " has a name the inventory does not accept";
    if (!why.empty()) {
      skip(subject + " (on " + Nodes(nodes) + "): " + why + "; fix it on the nodes and run init again");
      continue;
    }
    u.primary = prim;
    if (!prim.empty()) needed_groups.insert(prim);
    YNode& m = u.node;
    m.set("uid", YNode::Int(u.uid));
    if (u.uid < 1000) m.set("system", YNode::Bool(true));
    if (!g.empty()) m.set("full_name", YNode::Str(g));
    if (sl != "/bin/bash") m.set("shell", YNode::Str(sl));
    if (hm != "/home/" + name) m.set("home", YNode::Str(hm));
    if (!expire.winner().empty()) m.set("expires", YNode::Str(expire.winner()));
    std::string kv = keys.winner();
    if (kv.rfind("#", 0) != 0) {
      std::vector<std::string> ks;
      // labfleet's file is 0600 in a 0700 ~/.ssh, both the user's (and the primary group's): one that is not
      // would be changed by the first apply, so it is not managed.
      std::string meta_why;
      const auto key_sides = keys.sides();
      for (const auto& n : key_sides.front().nodes) {
        const NodeScan& s = *std::find_if(scans.begin(), scans.end(), [&](const NodeScan& x) { return x.name == n; });
        const ScannedKeys& k = s.keys.at(name);
        const NodeAccounts& a = acc[n];
        auto gg = a.group_by_gid.find(a.passwd.by_name.at(name).gid);
        std::string grp = gg == a.group_by_gid.end() ? "?" : gg->second;
        std::string fm = k.file_meta;
        if (auto e = fm.find(" regular empty file"); e != std::string::npos) fm.replace(e, 19, " regular file");
        if (fm != "600 " + name + " " + grp + " regular file")
          meta_why = "is " + Show(k.file_meta.empty() ? "(unknown)" : k.file_meta) + " on " + n +
                     " (labfleet's is 600 " + name + " " + grp + ")";
        else if (k.dir_meta != "700 " + name + " " + grp + " directory")
          meta_why = "is in a ~/.ssh that is " + Show(k.dir_meta.empty() ? "(unknown)" : k.dir_meta) + " on " + n +
                     " (labfleet's is 700 " + name + " " + grp + ")";
        if (!meta_why.empty()) break;
      }
      if (!meta_why.empty()) {
        r.unmanaged.push_back("authorized_keys of " + name + " " + meta_why + ": not managed (the first apply would "
                              "chmod/chown it); fix the mode and owner on the nodes and run init again");
      } else if (CanonicalKeys(kv, ks, why)) {
        YNode seq = YNode::Seq();
        for (const auto& k : ks) seq.push(YNode::Str(k));
        m.set("ssh_keys", seq);
      } else {
        r.unmanaged.push_back("authorized_keys of " + name + " on " + Nodes(keys.sides().front().nodes) + " " + why +
                              ": not managed (labfleet leaves the file alone); to manage it, list the keys under "
                              "the user's ssh_keys:");
      }
    } else if (kv != "#absent") {
      r.unmanaged.push_back("authorized_keys of " + name + " on " + Nodes(keys.sides().front().nodes) + ": " +
                            kv.substr(1) + "; not managed");
    }
    std::string sv = subids.winner();
    if (sv == "#different") {
      r.unmanaged.push_back("subordinate ids of " + name + ": /etc/subuid and /etc/subgid give different ranges on " +
                            Nodes(subids.sides().front().nodes) + "; not managed");
    } else if (!sv.empty()) {
      auto c = sv.find(':');
      long long start = std::stoll(sv.substr(0, c)), count = std::stoll(sv.substr(c + 1));
      m.set("rootless_docker", YNode::Bool(true));
      UserDef probe;
      probe.uid = u.uid;
      SubIdRange d = SubIds(probe);
      if (d.start != start || d.count != count) {
        YNode sub = YNode::Map(true);
        sub.set("start", YNode::Int(start));
        sub.set("count", YNode::Int(count));
        m.set("subids", sub);
      }
    }
    written.insert(name);
    users.push_back(std::move(u));
  }

  // One uid, two accounts (alice on one node, bob on another): the inventory cannot hold both. The account on
  // more nodes is written (ties: name order); the other is not, and the clash is listed.
  {
    std::vector<size_t> order(users.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (users[a].on.size() != users[b].on.size()) return users[a].on.size() > users[b].on.size();
      return users[a].name < users[b].name;
    });
    std::map<long long, size_t> owner;
    std::set<size_t> drop;
    for (size_t i : order) {
      auto [it, fresh] = owner.emplace(users[i].uid, i);
      if (fresh) continue;
      const UserOut &keep = users[it->second], &other = users[i];
      r.conflicts.push_back({"uid", "uid " + std::to_string(other.uid), "used by two accounts",
                             {{keep.name, keep.on}, {other.name, other.on}},
                             {Fix(other.on, Cmd("usermod").arg("-u").arg("NEW_UID").arg(other.name).str() +
                                                "   # a uid free on every node; then find -uid/chown as above")},
                             {"user:" + other.name}});
      skip("user " + other.name + " (on " + Nodes(other.on) + "): uid " + std::to_string(other.uid) + " is " +
           keep.name + "'s (CONFLICTS.md); give " + other.name + " a free uid and run init again");
      drop.insert(i);
    }
    std::vector<UserOut> kept;
    for (size_t i = 0; i < users.size(); ++i)
      if (drop.count(i)) written.erase(users[i].name);
      else kept.push_back(std::move(users[i]));
    users = std::move(kept);
  }
  // gid -> who holds it in the written inventory: personal groups (gid = uid) first, then declared groups.
  std::map<long long, std::string> gid_owner;
  for (const auto& u : users)
    if (u.primary.empty()) gid_owner[u.uid] = "the personal group of " + u.name;

  // Groups: declared when a written user is in it, is a primary group, or has a gid in the range (not a written
  // user's personal group).
  for (const auto& s : scans)
    for (const auto& gr : acc[s.name].group.in_order)
      if (gr.gid >= opts.uid_min && gr.gid < opts.uid_max && !written.count(gr.name)) needed_groups.insert(gr.name);
  YNode user_groups = YNode::Map();
  std::map<std::string, std::vector<std::string>> groups_of;  // user -> groups (sorted)
  std::set<std::string> declared;
  for (const auto& gname : needed_groups) {
    Vote gid;
    for (const auto& s : scans) {
      auto it = acc[s.name].group.by_name.find(gname);
      if (it != acc[s.name].group.by_name.end()) gid.add(s.name, std::to_string(it->second.gid));
    }
    if (gid.by_value.empty()) continue;
    if (!InitNameOk(gname)) {
      skip("group " + Quoted(gname) + " on " + Nodes(gid.sides().front().nodes) +
           ": the name is not one the inventory accepts; its memberships are not managed");
      continue;
    }
    long long g = std::stoll(gid.winner());
    bool is_primary = false;
    for (const auto& u : users) is_primary |= u.primary == gname;
    if (gid.split() && g >= 1000) {
      Conflict c{"gid", "group " + gname, "gid", gid.sides(), {}, {"group:" + gname, "user:*"}};
      for (size_t i = 1; i < c.sides.size(); ++i)
        c.fix.push_back(Fix(c.sides[i].nodes,
                            Cmd("groupmod").arg("-g").arg(gid.winner()).arg(gname).str() + " && " +
                                Cmd("find").arg("/").arg("-xdev").arg("-gid").arg(c.sides[i].value).arg("-exec")
                                    .arg("chgrp").arg("-h").arg(gid.winner()).raw("{} +").str()));
      r.conflicts.push_back(std::move(c));
    }
    bool fixed_gid = g >= 1000 || is_primary;
    // A user's personal group that others are members of: declared, and the user names it as primary_group.
    for (auto& u : users)
      if (u.name == gname && u.primary.empty() && u.uid == g) {
        u.primary = gname;
        gid_owner.erase(g);
        fixed_gid = true;
      }
    if (fixed_gid) {
      auto [it, fresh] = gid_owner.emplace(g, "group " + gname);
      if (!fresh) {
        r.conflicts.push_back({"gid", "gid " + std::to_string(g), "used twice",
                               {{it->second, {}}, {"group " + gname, gid.sides().front().nodes}},
                               {Fix(gid.sides().front().nodes,
                                    Cmd("groupmod").arg("-g").arg("NEW_GID").arg(gname).str() + "   # a gid free on every node")},
                               {"group:" + gname}});
        skip("group " + gname + ": gid " + std::to_string(g) + " is also " + it->second +
             "; its memberships are not managed until one of them moves");
        continue;
      }
    }
    YNode d = YNode::Map(true);
    if (fixed_gid) d.set("gid", YNode::Int(g));
    if (g < 1000) d.set("system", YNode::Bool(true));
    user_groups.set(gname, d);
    declared.insert(gname);
    for (const auto& [user, vote] : member_votes[gname]) {
      if (!written.count(user)) continue;
      if (vote.winner() == "member") groups_of[user].push_back(gname);
      if (vote.split()) {
        Conflict c{"membership", "group " + gname, "membership of " + user, vote.sides(), {}, {"user:" + user}};
        bool add = vote.winner() == "member";
        for (size_t i = 1; i < c.sides.size(); ++i)
          c.fix.push_back(Fix(c.sides[i].nodes, Cmd("gpasswd").arg(add ? "-a" : "-d").arg(user).arg(gname).str()));
        r.conflicts.push_back(std::move(c));
      }
    }
  }
  r.groups = declared.size();

  YNode users_map = YNode::Map();
  for (auto& u : users) {
    YNode m = YNode::Map();
    for (const auto& e : u.node.entries()) {
      m.set(e.key, e.value);
      if (e.key == "uid") {
        if (!u.primary.empty()) m.set("primary_group", YNode::Str(u.primary));
        if (!groups_of[u.name].empty()) {
          YNode gs = YNode::Seq(true);
          for (const auto& g : groups_of[u.name]) gs.push(YNode::Str(g));
          m.set("groups", gs);
        }
      }
    }
    if (u.on != all) {
      YNode on = YNode::Seq(true);
      for (const auto& n : u.on) on.push(YNode::Str(n));
      m.set("on", on);
    }
    users_map.set(u.name, m);
  }
  r.users = users.size();

  // ---- node settings: hosts block, fstab block, docker daemon.json, sshd drop-in ----
  // Found, not managed: the same finding on several nodes is told once, naming them ("{nodes}").
  std::map<std::string, std::vector<std::string>> found_on;
  auto found = [&](const std::string& node, const std::string& text) { found_on[text].push_back(node); };
  Setting packages{"packages", {}};
  Setting hosts{"hosts", {}}, mounts{"mounts", {}}, docker{"docker", {}}, sshd{"sshd", {}}, dropin{"sshd_dropin", {}};
  for (const auto& s : scans) {
    if (!s.held.empty()) {
      YNode m = YNode::Map();
      for (const auto& p : s.held)
        if (IsPackageName(p)) m.set(p, YNode::Str("held"));
        else found(s.name, "held package " + Quoted(p) + " on {nodes}: not a package name labfleet accepts; not managed");
      if (!m.empty()) packages.by_node.emplace(s.name, m);
    }
    if (!s.nvidia_driver.empty())
      found(s.name, "NVIDIA kernel module " + s.nvidia_driver + " loaded on {nodes}: the driver is not managed yet "
                    "(nvidia: { driver: \"" + s.nvidia_driver + "\" } also holds it, blacklists nouveau and turns "
                    "persistence on: see docs/modules.md, then check with labfleet plan)");
    if (const std::string* h = file(s, "/etc/hosts")) {
      std::vector<std::string> outside;
      auto blk = Block(*h, kHostsBegin, kHostsEnd, &outside);
      if (blk) {
        YNode m = YNode::Map();
        std::string why;
        for (const auto& l : *blk) {
          auto w = SplitWords(l, " \t");
          if (w.size() < 2 || Join(w, " ") != l || !ParseIp(w[0]) || m.find(w[0])) {
            why = "line " + Quoted(l) + " is not 'ADDRESS NAME...' once per address";
            break;
          }
          YNode names = YNode::Seq(true);
          for (size_t i = 1; i < w.size(); ++i) {
            if (CheckHostName(w[i])) why = "name " + Quoted(w[i]) + " is not a host name";
            names.push(YNode::Str(w[i]));
          }
          m.set(w[0], names);
        }
        if (why.empty()) hosts.by_node.emplace(s.name, m);
        else found(s.name, "the labfleet block of /etc/hosts on {nodes}: " + why + "; not managed");
      }
      std::vector<std::string> extra;
      for (const auto& l : outside) {
        auto w = SplitWords(l, " \t");
        if (w.empty() || w[0][0] == '#' || w[0].rfind("127.", 0) == 0 || w[0] == "::1" ||
            w[0].rfind("ff0", 0) == 0 || w[0].rfind("fe00:", 0) == 0)
          continue;
        extra.push_back(Show(l));
      }
      if (!extra.empty())
        found(s.name, "/etc/hosts on {nodes} has " + Counted(extra.size(), "line", "lines") +
                              " outside labfleet's block (" + Join(extra, "; ") + "); to manage them, move them "
                              "between '" + kHostsBegin + "' and '" + kHostsEnd + "' and run init again");
    }
    if (const std::string* f = file(s, "/etc/fstab")) {
      std::vector<std::string> outside;
      YNode list = YNode::Seq();
      bool managed = true;
      auto blk = Block(*f, kFstabBegin, kFstabEnd, &outside);
      if (blk) {
        std::string why;
        for (const auto& l : *blk) {
          std::string t = TrimChars(l, " \t");
          if (t.empty() || t[0] == '#') continue;
          auto e = MountEntry(t, why);
          if (!e) break;
          list.push(*e);
        }
        if (!why.empty()) {
          found(s.name, "the labfleet block of /etc/fstab on {nodes}: " + why + "; not managed");
          managed = false;
        }
      }
      // NFS lines written by hand become mounts: too; the first apply moves each, unchanged, into labfleet's block
      // (the mounts module adopts an identical line; nothing is remounted). Listed in CONFLICTS.md.
      std::vector<std::string> adopted;
      for (const auto& l : outside) {
        auto w = SplitWords(l, " \t");
        if (w.size() < 3 || w[0][0] == '#' || (w[2] != "nfs" && w[2] != "nfs4")) continue;
        std::string why;
        // fsc makes the mounts module manage cachefilesd too (package, RUN=yes, service): not a plain adoption.
        bool fsc = false;
        if (w.size() > 3)
          for (const auto& opt : Split(w[3], ',')) fsc |= opt == "fsc";
        if (fsc) why = "its fsc option makes labfleet manage cachefilesd as well; give it as a mounts: setting to hand it over";
        if (auto e = managed && !fsc ? MountEntry(l, why) : std::nullopt) {
          list.push(*e);
          adopted.push_back("`" + Show(l) + "`");
        } else {
          found(s.name, "NFS mount in /etc/fstab on {nodes}, outside labfleet's block: `" + Show(l) + "`; not managed" +
                            (why.empty() ? std::string() : " (" + why + ")"));
        }
      }
      if (!adopted.empty())
        found(s.name, "/etc/fstab on {nodes}: " + Join(adopted, ", ") + " written by hand outside labfleet's block "
                      "became mounts:; the first apply moves " + (adopted.size() == 1 ? "it" : "them") +
                      ", unchanged, into labfleet's block (plan: `~ fstab block in /etc/fstab (...; adopted into "
                      "labfleet's block ...)`); nothing is remounted");
      if (managed && (blk || !list.items().empty())) mounts.by_node.emplace(s.name, list);
    }
    if (const std::string* f = file(s, "/etc/docker/daemon.json")) {
      std::string why;
      if (f->size() > kInitMaxFile) why = "is larger than " + std::to_string(kInitMaxFile) + " bytes";
      auto d = why.empty() ? DockerSettings(*f, why) : std::nullopt;
      // labfleet's proxy drop-in: part of the docker settings (without it there, labfleet would delete the file).
      const char* proxy = "/etc/systemd/system/docker.service.d/proxy.conf";
      if (d && file(s, proxy)) {
        if (auto p = DockerProxy(*file(s, proxy), why)) d->set("proxy", *p);
        else {
          why = "is not managed because " + std::string(proxy) + " " + why;
          d.reset();
        }
      }
      if (d) docker.by_node.emplace(s.name, *d);
      else found(s.name, "/etc/docker/daemon.json on {nodes} " + why + "; not managed");
    }
    for (const auto& [path, content] : s.files) {
      if (path.rfind("/etc/systemd/system/docker.service.d/", 0) == 0 &&
          !(path == "/etc/systemd/system/docker.service.d/proxy.conf" && docker.by_node.count(s.name)))
        found(s.name, "Docker drop-in " + Show(path) + " on {nodes}" +
                              ": not managed; labfleet writes the daemon's proxy to "
                              "/etc/systemd/system/docker.service.d/proxy.conf from docker.proxy (to hand a proxy over: "
                              "give it under docker.proxy and delete this file)");
      if (path.rfind("/etc/ssh/sshd_config.d/", 0) == 0) {
        std::string why;
        auto m = SshdSettings(content, why);
        if (m && !m->empty() && !sshd.by_node.count(s.name)) {
          sshd.by_node.emplace(s.name, *m);
          if (path != kDefaultSshdDropin) dropin.by_node.emplace(s.name, YNode::Str(path));
        } else {
          found(s.name, "sshd drop-in " + Show(path) + " on {nodes}"
                              " " +
                                (why.empty() ? std::string("(a second drop-in: only one is managed)") : why) +
                                "; not managed (labfleet would rewrite it: give its values under sshd: and "
                                "sshd_dropin: " + Show(path) + " to hand it over)");
        }
      }
    }
  }

  for (const auto& [text, ns] : found_on) {
    std::string t = text;
    if (auto at = t.find("{nodes}"); at != std::string::npos) t.replace(at, 7, Nodes(ns));
    r.unmanaged.push_back(t);
  }

  // Factoring: held packages, hosts and mounts are facts of each node (same everywhere -> defaults); docker and sshd are lab
  // policy: nodes that disagree are conflicts, and the majority is written.
  YNode defaults = YNode::Map();
  std::map<std::string, YNode> node_settings;
  for (const auto& n : all) node_settings.emplace(n, YNode::Map());
  auto text = [](const YNode& v) { return EmitYaml(OneKey("v", v)); };
  // What every GPU node (at least two) has the same, and only they or also others with their own value: the group
  // `gpu` (merged after lab.defaults, before the node), else each node keeps its own.
  YNode gpu_group = YNode::Map();
  std::vector<std::string> gpu_nodes;
  for (const auto& s : scans)
    if (s.gpus > 0) gpu_nodes.push_back(s.name);
  auto place = [&](const std::string& key, const std::map<std::string, YNode>& assign) {
    bool shared = gpu_nodes.size() >= 2;
    for (const auto& n : gpu_nodes)
      shared = shared && assign.count(n) && text(assign.at(n)) == text(assign.at(gpu_nodes.front()));
    if (shared) gpu_group.set(key, assign.at(gpu_nodes.front()));
    for (const auto& [n, val] : assign)
      if (!shared || std::find(gpu_nodes.begin(), gpu_nodes.end(), n) == gpu_nodes.end())
        node_settings.at(n).set(key, val);
  };
  auto factor = [&](Setting& st, bool policy) {
    if (st.by_node.empty()) return;
    Vote v;
    std::map<std::string, YNode> by_text;
    for (const auto& [n, val] : st.by_node) {
      v.add(n, text(val));
      by_text.emplace(text(val), val);
    }
    // by_value keys are texts; nodes were added in map (name) order.
    if (!v.split() && st.by_node.size() == all.size()) {
      defaults.set(st.key, by_text.at(v.winner()));
      return;
    }
    if (policy && v.split()) {
      Conflict c{st.key, st.key, st.key + " settings", v.sides(), {}, {st.key + ":*"}};
      for (auto& side : c.sides) {
        std::string t = side.value.substr(3);
        side.value = TrimChars(t, " \n");
      }
      auto raw = v.sides();
      for (size_t i = 1; i < raw.size(); ++i)
        c.fix.push_back(Fix(raw[i].nodes, "labfleet apply writes the majority's " + st.key + " settings (review the "
                                          "plan first; or write the node's own under its node entry)"));
      r.conflicts.push_back(std::move(c));
      if (st.by_node.size() == all.size()) {
        defaults.set(st.key, by_text.at(v.winner()));
        return;
      }
      std::map<std::string, YNode> assign;
      for (auto& [n, val] : st.by_node) assign.emplace(n, by_text.at(v.winner()));
      place(st.key, assign);
      return;
    }
    place(st.key, st.by_node);
  };
  factor(packages, false);
  factor(hosts, false);
  factor(mounts, false);
  factor(docker, true);
  factor(sshd, true);
  // sshd_dropin follows sshd: the nodes that have sshd settings keep their file name.
  for (auto& [n, val] : dropin.by_node) node_settings.at(n).set("sshd_dropin", val);
  if (const YNode* sd = defaults.find("sshd")) {
    (void)sd;
    Vote v;
    for (const auto& [n, val] : dropin.by_node) v.add(n, val.text());
    if (!v.split() && dropin.by_node.size() == all.size()) {
      defaults.set("sshd_dropin", dropin.by_node.begin()->second);
      for (auto& [n, m] : node_settings) {
        YNode copy = YNode::Map();
        for (const auto& e : m.entries())
          if (e.key != "sshd_dropin") copy.set(e.key, e.value, e.comment);
        m = copy;
      }
    }
  }

  // ---- files ----
  std::string from = "Written by `labfleet init` from " + Counted(all.size(), "node", "nodes") + " (" + Nodes(all) +
                     ").\nWhat the nodes disagree on, and what was found but is not managed yet: CONFLICTS.md.";
  // lab.yaml
  YNode lab = YNode::Map();
  lab.set("name", YNode::Str(opts.lab_name));
  // Connection settings: what every node shares goes to lab.ssh, the rest to the node's own ssh:.
  YNode ssh = YNode::Map(true);
  std::map<std::string, YNode> node_ssh;
  for (const auto& n : all) node_ssh.emplace(n, YNode::Map(true));
  auto ssh_key = [&](const char* key, auto get, bool as_int, const std::string& dflt) {
    Vote v;
    for (const auto& s : scans) v.add(s.name, get(s));
    auto put = [&](YNode& m, const std::string& val) {
      if (as_int) m.set(key, YNode::Int(std::stoll(val)));
      else m.set(key, YNode::Str(val));
    };
    if (!v.split()) {
      if (v.winner() != dflt) put(ssh, v.winner());
      return;
    }
    for (const auto& s : scans)
      if (get(s) != dflt) put(node_ssh.at(s.name), get(s));
  };
  ssh_key("user", [](const NodeScan& s) { return s.ssh_user; }, false, "root");
  ssh_key("port", [](const NodeScan& s) { return std::to_string(s.port); }, true, "22");
  ssh_key("identity", [](const NodeScan& s) { return s.identity; }, false, "");
  ssh_key("jump", [](const NodeScan& s) { return s.jump; }, false, "");
  ssh_key("become", [](const NodeScan& s) { return s.become; }, false, "");
  lab.set("ssh", ssh, "How labfleet reaches every node; a node may override any of it under `ssh:`.");
  if (!defaults.empty())
    lab.set("defaults", defaults, "What every node has in the same form. Groups and nodes add to it (maps merge key by "
                                  "key; lists are replaced).");
  r.files["lab.yaml"] = EmitYaml(OneKey("lab", lab), from);

  YNode nodes = YNode::Map();
  bool any_gpu = false;
  for (const auto& s : scans) {
    YNode n = YNode::Map();
    n.set("address", YNode::Str(s.address));
    if (s.gpus > 0) {
      any_gpu = true;
      YNode g = YNode::Seq(true);
      g.push(YNode::Str("gpu"));
      n.set("groups", g);
      n.set("gpus", YNode::Int(s.gpus));
    }
    if (!node_ssh.at(s.name).empty()) n.set("ssh", node_ssh.at(s.name));
    if (!s.host_key.empty() && YamlTextProblem(s.host_key).empty())
      n.set("host_key", YNode::Str(s.host_key), "pinned: the key this node showed when init connected");
    for (const auto& e : node_settings.at(s.name).entries()) n.set(e.key, e.value);
    nodes.set(s.name, n);
  }
  r.files["nodes.yaml"] = EmitYaml(OneKey("nodes", nodes), from);
  if (any_gpu) {
    YNode groups = YNode::Map();
    groups.set("gpu", gpu_group, "Nodes with NVIDIA GPUs (/dev/nvidiaN). Settings they share go here.");
    r.files["groups.yaml"] = EmitYaml(OneKey("groups", groups), from);
  }
  if (!user_groups.empty())
    r.files["users/groups.yaml"] =
        EmitYaml(OneKey("user_groups", user_groups),
                 from + "\nGroups of the accounts below; `system: true` groups exist on the nodes already and labfleet "
                        "manages only their members.");
  if (!users_map.empty())
    r.files["users/users.yaml"] =
        EmitYaml(OneKey("users", users_map),
                 from + "\nAccounts with a uid from " + std::to_string(opts.uid_min) + " to " +
                     std::to_string(opts.uid_max - 1) + ". Passwords are not read (not managed).");
  r.files["CONFLICTS.md"] = ConflictsMarkdown(r, all);
  return r;
}

void ClassifyPlan(const InitResult& r, const std::string& node, const std::vector<Change>& changes,
                  const std::string& error, InitCheck& check) {
  auto listed_on = [&](const Conflict& c) {
    for (size_t i = 1; i < c.sides.size(); ++i)
      if (std::find(c.sides[i].nodes.begin(), c.sides[i].nodes.end(), node) != c.sides[i].nodes.end()) return true;
    return c.sides.size() == 1 &&  // "uid N is taken": one side, the node where it is taken
           std::find(c.sides[0].nodes.begin(), c.sides[0].nodes.end(), node) != c.sides[0].nodes.end();
  };
  auto matches = [](const std::string& pattern, const std::string& id) {
    if (!pattern.empty() && pattern.back() == '*') return id.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;
    return pattern == id;
  };
  if (!error.empty()) {
    bool any = false;
    for (const auto& c : r.conflicts) any |= listed_on(c);
    (any ? check.listed : check.problems).push_back(node + ": cannot be planned: " + error);
  }
  for (const auto& ch : changes) {
    std::string line = node + ": " + std::string(1, ch.sign) + " " + ch.summary;
    const std::string adopted = "(adopted: now managed by labfleet)";
    if (ch.resource.rfind("user:", 0) == 0 && ch.summary == "user " + ch.resource.substr(5) + " " + adopted) {
      check.adoptions.push_back(node + ": " + ch.resource.substr(5));
      continue;
    }
    // NFS lines written by hand, moved unchanged into labfleet's block (CONFLICTS.md says so).
    if (ch.resource == "mounts:/etc/fstab" && ch.summary.find("; adopted into labfleet's block, as written by hand: ") !=
                                                   std::string::npos) {
      check.listed.push_back(line);
      continue;
    }
    bool explained = false;
    for (const auto& c : r.conflicts)
      if (listed_on(c))
        for (const auto& p : c.resources) explained |= matches(p, ch.resource);
    (explained ? check.listed : check.problems).push_back(line);
  }
}

std::string ConflictsMarkdown(const InitResult& r, const std::vector<std::string>& nodes) {
  std::string md = "# What `labfleet init` found\n\nNodes: " + Nodes(nodes) + ".\n\n## Disagreements between nodes\n\n";
  if (r.conflicts.empty()) md += "None: every account, group and setting read is the same wherever it exists.\n";
  else
    md += "The inventory holds the first value of each (the majority; ties: the node first by name). Until the "
          "other nodes are reconciled, `labfleet plan` shows the change that would make them agree.\n";
  for (const auto& c : r.conflicts) {
    md += "\n### " + Show(c.subject) + ": " + Show(c.field) + "\n\n";
    for (size_t i = 0; i < c.sides.size(); ++i)
      md += "- " + std::string(i == 0 ? "**written**: " : "") + "`" + Show(c.sides[i].value) + "`" +
            (c.sides[i].nodes.empty() ? "" : " on " + Nodes(c.sides[i].nodes)) + "\n";
    if (!c.fix.empty()) {
      md += "\nTo reconcile:\n\n```sh\n";
      for (const auto& f : c.fix) md += "# " + EscapeControls(f.substr(0, f.find(':'))) + "\n" + f.substr(f.find(':') + 2) + "\n";
      md += "```\n";
    }
  }
  md += "\n## Found, not managed yet\n\n";
  if (r.unmanaged.empty()) md += "Nothing.\n";
  for (const auto& u : r.unmanaged) md += "- " + EscapeControls(u, true) + "\n";
  md += "\n## Not written\n\n";
  if (r.skipped.empty()) md += "Nothing.\n";
  for (const auto& s : r.skipped) md += "- " + EscapeControls(s) + "\n";
  md += "\n## Not read yet\n\nPackages other than held ones, the NVIDIA driver settings (nvidia:; the loaded version is "
        "listed above), templates and other files (files:), services, sysctl, kernel "
        "arguments, password hashes (never). Add them by hand; `labfleet plan` shows what they would change.\n";
  return md;
}

}  // namespace labfleet
