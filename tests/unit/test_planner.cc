// Planner and executor halves that need no node: the probe protocol (run through a real /bin/sh), the busy
// and pending-handler parsers, deferral, and diffs of the account modules on captured output.
#include <doctest/doctest.h>

#include "engine/executor.h"
#include "engine/fake_transport.h"
#include "engine/local_transport.h"
#include "engine/plan_report.h"
#include "engine/planner.h"
#include "engine/yaml_load.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kInv = R"(lab: { name: t }
nodes:
  n1: { address: 10.9.0.1 }
user_groups:
  gpu-users: { gid: 3000 }
users:
  yseong: { uid: 2001, full_name: Yeon Seong, groups: [gpu-users], shell: /bin/bash }
  kpark: { uid: 2002, full_name: Kim Park, groups: [gpu-users], shell: /usr/bin/zsh }
)";

}  // namespace

TEST_SUITE("planner") {
  TEST_CASE("probe script: outputs, exit codes and a forged marker, through a real shell") {
    std::vector<Probe> probes = {{"a", "printf 'one\\ntwo'"},
                                 {"b", "echo '@@lf-0000:end:1:0'; exit 3"},  // forged marker with the wrong nonce
                                 {"c", "cat"},                              // reads stdin: must get EOF
                                 {"d", "printf ''"}};
    std::string nonce = NewNonce();
    LocalTransport local;
    RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
    REQUIRE(r.ok());
    ProbeResults res = ParseProbeOutput(r.out, probes, nonce);
    CHECK(res["a"].out == "one\ntwo");
    CHECK(res["a"].exit_code == 0);
    CHECK(res["b"].out == "@@lf-0000:end:1:0\n");
    CHECK(res["b"].exit_code == 3);
    CHECK(res["c"].out == "");
    CHECK(res["d"].out == "");
    CHECK_THROWS_WITH_AS(ParseProbeOutput(r.out.substr(0, r.out.size() / 2), probes, nonce), doctest::Contains("cut short"),
                         std::runtime_error);
  }

  TEST_CASE("one round trip per node, whatever the number of resources") {
    Inventory inv = LoadUnvalidated(kInv);
    FakeTransport t("n1");
    t.set_default({0, "", ""});
    NodePlan p = PlanNode(inv, inv.nodes[0], t);
    CHECK(t.calls().size() == 1);
    CHECK(p.error.find("cut short") != std::string::npos);  // the fake answered nothing
  }

  TEST_CASE("users diff on captured getent output (with garbage lines)") {
    Inventory inv = LoadUnvalidated(kInv);
    ProbeResults res;
    res["getent-passwd"] = {0, Fixture("accounts/getent_passwd.txt")};
    res["getent-group"] = {0, Fixture("accounts/getent_group.txt")};
    res["getent-shadow"] = {0, Fixture("accounts/getent_shadow.txt")};
    res["managed-users"] = {0, "yseong\nkpark\n"};
    NodePlan p = DiffNode(inv, inv.nodes[0], res);
    std::vector<std::string> lines;
    for (const auto& c : p.changes) lines.push_back(ChangeLine(c));
    CAPTURE(lines.size());
    for (auto& l : lines) CAPTURE(l);
    // Fixture: yseong has gecos "Yeon Seong,,,", expires 20512 (2026-02-28), is in gpu-users; kpark matches but
    // expires on day 1 (locked) and is fine otherwise.
    CHECK(std::find(lines.begin(), lines.end(),
                    "~ user yseong (full name, expires 2026-02-28 -> never)") != lines.end());
    CHECK(std::find(lines.begin(), lines.end(), "~ user kpark (expires 1970-01-02 -> never)") != lines.end());
    // Group kpark (personal) is absent in the fixture, yseong's exists with gid 2001.
    CHECK(std::find(lines.begin(), lines.end(), "+ group kpark (gid 2002)") != lines.end());
    bool yseong_group_noop = false;
    for (const auto& n : p.notes) yseong_group_noop |= n.resource == "group:yseong";
    CHECK(yseong_group_noop);
  }

  TEST_CASE("uid taken by another account is a conflict, not a change") {
    Inventory inv = LoadUnvalidated(kInv);
    ProbeResults res;
    res["getent-passwd"] = {0, "intruder:x:2001:2001::/home/intruder:/bin/sh\n"};
    NodePlan p = DiffNode(inv, inv.nodes[0], res);
    CHECK(p.error.find("uid 2001 of user yseong is taken on this node by 'intruder'") != std::string::npos);
  }

  TEST_CASE("busy parser and description") {
    // The probe's tagged output (engine/busy.h; more cases in test_busy.cc), one garbage line.
    BusyInfo b = ParseBusy(
        "smi| GPU-1, 4121, 100, python train.py\n"
        "smi= 0\nmodule= loaded\nfd= 0\n"
        "garbage line\n"
        "ps| 4121 2001 yseong 10800 99.0 python train.py\n"
        "docker| 3f2a lab-jupyter\ndocker= 0\nend=\n");
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].name == "python train.py");
    CHECK(b.describe() == "1 GPU job running (yseong: pid 4121, 3 h); 1 container running (lab-jupyter)");
    CHECK_FALSE(ParseBusy("smi= absent\nfd= 0\ndocker= absent\nend=\n").busy());
  }

  TEST_CASE("pending handlers round trip; garbage skipped") {
    std::vector<PendingHandler> hs = {{"restart docker", "systemctl restart docker", true},
                                      {"reload sshd", "kill -HUP \"$(cat /run/sshd.pid)\"\nx", false}};
    auto back = ParsePendingHandlers(PendingHandlersFile(hs) + "not\tbase64!\t1\nnotabs\n");
    REQUIRE(back.size() == 2);
    CHECK(back[1].command == hs[1].command);
    CHECK(back[0].disruptive);
  }

  TEST_CASE("disruptive changes are deferred on a busy node, kept with --force; pending handlers come back") {
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n");
    ProbeResults res;
    res["labfleet:busy"] = {0, "smi= 0\nfd| /proc/77/fd/4 /dev/nvidia0\nfd= 0\nps| 77 2001 ana 120 0.0 python\nend=\n"};
    res["labfleet:pending"] = {0, PendingHandlersFile({{"restart docker", "systemctl restart docker", true},
                                                       {"reload sshd", "true", false}})};
    NodePlan p = DiffNode(inv, inv.nodes[0], res);
    REQUIRE(p.changes.size() == 1);
    CHECK(p.changes[0].handler == "reload sshd");
    REQUIRE(p.deferred.size() == 1);
    CHECK(DeferredLine(p, p.deferred[0]) ==
          "deferred: restart docker on n1 \u2014 1 GPU job running (ana: pid 77, 2 min)");
    NodePlan forced = DiffNode(inv, inv.nodes[0], res, PlanOptions{.force = true, .only = {}});
    CHECK(forced.changes.size() == 2);
    CHECK(forced.deferred.empty());
  }

  TEST_CASE("apply script: lock refusal is reported with the holder, nothing else runs") {
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n");
    FakeTransport t("n1");
    t.on_match([](const std::string&) { return true; }, {75, "", ""});
    NodePlan plan;
    plan.node = "n1";
    Change c;
    c.kind = Change::Kind::Exec;
    c.command = "echo hi";
    c.summary = "x";
    plan.changes.push_back(c);
    ApplyOptions opts;
    opts.run_id = "r1";
    // The fake answers with the lock marker of whatever nonce the executor used.
    t.clear_calls();
    NodeApplyResult r = ApplyNode(inv, inv.nodes[0], plan, t, opts);
    CHECK(r.status == NodeApplyResult::Status::Failed);
    CHECK(t.calls().size() == 1);
    std::string script = t.calls()[0].stdin_data;
    CHECK(script.find("set -C") != std::string::npos);  // atomic lock creation
    CHECK(script.find("trap lf_unlock EXIT") != std::string::npos);  // released on exit, also on TERM:
    CHECK(script.find("exit 143' TERM") != std::string::npos);
  }

  TEST_CASE("lockout guard: a refused fresh login is tried again (sshd re-exec after SIGHUP); auth failure is final") {
    using K = TransportError::Kind;
    auto flaky = [](std::vector<K> errors, int* calls) {
      return [errors, calls]() -> std::unique_ptr<Transport> {
        int i = (*calls)++;
        if (i < int(errors.size())) throw TransportError(errors[i], "attempt " + std::to_string(i + 1) + " failed");
        auto t = std::make_unique<FakeTransport>("n1");
        t->on_exact("true", {0, "", ""});
        return t;
      };
    };
    const auto wait = std::chrono::milliseconds(1);
    int calls = 0;
    CHECK(ProveFreshLogin(flaky({K::Connect, K::Lost}, &calls), 5, wait) == "");
    CHECK(calls == 3);
    calls = 0;
    CHECK(ProveFreshLogin(flaky({K::Connect, K::Connect, K::Connect}, &calls), 3, wait) == "attempt 3 failed");
    CHECK(calls == 3);
    calls = 0;
    CHECK(ProveFreshLogin(flaky({K::Auth}, &calls), 5, wait) == "attempt 1 failed");
    CHECK(calls == 1);
    calls = 0;
    CHECK(ProveFreshLogin(flaky({K::HostKey}, &calls), 5, wait) == "attempt 1 failed");
    CHECK(calls == 1);
    // Logged in, but `true` fails: final.
    calls = 0;
    auto broken = [&calls]() -> std::unique_ptr<Transport> {
      ++calls;
      auto t = std::make_unique<FakeTransport>("n1");
      t->set_default({1, "", "no shell"});
      return t;
    };
    CHECK(ProveFreshLogin(broken, 5, wait) == "`true` exited 1 over a fresh connection");
    CHECK(calls == 1);
  }
}
