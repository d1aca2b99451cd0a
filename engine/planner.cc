#include "engine/planner.h"

#include <random>
#include <set>
#include <stdexcept>

#include "engine/shell.h"

namespace labfleet {

size_t Plan::change_count() const {
  size_t n = 0;
  for (const auto& p : nodes) n += p.changes.size();
  return n;
}

std::string NewNonce() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)rng());
  return buf;
}

std::string ScriptRunner() { return "sh -c 'eval \"$(cat)\"'"; }

std::string BuildProbeScript(const std::vector<Probe>& probes, const std::string& nonce) {
  Script s;
  s.raw("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (size_t i = 0; i < probes.size(); ++i) {
    s.raw("printf '@@lf-%s:begin:%d\\n' " + ShellQuote(nonce) + " " + std::to_string(i));
    // A subshell: a probe's `exit` or failure cannot end the script. stderr is dropped: probes report
    // through their exit status.
    s.raw("( " + probes[i].command + "\n) </dev/null 2>/dev/null");
    s.raw("printf '\\n@@lf-%s:end:%d:%d\\n' " + ShellQuote(nonce) + " " + std::to_string(i) + " $?");
  }
  return s.str();
}

ProbeResults ParseProbeOutput(const std::string& out, const std::vector<Probe>& probes, const std::string& nonce) {
  ProbeResults results;
  size_t pos = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    std::string begin = "@@lf-" + nonce + ":begin:" + std::to_string(i) + "\n";
    std::string end = "\n@@lf-" + nonce + ":end:" + std::to_string(i) + ":";
    size_t b = out.find(begin, pos);
    if (b == std::string::npos) throw std::runtime_error("probe output cut short before '" + probes[i].key + "'");
    b += begin.size();
    size_t e = out.find(end, b);
    if (e == std::string::npos) throw std::runtime_error("probe output cut short in '" + probes[i].key + "'");
    size_t code_start = e + end.size();
    size_t nl = out.find('\n', code_start);
    ProbeOutput po;
    po.out = out.substr(b, e - b);
    po.exit_code = std::stoi(out.substr(code_start, nl - code_start));
    results[probes[i].key] = std::move(po);
    pos = nl == std::string::npos ? out.size() : nl + 1;
  }
  return results;
}

std::vector<std::pair<const Module*, std::vector<Resource>>> NodeResources(const NodeContext& ctx) {
  std::vector<std::pair<const Module*, std::vector<Resource>>> out;
  for (const auto& m : Modules()) out.emplace_back(m.get(), m->resources(ctx));
  return out;
}

static std::vector<Probe> CollectProbes(const NodeContext& ctx,
                                        const std::vector<std::pair<const Module*, std::vector<Resource>>>& res) {
  std::vector<Probe> probes;
  std::set<std::string> seen;
  for (const auto& [m, rs] : res) {
    for (auto& p : m->probes(ctx, rs))
      if (seen.insert(p.key).second) probes.push_back(std::move(p));
  }
  return probes;
}

static NodePlan DiffAll(const NodeContext& ctx,
                        const std::vector<std::pair<const Module*, std::vector<Resource>>>& res,
                        const ProbeResults& results) {
  NodePlan plan;
  plan.node = ctx.node.name;
  for (const auto& [m, rs] : res) {
    for (const auto& r : rs) {
      ++plan.resources;
      DiffResult d = m->diff(ctx, r, results);
      if (!d.error.empty()) plan.error += (plan.error.empty() ? "" : "; ") + r.id + ": " + d.error;
      if (d.changes.empty()) {
        plan.notes.push_back({r.id, d.noop});
      } else {
        for (auto& c : d.changes) {
          if (c.resource.empty()) c.resource = r.id;
          plan.changes.push_back(std::move(c));
        }
      }
    }
  }
  return plan;
}

NodePlan DiffNode(const Inventory& inv, const NodeDef& node, const ProbeResults& results) {
  Value settings = inv.settings(node);
  NodeContext ctx{inv, node, settings};
  auto res = NodeResources(ctx);
  return DiffAll(ctx, res, results);
}

NodePlan PlanNode(const Inventory& inv, const NodeDef& node, Transport& transport) {
  Value settings = inv.settings(node);
  NodeContext ctx{inv, node, settings};
  auto res = NodeResources(ctx);
  auto probes = CollectProbes(ctx, res);
  std::string nonce = NewNonce();
  RunResult r = transport.run(ScriptRunner(), BuildProbeScript(probes, nonce));
  ProbeResults results;
  try {
    results = ParseProbeOutput(r.out, probes, nonce);
  } catch (const std::exception& e) {
    NodePlan p;
    p.node = node.name;
    p.reachable = true;
    p.error = std::string(e.what()) + " (exit " + std::to_string(r.exit_code) + ": " + r.err + ")";
    return p;
  }
  return DiffAll(ctx, res, results);
}

std::string ChangeLine(const Change& c) { return std::string(1, c.sign) + " " + c.summary; }

nlohmann::json ChangeToJson(const Change& c) {
  static const char* kinds[] = {"put_file", "exec", "remove", "notify"};
  nlohmann::json j = {{"resource", c.resource},
                      {"action", std::string(1, c.sign) == "+" ? "create" : c.sign == '-' ? "remove" : "modify"},
                      {"kind", kinds[int(c.kind)]},
                      {"summary", c.summary},
                      {"reason", c.reason},
                      {"disruptive", c.disruptive}};
  if (!c.diff.empty() && !c.secret) j["diff"] = c.diff;
  if (c.kind == Change::Kind::Notify) j["handler"] = c.handler;
  if (c.kind == Change::Kind::PutFile) j["path"] = c.file.path;
  return j;
}

nlohmann::json NodePlanToJson(const NodePlan& p) {
  nlohmann::json j = {{"node", p.node}, {"reachable", p.reachable}, {"resources", p.resources}};
  if (!p.error.empty()) j["error"] = p.error;
  j["changes"] = nlohmann::json::array();
  for (const auto& c : p.changes) j["changes"].push_back(ChangeToJson(c));
  j["notes"] = nlohmann::json::array();
  for (const auto& n : p.notes) j["notes"].push_back({{"resource", n.resource}, {"note", n.text}});
  return j;
}

}  // namespace labfleet
