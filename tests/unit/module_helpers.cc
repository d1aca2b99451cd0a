#include "tests/unit/module_helpers.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "engine/local_transport.h"
#include "engine/planner.h"
#include "engine/shell.h"

namespace labfleet::testing {

std::string Fixture(const std::string& name) {
  std::ifstream f(std::string(LABFLEET_SOURCE_DIR) + "/tests/fixtures/" + name);
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

static void RequireNoErrors(const Findings& f) {
  std::string first = f.items().empty() ? std::string() : f.items()[0].message;
  INFO(first);
  REQUIRE_FALSE(f.has_errors());
}

Inventory Load(const std::string& yaml, Findings* out) {
  Findings f;
  Inventory inv = LoadInventory({{"inventory/test.yaml", yaml}}, f);
  ValidateInventory(inv, f);
  if (out)
    *out = f;
  else
    RequireNoErrors(f);
  return inv;
}

Inventory LoadUnvalidated(const std::string& yaml) {
  Findings f;
  Inventory inv = LoadInventory({{"inventory/test.yaml", yaml}}, f);
  RequireNoErrors(f);
  return inv;
}

std::string All(const Findings& f) {
  std::string s;
  for (const auto& x : f.items()) s += x.where.str() + ": " + x.code + ": " + x.message + "\n";
  return s;
}

std::string Inv(const std::string& settings) {
  std::string out = "lab: { name: t }\nnodes:\n  n1:\n    address: 10.9.0.1\n";
  size_t pos = 0;
  while (pos < settings.size()) {
    size_t nl = settings.find('\n', pos);
    out += "    " + settings.substr(pos, nl - pos) + "\n";
    pos = nl == std::string::npos ? settings.size() : nl + 1;
  }
  return out;
}

std::vector<std::string> ModuleRun::lines() const {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(ChangeLine(c));
  return out;
}

std::vector<std::string> ModuleRun::summaries() const {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(c.summary);
  return out;
}

std::string ModuleRun::all_notes() const {
  std::string s;
  for (const auto& n : notes) s += n + "\n";
  return s;
}

ModuleRun RunModule(const Inventory& inv, const std::string& module, const ProbeResults& res) {
  const Module* m = FindModule(module);
  REQUIRE(m);
  Value settings = inv.settings(inv.nodes[0]);
  NodeContext ctx{inv, inv.nodes[0], settings};
  ModuleRun run;
  auto rs = m->resources(ctx);
  run.probes = m->probes(ctx, rs);
  for (const auto& p : run.probes) run.probe_keys.push_back(p.key);
  for (const auto& r : rs) {
    DiffResult d = m->diff(ctx, r, res);
    if (!d.error.empty()) run.errors.push_back(r.id + ": " + d.error);
    for (const auto& w : d.warnings) run.warnings.push_back(r.id + ": " + w);
    if (d.changes.empty()) run.notes.push_back(r.id + ": " + d.noop);
    for (auto& c : d.changes) run.changes.push_back(std::move(c));
  }
  return run;
}

std::string KeyWithPrefix(const ModuleRun& run, const std::string& prefix) {
  for (const auto& k : run.probe_keys)
    if (k.rfind(prefix, 0) == 0) return k;
  FAIL("no probe key starting with " << prefix);
  return "";
}

std::string FileOut(const std::string& content) { return "present 644 root root regular file\n" + content; }

FakeTransport::Responder ProbeResponder(std::vector<Probe> probes, ProbeResults answers, RunResult other) {
  return [probes = std::move(probes), answers = std::move(answers), other](const std::string& command,
                                                                            const std::string& script) {
    std::string text = script;
    bool probe_script = false;
    for (const auto& p : probes) probe_script |= text.find("( " + p.command + "\n)") != std::string::npos;
    if (!probe_script) return other;
    // PlanNode asks the busy probe alone, in a second script, only when a disruptive change is planned.
    bool busy_round = false;
    for (const auto& p : probes)
      busy_round |= p.key == kBusyProbeKey && text.find("( " + p.command + "\n)") != std::string::npos;
    for (const auto& p : probes) {
      auto a = answers.find(p.key);
      if (a == answers.end()) continue;
      const std::string body = "( " + p.command + "\n)";
      size_t at = text.find(body);
      if (at == std::string::npos) {
        if (p.key == kBusyProbeKey || busy_round) continue;
        FAIL_CHECK("probe '" << p.key << "' is not in the probe script");
        continue;
      }
      text.replace(at, body.size(),
                   "( " + Cmd("printf").arg("%s").arg(a->second.out).str() + "; " +
                       Cmd("printf").arg("%s").arg(a->second.err).str() + " >&2; exit " +
                       std::to_string(a->second.exit_code) + "\n)");
    }
    LocalTransport sh("here", 60);
    return sh.run(command, text);
  };
}

}  // namespace labfleet::testing
