// `labfleet init`: day one on a running lab. Connects to the given nodes like every command (Connect, host keys
// as docs/transport.md says), reads each in ONE round trip (InitProbes), writes an inventory in labfleet's own
// layout (BuildInventory: engine/init_build.h) into a new directory, validates it, and then plans it against the
// same nodes: every change that plan shows must be a disagreement listed in CONFLICTS.md (or the bookkeeping
// "adopted" line of an account labfleet did not create); anything else is reported as a problem (exit 1).
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/cidr.h"
#include "engine/cli.h"
#include "engine/connect.h"
#include "engine/fleet.h"
#include "modules/facts/init_build.h"
#include "modules/facts/init_scan.h"
#include "modules/facts/init_yaml.h"
#include "engine/inventory.h"
#include "engine/planner.h"
#include "engine/ssh_transport.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "engine/yaml_load.h"

namespace labfleet {
namespace {

namespace fs = std::filesystem;

struct InitArgs {
  std::vector<std::string> nodes;  // HOST[:PORT]
  std::string from;                // a nodes.yaml (or any inventory file with nodes:)
  std::string ssh_user = "root", identity, jump;
  bool sudo = false;
  std::string output, lab_name = "lab", uid_range = "1000-59999";
  ConnectOptions copts;
};

// "host", "host:port", "[v6]:port", "v6"
bool SplitHostPort(const std::string& spec, std::string& host, int& port) {
  port = 22;
  host = spec;
  if (!spec.empty() && spec[0] == '[') {
    auto close = spec.find(']');
    if (close == std::string::npos) return false;
    host = spec.substr(1, close - 1);
    if (close + 1 == spec.size()) return true;
    if (spec[close + 1] != ':') return false;
    std::string p = spec.substr(close + 2);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    port = std::stoi(p);
  } else if (std::count(spec.begin(), spec.end(), ':') == 1) {
    auto c = spec.find(':');
    host = spec.substr(0, c);
    std::string p = spec.substr(c + 1);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    port = std::stoi(p);
  }
  return !host.empty() && port >= 1 && port <= 65535 && (IsHostName(host) || ParseIp(host));
}

bool ParseRange(const std::string& s, long long& lo, long long& hi) {
  auto d = s.find('-');
  if (d == std::string::npos) return false;
  std::string a = s.substr(0, d), b = s.substr(d + 1);
  if (a.empty() || b.empty() || a.size() > 10 || b.size() > 10 || a.find_first_not_of("0123456789") != std::string::npos ||
      b.find_first_not_of("0123456789") != std::string::npos)
    return false;
  lo = std::stoll(a);
  hi = std::stoll(b) + 1;  // the range is inclusive on the command line
  return lo < hi;
}

// The inventory used only to connect: --nodes and the ssh options, or the --from file as it is.
std::optional<Inventory> ConnectInventory(CommandContext& ctx, const InitArgs& a) {
  Findings f;
  Inventory inv;
  if (!a.from.empty()) {
    std::ifstream in(a.from, std::ios::binary);
    if (!in) {
      ctx.reporter.error("init: cannot read --from " + a.from + "; give a nodes.yaml (the `nodes:` section of an inventory)");
      return std::nullopt;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A nodes.yaml alone has no lab: section; the loader wants one (its name is not used here).
    Findings pf;
    Value top = ParseYaml(text, a.from, pf);
    std::vector<SourceFile> files = {{a.from, text}};
    if (!top.is_map() || !top.find("lab")) files.push_back({"<init>", "lab: { name: init }\n"});
    inv = LoadInventory(files, f);
  } else {
    YNode lab = YNode::Map(), ssh = YNode::Map(), nodes = YNode::Map();
    lab.set("name", YNode::Str("init"));
    ssh.set("user", YNode::Str(a.ssh_user));
    if (!a.identity.empty()) ssh.set("identity", YNode::Str(a.identity));
    if (!a.jump.empty()) ssh.set("jump", YNode::Str(a.jump));
    if (a.sudo) ssh.set("become", YNode::Str("sudo"));
    lab.set("ssh", ssh);
    for (size_t i = 0; i < a.nodes.size(); ++i) {
      std::string host;
      int port;
      if (!SplitHostPort(a.nodes[i], host, port)) {
        ctx.reporter.error("init: --nodes " + Quoted(a.nodes[i]) + " is not HOST or HOST:PORT ([v6]:PORT for IPv6)");
        return std::nullopt;
      }
      YNode n = YNode::Map(), np = YNode::Map();
      n.set("address", YNode::Str(host));
      np.set("port", YNode::Int(port));
      n.set("ssh", np);
      nodes.set("n" + std::to_string(i + 1), n);
    }
    YNode root = YNode::Map();
    root.set("lab", lab);
    root.set("nodes", nodes);
    inv = LoadInventory({{"<init --nodes>", EmitYaml(root)}}, f);
  }
  if (inv.nodes.empty())
    f.error({a.from.empty() ? "<init --nodes>" : a.from}, "init-no-nodes", "no nodes to read; give --nodes or --from");
  if (f.has_errors()) {
    f.sort();
    ctx.reporter.findings(f);
    ctx.reporter.error("init: the nodes to read are not valid; fix the --nodes/--ssh-* options or the --from file");
    return std::nullopt;
  }
  return inv;
}

nlohmann::json ConflictJson(const Conflict& c) {
  nlohmann::json sides = nlohmann::json::array();
  for (const auto& s : c.sides) sides.push_back({{"value", s.value}, {"nodes", s.nodes}});
  return {{"kind", c.kind}, {"subject", c.subject}, {"field", c.field}, {"sides", sides}, {"fix", c.fix}};
}

int Run(CommandContext& ctx, InitArgs& a) {
  Reporter& rep = ctx.reporter;
  InitOptions io;
  io.lab_name = a.lab_name;
  if (!ParseRange(a.uid_range, io.uid_min, io.uid_max)) {
    rep.error("init: --uid-range " + Quoted(a.uid_range) + " must be MIN-MAX (inclusive), e.g. 1000-59999");
    return kExitUsage;
  }
  if (!InitNameOk(a.lab_name) && !InitNodeNameOk(a.lab_name)) {
    rep.error("init: --lab-name " + Quoted(a.lab_name) + " must be letters, digits, '.', '-' or '_'");
    return kExitUsage;
  }
  if (a.nodes.empty() == a.from.empty()) {
    rep.error("init: give the nodes to read with --nodes HOST[:PORT],... or --from nodes.yaml (one of them)");
    return kExitUsage;
  }
  if (a.output.empty()) {
    rep.error("init: -o DIR must name a new directory for the inventory");
    return kExitUsage;
  }
  std::error_code ec;
  if (fs::exists(a.output, ec) && !(fs::is_directory(a.output, ec) && fs::is_empty(a.output, ec))) {
    rep.error("init: " + a.output + " exists and is not an empty directory; give a new directory with -o (init never "
              "overwrites an inventory)");
    return kExitUsage;
  }
  auto cinv = ConnectInventory(ctx, a);
  if (!cinv) return kExitUsage;

  // Read every node: one connection, one probe round trip each.
  std::vector<const NodeDef*> nodes = cinv->select({});
  std::vector<NodeScan> scans(nodes.size());
  std::vector<std::string> errors(nodes.size()), notes(nodes.size());
  const auto probes = InitProbes(io.uid_min, io.uid_max);
  ForEachNode(nodes, a.copts.parallel, [&](size_t i, const NodeDef& node) {
    NodeScan& s = scans[i];
    SshSettings ssh = cinv->ssh(node);
    s.address = node.address;
    s.port = ssh.port;
    s.ssh_user = ssh.user;
    s.identity = ssh.identity;
    s.jump = ssh.jump;
    s.become = ssh.become;
    s.name = node.name;
    try {
      auto t = Connect(*cinv, node, a.copts);
      notes[i] = t->notes();
      if (auto* st = dynamic_cast<SshTransport*>(t.get())) s.host_key = st->host_key();
      std::string nonce = NewNonce();
      RunResult r = t->run_script(BuildProbeScript(probes, nonce));
      ParseInitResults(ParseProbeOutput(r.out, probes, nonce), s);
    } catch (const std::exception& e) {
      errors[i] = e.what();
    }
  });
  bool failed = false;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (!errors[i].empty()) {
      failed = true;
      rep.error("init: " + nodes[i]->name + " (" + nodes[i]->address + "): " + errors[i]);
    }
  for (const auto& n : notes)
    if (!n.empty()) rep.note(n);
  if (failed) {
    rep.error("init: nothing written: an inventory read from part of the lab would be wrong; make every node reachable "
              "(or leave the unreachable ones out of --nodes) and run init again");
    return kExitNodesFailed;
  }
  // Names: --from keeps its names; --nodes takes each node's own host name when valid and unique, else the address.
  if (a.from.empty()) {
    std::map<std::string, int> count;
    for (const auto& s : scans) count[s.hostname]++;
    std::set<std::string> used;
    for (auto& s : scans) {
      std::string name = s.hostname;
      if (!InitNodeNameOk(name) || count[name] > 1) {
        name = s.address;
        for (char& c : name)
          if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
        if (s.port != 22) name += "-" + std::to_string(s.port);
      }
      if (used.count(name)) {
        rep.error("init: two nodes would both be named " + name + "; give them distinct host names or addresses");
        return kExitUsage;
      }
      used.insert(name);
      s.name = name;
    }
  }
  for (const auto& s : scans)
    for (const auto& p : s.problems) rep.note("init: " + s.name + ": " + p);

  InitResult res = BuildInventory(scans, io);
  // Write.
  for (const auto& [rel, text] : res.files) {
    fs::path p = fs::path(a.output) / rel;
    fs::create_directories(p.parent_path(), ec);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
      rep.error("init: cannot write " + p.string() + "; check the directory's permissions and free space");
      return kExitErrors;
    }
  }
  std::vector<std::string> names;
  for (const auto& s : scans) names.push_back(s.name);
  std::sort(names.begin(), names.end());

  // Validate what was written, then plan it against the same nodes.
  Findings f;
  Inventory inv = LoadInventoryDir(a.output, f);
  if (!f.has_errors()) ValidateInventory(inv, f);
  f.sort();
  InitCheck check;
  std::vector<std::string> warnings;  // what the check plan prints under nodes (e.g. a refused file)
  bool valid = !f.has_errors();
  if (valid) {
    ConnectOptions copts = a.copts;
    auto runs = PlanAll(inv.select({}), copts.parallel, RealFleetOps(inv, copts, {}), nullptr);
    for (const auto& run : runs) {
      std::string err = run.plan.error;
      if (!run.plan.reachable && err.empty()) err = "unreachable";
      // Deferred changes (a busy node) are changes all the same.
      std::vector<Change> all = run.plan.changes;
      all.insert(all.end(), run.plan.deferred.begin(), run.plan.deferred.end());
      ClassifyPlan(res, run.plan.node, all, err, check);
      for (const auto& w : run.plan.warnings) warnings.push_back(run.plan.node + ": " + w.text);
    }
  }

  std::vector<std::string> files;
  for (const auto& [rel, text] : res.files) files.push_back(rel);
  if (rep.json()) {
    auto& d = rep.doc();
    d["output"] = a.output;
    d["nodes"] = names;
    d["files"] = files;
    d["users"] = res.users;
    d["groups"] = res.groups;
    d["conflicts"] = nlohmann::json::array();
    for (const auto& c : res.conflicts) d["conflicts"].push_back(ConflictJson(c));
    d["unmanaged"] = res.unmanaged;
    d["skipped"] = res.skipped;
    d["valid"] = valid;
    d["check"] = {{"adoptions", check.adoptions}, {"listed", check.listed}, {"problems", check.problems},
                  {"warnings", warnings}};
    std::vector<std::string> read_problems;
    for (const auto& s : scans)
      for (const auto& p : s.problems) read_problems.push_back(s.name + ": " + p);
    d["read_problems"] = read_problems;
    if (!valid) rep.findings(f);
  } else {
    rep.line("init: read " + Counted(names.size(), "node", "nodes") + " (" + Join(names, ", ") + "): " +
             Counted(res.users, "account", "accounts") + ", " + Counted(res.groups, "group", "groups"));
    rep.line("wrote " + a.output + "/: " + Join(files, ", "));
    if (!res.conflicts.empty()) {
      rep.line("");
      rep.line(Counted(res.conflicts.size(), "disagreement", "disagreements") + " between nodes (the first value is "
               "written; CONFLICTS.md has the commands to reconcile):");
      for (const auto& c : res.conflicts) {
        std::string sides;
        for (const auto& s : c.sides)
          sides += (sides.empty() ? "" : " | ") + s.value + (s.nodes.empty() ? "" : " on " + Join(s.nodes, ", "));
        rep.line("  " + c.subject + ": " + c.field + ": " + sides);
        for (const auto& fx : c.fix) rep.line("    " + fx);
      }
    }
    if (!res.unmanaged.empty()) {
      rep.line("");
      rep.line("found, not managed yet (" + std::to_string(res.unmanaged.size()) + "; details in CONFLICTS.md):");
      for (const auto& u : res.unmanaged) rep.line("  " + u.substr(0, u.find('\n')));
    }
    if (!res.skipped.empty()) {
      rep.line("");
      rep.line("not written (" + std::to_string(res.skipped.size()) + "):");
      for (const auto& s : res.skipped) rep.line("  " + s);
    }
    rep.line("");
    if (!valid) {
      rep.findings(f);
    } else {
      rep.line("check: `labfleet plan` of " + a.output + " against the same nodes:");
      if (!check.adoptions.empty())
        rep.line("  " + Counted(check.adoptions.size(), "account", "accounts") + " to adopt on the first apply "
                 "(recorded as managed by labfleet in /var/lib/labfleet/managed-users; the account itself is not changed)");
      for (const auto& l : check.listed) rep.line("  listed above: " + l);
      for (const auto& p : check.problems) rep.line("  PROBLEM: " + p);
      for (const auto& w : warnings) rep.line("  warning: " + w);
      if (check.problems.empty()) rep.line("  no other change");
    }
  }
  if (!valid) {
    rep.error("init: the written inventory does not validate (above); this is a bug in init: please report it with "
              "the findings. The files are in " + a.output);
    return kExitErrors;
  }
  if (!check.problems.empty()) {
    rep.error("init: planning the written inventory shows " + Counted(check.problems.size(), "change", "changes") +
              " that no listed disagreement explains (PROBLEM above): init did not read those nodes exactly; fix the "
              "setting by hand in " + a.output + " before applying");
    return kExitErrors;
  }
  return kExitOk;
}

const CommandRegistrar kInit(
    "init", "write the inventory of a running lab from its nodes (accounts, groups, keys, hosts, mounts, docker, sshd)",
    [](CLI::App& sub) -> CommandRun {
      auto a = std::make_shared<InitArgs>();
      sub.add_option("--nodes", a->nodes, "nodes to read: HOST[:PORT], comma-separated")->delimiter(',');
      sub.add_option("--from", a->from, "read the nodes of this nodes.yaml instead (names and ssh settings kept)");
      sub.add_option("--ssh-user", a->ssh_user, "login user for --nodes")->capture_default_str();
      sub.add_option("--identity", a->identity, "private key for --nodes (written to lab.ssh.identity)");
      sub.add_option("--jump", a->jump, "jump host for --nodes: HOST[:PORT]");
      sub.add_flag("--sudo", a->sudo, "for --nodes: run as root through sudo -n (ssh.become: sudo) when --ssh-user is not root");
      sub.add_option("-o,--output", a->output, "new directory to write the inventory into")->required();
      sub.add_option("--lab-name", a->lab_name, "lab.name of the inventory")->capture_default_str();
      sub.add_option("--uid-range", a->uid_range, "uids of human accounts, MIN-MAX inclusive")->capture_default_str();
      AddConnectOptions(sub, a->copts);
      return [a](CommandContext& ctx) -> int { return Run(ctx, *a); };
    });

}  // namespace
}  // namespace labfleet
