// Scaffolding shared by the module unit tests: captured fixtures, an inventory from YAML text, and one module's
// resources, probes and diffs on node 0 of that inventory, run on fake probe output (no node, no shell).
//
//   Inventory inv = Load(Inv("packages: { htop: installed }"));
//   ModuleRun run = RunModule(inv, "packages", {{"dpkg-query", {0, Fixture("packages/dpkg_query.txt")}}});
//   CHECK(run.lines() == std::vector<std::string>{"..."});
#pragma once
#include <string>
#include <vector>

#include "engine/fake_transport.h"
#include "engine/finding.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/plan_report.h"

namespace labfleet::testing {

// The text of tests/fixtures/NAME ("packages/dpkg_query.txt"); REQUIREs that it can be read.
std::string Fixture(const std::string& name);

// `yaml` loaded as inventory/test.yaml, then validated. With `out`, the findings go there; without, any error
// fails the test (REQUIRE, with the first finding's message).
Inventory Load(const std::string& yaml, Findings* out = nullptr);
// `yaml` loaded as inventory/test.yaml, not validated; any loading error fails the test.
Inventory LoadUnvalidated(const std::string& yaml);
// Every finding, one a line: "WHERE: CODE: MESSAGE".
std::string All(const Findings& f);

// An inventory with one node n1 whose own settings are `settings` (YAML lines at node level, unindented).
std::string Inv(const std::string& settings);

// One module's view of node 0: its probes' keys, and its diffs of the probe results.
struct ModuleRun {
  std::vector<Change> changes;
  std::vector<std::string> notes, errors;  // "RESOURCE: nothing to do because ...", "RESOURCE: error"
  std::vector<std::string> warnings;       // "RESOURCE: warning"
  std::vector<std::string> probe_keys;
  std::vector<Probe> probes;
  std::vector<std::string> lines() const;  // ChangeLine of each change
  std::vector<std::string> summaries() const;  // each change's summary
  std::string all_notes() const;           // the notes, one a line
};
ModuleRun RunModule(const Inventory& inv, const std::string& module, const ProbeResults& res);
// The first probe key of `run` starting with `prefix`; FAILs the test when there is none.
std::string KeyWithPrefix(const ModuleRun& run, const std::string& prefix);

// The files probe's answer for a present regular file (0644 root:root) holding `content`.
std::string FileOut(const std::string& content);

// For FakeTransport::respond: answers the probe script the code under test sent (BuildProbeScript of `probes`)
// by running it in a real /bin/sh, each probe whose key is in `answers` replaced by a command that prints that
// answer's output, stderr and exit status; the other probes run for real on this machine. A probe of `answers`
// missing from the script FAILs the test. Scripts that are no probe script (no probe of `probes` in them) are
// answered `other`.
FakeTransport::Responder ProbeResponder(std::vector<Probe> probes, ProbeResults answers, RunResult other = {0, "", ""});

}  // namespace labfleet::testing
