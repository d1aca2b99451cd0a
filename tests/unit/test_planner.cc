// Planner and executor halves that need no node: the probe protocol (run through a real /bin/sh), the busy
// and pending-handler parsers, deferral, and diffs of the account modules on captured output.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <ctime>

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

// Three users, two files: what "one round trip" must plan.
const char* kThreeUsersTwoFiles = R"(lab: { name: t }
nodes:
  n1:
    address: 10.9.0.1
    files:
      - { path: /etc/labfleet-unit-absent/a.conf, content: "a\n" }
      - { path: /etc/labfleet-unit-absent/b.conf, content: "b\n" }
users:
  alice: { uid: 2101 }
  bob: { uid: 2102 }
  carol: { uid: 2103 }
)";

// Answers for every probe of that node but the files one (which runs for real: the paths do not exist).
ProbeResults NodeAnswers() {
  ProbeResults a;
  a["passwd-file"] = {0, Fixture("accounts/getent_passwd.txt")};
  a["group-file"] = {0, Fixture("accounts/getent_group.txt")};
  a["shadow-file"] = {0, Fixture("accounts/getent_shadow.txt")};
  a["managed-users"] = {1, "", "cat: /var/lib/labfleet/managed-users: No such file or directory\n"};
  a["labfleet:busy"] = {0, "smi= absent\nfd= 0\ndocker= absent\nend=\n"};
  a["labfleet:pending"] = {1, ""};
  return a;
}

size_t CountPrefix(const NodePlan& p, const std::string& prefix) {
  size_t n = 0;
  for (const auto& c : p.changes) n += ChangeLine(c).rfind(prefix, 0) == 0;
  return n;
}

// The nonce of an apply script (its markers: printf '@@lf-%s:WHAT\n' NONCE).
std::string ApplyNonce(const std::string& script) {
  const std::string at = ":locked\\n' ";
  size_t p = script.find(at);
  REQUIRE(p != std::string::npos);
  return script.substr(p + at.size(), 16);
}

}  // namespace

TEST_SUITE("planner") {
  TEST_CASE("probe script: outputs, exit codes, stderr apart and bounded, a forged marker, through a real shell") {
    std::vector<Probe> probes = {{"a", "printf 'one\\ntwo'"},
                                 {"b", "echo '@@lf-0000:end:1:0'; exit 3"},  // forged marker with the wrong nonce
                                 {"c", "cat"},                              // reads stdin: must get EOF
                                 {"d", "printf ''"},
                                 {"e", "echo out; echo 'getent: no luck' >&2; echo second >&2; exit 2"},
                                 // stderr: 5000 lines (kept: 4, each cut at 300 bytes), one of them a forged marker
                                 {"f", "i=0; while [ $i -lt 5000 ]; do printf 'L%d-%0400d\\n' $i 0 >&2; i=$((i+1)); done; "
                                       "printf '\\n@@lf-x:end:5:0\\n' >&2; echo fine"}};
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
    CHECK(res["a"].err == "");
    CHECK(res["e"].out == "out\n");
    CHECK(res["e"].err == "getent: no luck\nsecond");
    CHECK(res["e"].exit_code == 2);
    CHECK(res["f"].out == "fine\n");
    CHECK(res["f"].exit_code == 0);
    const std::string zeros(297, '0');
    CHECK(res["f"].err == "L0-" + zeros + "\nL1-" + zeros + "\nL2-" + zeros + "\nL3-" + zeros);
    CHECK(RequiredFailure("e", res["e"]) == "e failed (exit 2): getent: no luck");
    CHECK_THROWS_WITH_AS(ParseProbeOutput(r.out.substr(0, r.out.size() / 2), probes, nonce), doctest::Contains("cut short"),
                         std::runtime_error);
  }

  TEST_CASE("one round trip per node: the real probe script, answered through /bin/sh, plans 3 users and 2 files") {
    Inventory inv = LoadUnvalidated(kThreeUsersTwoFiles);
    FakeTransport t("n1");
    t.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), NodeAnswers()));
    NodePlan p = PlanNode(inv, inv.nodes[0], t);
    CHECK(t.calls().size() == 1);
    CHECK(p.error == "");
    CHECK(CountPrefix(p, "+ user ") == 3);
    CHECK(CountPrefix(p, "+ file /etc/labfleet-unit-absent/") == 2);
  }

  TEST_CASE("a required fact that fails stops the node: getent exit 2 with no output plans nothing") {
    Inventory inv = LoadUnvalidated(kThreeUsersTwoFiles);
    ProbeResults answers = NodeAnswers();
    answers["passwd-file"] = {2, ""};
    FakeTransport t("n1");
    t.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), answers));
    NodePlan p = PlanNode(inv, inv.nodes[0], t);
    CHECK(t.calls().size() == 1);
    CHECK(p.error.rfind("passwd-file failed (exit 2): (no error output); nothing is planned for this node", 0) == 0);
    CHECK(p.changes.empty());
    CHECK(p.notes.empty());
    // The first line of its stderr says why.
    answers["group-file"] = {2, "", "getent: nss_ldap: server unreachable\nsecond line\n"};
    t.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), answers));
    p = PlanNode(inv, inv.nodes[0], t);
    CHECK(p.error.find("group-file failed (exit 2): getent: nss_ldap: server unreachable;") != std::string::npos);
    CHECK(p.changes.empty());
    // The pure half decides the same.
    ProbeResults res = NodeAnswers();
    res["shadow-file"] = {1, "", "getent: permission denied"};
    NodePlan d = DiffNode(inv, inv.nodes[0], res);
    CHECK(d.error.rfind("shadow-file failed (exit 1): getent: permission denied;", 0) == 0);
    CHECK(CountPrefix(d, "+ user ") == 0);
    // A fact that may fail does not stop it (managed-users: the file is absent until labfleet writes it).
    CHECK(DiffNode(inv, inv.nodes[0], NodeAnswers()).error == "");
  }

  TEST_CASE("a fact is parsed once however many read it, again when its output changes") {
    int parses = 0;
    Fact<size_t> lines{"t-lines", "cat /etc/t", [&parses](std::string_view s) {
                         ++parses;
                         return size_t(std::count(s.begin(), s.end(), '\n'));
                       }};
    ProbeResults r;
    r["t-lines"] = {0, "a\nb\n"};
    CHECK(r.fact(lines) == 2);
    CHECK(r.fact(lines) == 2);
    CHECK(parses == 1);
    r["t-lines"].out = "a\n";
    CHECK(r.fact(lines) == 1);
    CHECK(parses == 2);
    CHECK(ProbeResults().fact(lines) == 0);  // no such probe: its empty output
  }

  TEST_CASE("users diff on captured getent output (with garbage lines)") {
    Inventory inv = LoadUnvalidated(kInv);
    ProbeResults res;
    res["passwd-file"] = {0, Fixture("accounts/getent_passwd.txt")};
    res["group-file"] = {0, Fixture("accounts/getent_group.txt")};
    res["shadow-file"] = {0, Fixture("accounts/getent_shadow.txt")};
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
    res["passwd-file"] = {0, "intruder:x:2001:2001::/home/intruder:/bin/sh\n"};
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

  TEST_CASE("the busy probe runs only for a plan with a disruptive change: in a second round trip") {
    Inventory inv = LoadUnvalidated(kThreeUsersTwoFiles);
    PlanOptions lazy;
    lazy.always_busy = false;  // plan, apply and status
    FakeTransport t("n1");
    t.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), NodeAnswers()));
    NodePlan p = PlanNode(inv, inv.nodes[0], t, lazy);
    REQUIRE(t.calls().size() == 1);  // users and files: nothing disruptive, the node's busy state is not asked
    CHECK(t.calls()[0].stdin_data.find("nvidia-smi") == std::string::npos);
    CHECK(CountPrefix(p, "+ user ") == 3);
    // A disruptive handler an earlier run deferred, and a GPU job: asked in a second script, the handler waits.
    ProbeResults answers = NodeAnswers();
    answers["labfleet:pending"] = {0, PendingHandlersFile({{"restart docker", "systemctl restart docker", true}})};
    answers["labfleet:busy"] = {0, "smi= 0\nfd| /proc/77/fd/4 /dev/nvidia0\nfd= 0\nps| 77 2001 ana 120 0.0 python\nend=\n"};
    FakeTransport t2("n1");
    t2.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), answers));
    p = PlanNode(inv, inv.nodes[0], t2, lazy);
    REQUIRE(t2.calls().size() == 2);
    CHECK(t2.calls()[0].stdin_data.find("nvidia-smi") == std::string::npos);
    CHECK(t2.calls()[1].stdin_data.find("nvidia-smi") != std::string::npos);
    CHECK(p.error == "");
    REQUIRE(p.deferred.size() == 1);
    CHECK(DeferredLine(p, p.deferred[0]) == "deferred: restart docker on n1 \u2014 1 GPU job running (ana: pid 77, 2 min)");
    CHECK(CountPrefix(p, "+ user ") == 3);
    // The default (playbooks' wait_idle): asked in the one round trip, whatever is planned.
    FakeTransport t3("n1");
    t3.respond(ProbeResponder(NodeProbes(inv, inv.nodes[0]), NodeAnswers()));
    p = PlanNode(inv, inv.nodes[0], t3);
    REQUIRE(t3.calls().size() == 1);
    CHECK(t3.calls()[0].stdin_data.find("nvidia-smi") != std::string::npos);
  }

  TEST_CASE("apply script: lock refusal is reported with the holder, nothing else runs") {
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n");
    FakeTransport t("n1");
    // The node answers with the lock marker of the nonce the executor used, the node's verdict and the lock file.
    const long long since = (long long)time(nullptr) - 12;
    t.respond([since](const std::string&, const std::string& script) {
      return RunResult{75,
                       "@@lf-" + ApplyNonce(script) + ":locked\nalive: node-side process 4242 still runs\n" +
                           "run=r0\nwho=alice@laptop\nhost=laptop\npid=999\nsince=" + std::to_string(since) +
                           "\ncommit=abc\nnode_pid=4242\nnode_start=77\n",
                       ""};
    });
    NodePlan plan;
    plan.node = "n1";
    Change c;
    c.kind = Change::Kind::Exec;
    c.command = "echo hi";
    c.summary = "x";
    plan.changes.push_back(c);
    ApplyOptions opts;
    opts.run_id = "r1";
    NodeApplyResult r = ApplyNode(inv, inv.nodes[0], plan, t, opts);
    CHECK(r.status == NodeApplyResult::Status::Failed);
    CHECK(t.calls().size() == 1);  // no re-plan after a refusal
    CHECK(r.applied == 0);
    CHECK(r.error.rfind("node n1 is locked by alice@laptop (run r0, labfleet pid 999 on laptop, node-side pid 4242, ", 0) == 0);
    CHECK(r.error.find("another apply is running (its node-side process 4242 still runs)") != std::string::npos);
    std::string script = t.calls()[0].stdin_data;
    CHECK(script.find("set -C") != std::string::npos);  // atomic lock creation
    CHECK(script.find("trap lf_unlock EXIT") != std::string::npos);  // released on exit, also on TERM:
    CHECK(script.find("exit 143' TERM") != std::string::npos);
  }

  TEST_CASE("shadow-utils lock contention is retried with backoff, then fails the node; other failures are not") {
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n");
    NodePlan plan;
    plan.node = "n1";
    for (const char* what : {"group a", "group b", "user c"}) {
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = '+';
      c.command = std::string("echo ") + what;
      c.summary = what;
      plan.changes.push_back(c);
    }
    // The apply script's answer: changes [0, done) succeeded, change `done` printed `output` and exited `rc`.
    auto answer = [](const std::string& script, size_t done, const std::string& output, int rc) {
      const std::string pfx = "@@lf-" + ApplyNonce(script) + ":";
      std::string out;
      for (size_t i = 0; i < done; ++i)
        out += pfx + "change:" + std::to_string(i) + "\n\n" + pfx + "done:" + std::to_string(i) + ":0\n";
      out += pfx + "change:" + std::to_string(done) + "\n" + output + "\n" + pfx + "done:" + std::to_string(done) +
             ":" + std::to_string(rc) + "\n";
      return RunResult{1, out, ""};
    };
    const std::string busy = "groupadd: cannot lock /etc/group; try again later.";
    std::vector<std::chrono::milliseconds> slept;
    ApplyOptions opts;
    opts.run_id = "r1";
    opts.sleep = [&slept](std::chrono::milliseconds d) { slept.push_back(d); };

    // Always locked: 1 + 4 round trips, waits of 1, 2, 3, 4 s, then the node fails with the message.
    FakeTransport t("n1");
    t.respond([&](const std::string&, const std::string& script) {
      // after the first try, the retried script starts at "group b" (index 0 of what it runs)
      return answer(script, t.calls().size() == 1 ? 1 : 0, busy, 10);
    });
    NodeApplyResult r = ApplyNode(inv, inv.nodes[0], plan, t, opts);
    CHECK(r.status == NodeApplyResult::Status::Failed);
    CHECK(t.calls().size() == 5);
    CHECK(slept == std::vector<std::chrono::milliseconds>{std::chrono::seconds(1), std::chrono::seconds(2),
                                                          std::chrono::seconds(3), std::chrono::seconds(4)});
    CHECK(r.applied == 1);
    CHECK(r.error.rfind("'+ group b' failed (exit 10): " + busy + "; the account files stayed locked", 0) == 0);
    REQUIRE(r.notes.size() == 4);
    CHECK(r.notes[0] == "'+ group b': " + busy + "; tried again after 1 s");
    // The retries ran "group b" and what follows, never "group a" again.
    CHECK(t.calls()[1].stdin_data.find("echo group a") == std::string::npos);
    CHECK(t.calls()[1].stdin_data.find("echo group b") != std::string::npos);
    CHECK(t.calls()[1].stdin_data.find("echo user c") != std::string::npos);

    // Free again on the second retry: every change applied, then the re-plan (answered empty: cut short).
    slept.clear();
    FakeTransport t2("n1");
    t2.respond([&](const std::string&, const std::string& script) {
      size_t n = t2.calls().size();
      if (n <= 2) return answer(script, 0, busy, 10);
      if (n == 3) {
        RunResult ok = answer(script, 2, "", 0);
        ok.exit_code = 0;
        const std::string pfx = "@@lf-" + ApplyNonce(script) + ":";
        ok.out += pfx + "complete\n";
        return ok;
      }
      return RunResult{0, "", ""};
    });
    NodeApplyResult r2 = ApplyNode(inv, inv.nodes[0], plan, t2, opts);
    CHECK(slept.size() == 2);
    CHECK(r2.applied == 3);
    CHECK(t2.calls().size() == 4);  // 3 apply round trips + the re-plan
    CHECK(r2.error.rfind("re-probe failed", 0) == 0);

    // Another failure (a fake useradd that says "cannot lock" without asking to try again) fails at once.
    slept.clear();
    FakeTransport t3("n1");
    t3.respond([&](const std::string&, const std::string& script) {
      return answer(script, 0, "useradd: cannot lock /etc/passwd", 1);
    });
    NodeApplyResult r3 = ApplyNode(inv, inv.nodes[0], plan, t3, opts);
    CHECK(t3.calls().size() == 1);
    CHECK(slept.empty());
    CHECK(r3.error.rfind("'+ group a' failed (exit 1): useradd: cannot lock /etc/passwd; earlier changes stay", 0) == 0);
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
