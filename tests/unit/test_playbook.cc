// Playbooks (engine/playbook.h, engine/playbook_run.h): the parser's findings at file:line:col, validation
// against an inventory, the shipped playbooks/, and the runner with every node-touching step faked: dry run
// touches nothing, batches stop at the first failure, wait_idle fails safe, accounts steps apply the users
// module with the accounts changed, commands go to the node as quoted words behind their guard.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "engine/fake_transport.h"
#include "engine/playbook.h"
#include "engine/planner.h"
#include "engine/playbook_run.h"
#include "engine/shell.h"
#include "engine/text.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kInv = R"(lab:
  name: t
  home_archive: /var/backups/homes
nodes:
  n1: { address: 10.9.0.1, groups: [gpu] }
  n2: { address: 10.9.0.2, groups: [gpu] }
  n3: { address: 10.9.0.3, groups: [gpu] }
  n4: { address: 10.9.0.4, groups: [gpu] }
groups:
  gpu: {}
users:
  olda: { uid: 2001, expires: 2020-01-31 }
  oldb: { uid: 2002, expires: 2021-06-30 }
  soon: { uid: 2003, expires: 2030-01-03 }
  stays: { uid: 2004 }
)";
const long long kToday = *DaysOfDate("2030-01-01");

Playbook Parse(const std::string& text, Findings& f) { return ParsePlaybook(text, "playbooks/t.yaml", f); }

std::string Errors(const Findings& f) {
  std::string out;
  for (const auto& x : f.items()) out += x.where.str() + ": " + x.code + ": " + x.message + "\n";
  return out;
}

std::vector<const NodeDef*> All(const Inventory& inv) {
  std::vector<const NodeDef*> v;
  for (const auto& n : inv.nodes) v.push_back(&n);
  return v;
}

Change Ch(const std::string& summary, char sign = '~') {
  Change c;
  c.sign = sign;
  c.summary = summary;
  return c;
}

// A fleet of fakes. Plans: one change per node for an apply step; for the users module, one change per account
// the inventory marks removed or locked (expires 1970-01-02). Records what was applied and run.
struct World {
  std::mutex mu;
  std::vector<std::string> applied;                     // "node:only-modules"
  std::map<std::string, std::shared_ptr<FakeTransport>> transports;
  std::set<std::string> fail_apply, busy, unknown, unreachable;
  std::vector<std::string> questions;
  bool answer = true;
  int with_reconnect = 0;
  std::chrono::steady_clock::time_point clock{};

  RunnerOps ops() {
    RunnerOps o;
    o.connect = [this](const Inventory&, const NodeDef& n) -> std::unique_ptr<Transport> {
      if (unreachable.count(n.name)) throw TransportError(TransportError::Kind::Connect, n.name + ": connection refused");
      std::lock_guard<std::mutex> l(mu);
      auto& t = transports[n.name];
      if (!t) t = std::make_shared<FakeTransport>(n.name);
      // The runner owns what connect returns: hand it a forwarding transport so the test keeps the record.
      struct Fwd : Transport {
        std::shared_ptr<FakeTransport> t;
        std::string describe() const override { return t->describe(); }
        RunResult run(const std::string& c, std::string_view in) override { return t->run(c, in); }
      };
      auto f = std::make_unique<Fwd>();
      f->t = t;
      return f;
    };
    o.plan = [this](const Inventory& inv, const NodeDef& n, Transport&, const PlanOptions& po) {
      NodePlan p;
      p.node = n.name;
      if (po.only == std::vector<std::string>{"busy"}) {
        if (busy.count(n.name)) p.busy.gpu_jobs.push_back({});
        if (unknown.count(n.name)) p.busy.unknown.push_back("GPU use unknown: nvidia-smi failed (exit 9)");
        return p;
      }
      if (po.only == std::vector<std::string>{"users"}) {
        for (const char* name : {"olda", "oldb", "soon", "stays"})
          if (!inv.user(name)) p.changes.push_back(Ch(std::string("user ") + name + " (locked)", '-'));
        for (const auto& u : inv.users)
          if (u.remove) p.changes.push_back(Ch("user " + u.name + (u.archive_home ? " (archived)" : " (deleted)"), '-'));
        return p;
      }
      p.changes.push_back(Ch("file /etc/motd"));
      return p;
    };
    o.apply = [this](const Inventory&, const NodeDef& n, const NodePlan& p, Transport&, const ApplyOptions& ao) {
      {
        std::lock_guard<std::mutex> l(mu);
        applied.push_back(n.name + ":" + Join(ao.plan.only, ","));
        if (ao.reconnect) ++with_reconnect;  // the sshd lockout guard gets its fresh connection
      }
      NodeApplyResult r;
      r.node = n.name;
      r.applied = int(p.changes.size());
      r.status = fail_apply.count(n.name) ? NodeApplyResult::Status::Failed
                 : p.changes.empty()      ? NodeApplyResult::Status::Unchanged
                                          : NodeApplyResult::Status::Changed;
      if (fail_apply.count(n.name)) r.error = "change 1 failed";
      return r;
    };
    o.wait = [this](std::chrono::seconds d, const std::atomic<bool>*) {
      clock += d;
      busy.clear();  // the jobs end while we wait
      return true;
    };
    o.now = [this] { return clock; };
    o.confirm = [this](const std::string& q) {
      questions.push_back(q);
      return answer;
    };
    return o;
  }
  // Calls on `node` whose command or script (stdin) contains `substring`.
  size_t ran(const std::string& node, const std::string& substring) {
    if (!transports.count(node)) return 0;
    size_t n = 0;
    for (const auto& c : transports[node]->calls())
      n += c.command.find(substring) != std::string::npos || c.stdin_data.find(substring) != std::string::npos;
    return n;
  }
};

std::string Statuses(const StepResult& s) {
  std::string out;
  for (const auto& n : s.nodes) out += (out.empty() ? "" : " ") + n.node + "=" + n.status;
  return out;
}

RunnerOptions Real() {
  RunnerOptions o;
  o.execute = true;
  o.today_days = kToday;
  o.parallel = 2;
  return o;
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_SUITE("playbook") {
  TEST_CASE("parse: every step kind with its keys") {
    Findings f;
    Playbook pb = Parse(R"(description: d
nodes: [gpu]
steps:
  - name: a
    apply: [docker, services]
    batch: 2
    health: [systemctl, is-active, docker]
  - { name: b, accounts: archive, users: expired, within: 7 }
  - { name: c, wait_idle: true, on_busy: wait, timeout: 10m }
  - { name: d, command: [apt-get, -y, full-upgrade], unless: [test, -e, /x], creates: /y, timeout: 2h }
  - { name: e, confirm: "go on?" }
  - { name: f, apply: all }
)", f);
    CHECK(Errors(f) == "");
    REQUIRE(pb.steps.size() == 6);
    CHECK(pb.name == "t");
    CHECK(pb.nodes == std::vector<std::string>{"gpu"});
    CHECK(pb.steps[0].kind == StepKind::Apply);
    CHECK(pb.steps[0].modules == std::vector<std::string>{"docker", "services"});
    CHECK(pb.steps[0].batch == 2);
    CHECK(pb.steps[0].health.size() == 3);
    CHECK(pb.steps[1].action == AccountAction::Archive);
    CHECK(pb.steps[1].expired);
    CHECK(pb.steps[1].within_days == 7);
    CHECK(pb.steps[2].on_busy == OnBusy::Wait);
    CHECK(pb.steps[2].timeout_s == 600);
    CHECK(pb.steps[3].argv == std::vector<std::string>{"apt-get", "-y", "full-upgrade"});
    CHECK(pb.steps[3].creates == "/y");
    CHECK(pb.steps[3].command_timeout_s == 7200);
    CHECK(pb.steps[4].message == "go on?");
    CHECK(pb.steps[5].modules.empty());
    CHECK(pb.find_step("c") == 2u);
    CHECK(pb.find_step("3") == 2u);
    CHECK(!pb.find_step("7"));
    CHECK(!pb.find_step("zz"));
  }

  TEST_CASE("parse: mistakes are findings at file:line:col with what to do") {
    Findings f;
    Parse(R"(steps:
  - name: a
    aply: [docker]
  - name: b
    command: apt-get -y upgrade
  - name: b
    confirm: ok?
    batch: 2
  - { name: c, accounts: wipe, users: [x] }
  - { name: d, wait_idle: true, timeout: soon }
  - { name: e, apply: all, command: [true] }
  - { command: [true] }
  - { name: g, accounts: lock, users: [a], within: 3 }
  - { name: h, command: [true], creates: relative }
)", f);
    std::string e = Errors(f);
    INFO(e);
    CHECK(e.find("playbooks/t.yaml:2:5: unknown-step-kind: step 1 has no step kind") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:3:5: unknown-key:") != std::string::npos);
    CHECK(e.find("did you mean 'apply'?") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:5:14: wrong-type: 'command' must be a list of words (argv)") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:6:5: duplicate-step: two steps are named 'b'") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:8:5: unknown-key:") != std::string::npos);  // batch does not go with confirm
    CHECK(e.find("playbooks/t.yaml:9:26: invalid-value:") != std::string::npos);  // wipe
    CHECK(e.find("playbooks/t.yaml:10:42: invalid-value: 'timeout' must be a duration") != std::string::npos);
    CHECK(e.find("ambiguous-step: step 6 has several step kinds (apply, command)") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:12:5: missing-required:") != std::string::npos);
    CHECK(e.find("'within' only goes with `users: expired`") != std::string::npos);
    CHECK(e.find("'creates' must be an absolute path") != std::string::npos);
  }

  TEST_CASE("parse: snapshot steps") {
    Findings f;
    Playbook pb = Parse("steps:\n  - { name: s, nodes: storage, snapshot: /srv/home, to: /srv/snaps, keep: 2 }\n", f);
    CHECK(Errors(f) == "");
    REQUIRE(pb.steps.size() == 1);
    CHECK(pb.steps[0].kind == StepKind::Snapshot);
    CHECK(pb.steps[0].snapshot_of == "/srv/home");
    CHECK(pb.steps[0].snapshot_to == "/srv/snaps");
    CHECK(pb.steps[0].keep == 2);
    Findings g;
    Parse(R"(steps:
  - { name: a, snapshot: srv/home, to: /x }
  - { name: b, snapshot: "/srv/ho me", to: /x }
  - { name: c, snapshot: /srv/home }
  - { name: d, snapshot: /srv/home, to: /x/../y, keep: -1 }
)", g);
    std::string e = Errors(g);
    INFO(e);
    CHECK(e.find("playbooks/t.yaml:2:26: invalid-value: 'snapshot' takes the btrfs subvolume to snapshot") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:3:26: invalid-value: the last part of 'snapshot' names the snapshots") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:4:5: missing-required:") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:5:41: invalid-value: 'to' must be a plain absolute path") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:5:56: wrong-type: 'keep' of step 4 must be between 0 and 1000") != std::string::npos);  // keep: -1
  }

  TEST_CASE("parse: not a playbook") {
    Findings f;
    Parse("- a\n- b\n", f);
    CHECK(Errors(f).find("playbooks/t.yaml:1:1: wrong-type: a playbook is a map") != std::string::npos);
    Findings g;
    Parse("steps: []\n", g);
    CHECK(Errors(g).find("'steps' is empty") != std::string::npos);
    Findings h;
    Parse("description: x\n", h);
    CHECK(Errors(h).find("missing-required") != std::string::npos);
  }

  TEST_CASE("validate: unknown nodes, modules and accounts; archive without home_archive; the login user") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(nodes: [gpu, nope]
steps:
  - { name: a, apply: [dokcer] }
  - { name: b, accounts: remove, users: [olda, ghost] }
)", f);
    REQUIRE(Errors(f) == "");
    ValidatePlaybook(pb, inv, f);
    std::string e = Errors(f);
    CHECK(e.find("playbooks/t.yaml:1:8: unknown-node:") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:3:5: unknown-module: step 'a' applies the module 'dokcer', which does not exist; "
                 "did you mean 'docker'?") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:4:5: unknown-user: step 'b' names the account 'ghost'") != std::string::npos);

    std::string no_archive = kInv;
    no_archive.replace(no_archive.find("  home_archive: /var/backups/homes\n"), 35, "");
    Inventory inv2 = Load(no_archive);
    Findings g;
    Playbook pb2 = Parse("steps:\n  - { name: x, accounts: archive, users: expired }\n", g);
    ValidatePlaybook(pb2, inv2, g);
    CHECK(Errors(g).find("playbooks/t.yaml:2:5: missing-required: step 'x' (archive): user 'olda' has remove: archive "
                         "but the lab has no home_archive") != std::string::npos);

    // Locking the account labfleet logs in as would lock labfleet out: refused offline, and by the runner.
    std::string login = kInv;
    login.replace(login.find("  n2: { address"), 15, "  n2: { ssh: { user: stays, become: sudo }, address");
    Findings h;
    Inventory inv3 = Load(login, &h);
    REQUIRE(!h.has_errors());
    Playbook pb3 = Parse("steps:\n  - { name: x, accounts: remove, users: [stays] }\n", h);
    ValidatePlaybook(pb3, inv3, h);
    INFO(Errors(h));
    CHECK(Errors(h).find("playbooks/t.yaml:2:5: locks-out-login: step 'x': the account stays is the one labfleet logs in "
                         "as on n2 (ssh.user)") != std::string::npos);
    World w;
    PlaybookRun r = RunPlaybook(pb3, inv3, All(inv3), Real(), w.ops(), nullptr);
    CHECK(!r.ok);
    CHECK(w.applied.empty());
    CHECK(w.transports.empty());
  }

  TEST_CASE("accounts: expired selects by date (within days ahead); the step's inventory changes only those") {
    Inventory inv = Load(kInv);
    PlaybookStep st;
    st.kind = StepKind::Accounts;
    st.expired = true;
    auto names = [&] {
      std::vector<std::string> v;
      for (const UserDef* u : SelectAccounts(st, inv, kToday)) v.push_back(u->name);
      return Join(v, ",");
    };
    CHECK(names() == "olda,oldb");
    st.within_days = 2;
    CHECK(names() == "olda,oldb,soon");
    st.within_days = 0;
    st.action = AccountAction::Lock;
    Inventory locked = AccountsInventory(st, inv, kToday);
    CHECK(locked.user("olda") == nullptr);  // left out: the users module locks it where it exists
    CHECK(locked.user("oldb") == nullptr);
    CHECK(locked.user("soon")->expires == "2030-01-03");
    st.action = AccountAction::Archive;
    Inventory archived = AccountsInventory(st, inv, kToday);
    CHECK(archived.user("oldb")->remove);
    CHECK(archived.user("oldb")->archive_home);
    CHECK(!archived.user("stays")->remove);
    CHECK(!inv.user("olda")->remove);  // the loaded inventory is untouched
    CHECK(DaysOfDate("2030-02-30") == std::nullopt);
    CHECK(DaysOfDate("1970-01-02") == 1);
    CHECK(DateOfDays(kToday) == "2030-01-01");
    CHECK(DateOfDays(*DaysOfDate("2024-02-29")) == "2024-02-29");
  }

  TEST_CASE("dry run: plans and guards, never applies or runs a command") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: lock, accounts: lock, users: expired }
  - { name: ask, confirm: "sure?" }
  - { name: up, command: [apt-get, -y, full-upgrade], creates: /done }
  - { name: idle, wait_idle: true }
  - { name: conv, apply: all, batch: 1 }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    w.busy = {"n2"};
    for (auto n : {"n1", "n2", "n3", "n4"}) {
      w.transports[n] = std::make_shared<FakeTransport>(n);
      w.transports[n]->set_default({1, "", ""});  // the guard does not hold
    }
    w.transports["n1"]->on_contains("test -e /done", {0, "", ""}, true);
    RunnerOptions o = Real();
    o.execute = false;
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), o, w.ops(), nullptr);
    CHECK(r.ok);
    CHECK(w.applied.empty());
    CHECK(w.questions.empty());
    REQUIRE(r.steps.size() == 5);
    CHECK(r.steps[0].status == "dry-run");
    CHECK(r.steps[0].notes[0] == "lock 2 accounts: olda (expires 2020-01-31), oldb (expires 2021-06-30)");
    CHECK(Statuses(r.steps[0]) == "n1=planned n2=planned n3=planned n4=planned");
    CHECK(r.steps[0].nodes[0].changes == std::vector<std::string>{"- user olda (locked)", "- user oldb (locked)"});
    CHECK(r.steps[2].nodes[0].status == "unchanged");  // /done exists on n1
    CHECK(r.steps[2].nodes[1].status == "would-run");
    for (const auto& [node, t] : w.transports) CHECK(w.ran(node, "full-upgrade") == 0);
    CHECK(Statuses(r.steps[3]) == "n1=idle n2=skipped n3=idle n4=idle");
    CHECK(r.skipped.empty());  // a dry run leaves nobody out
    CHECK(Statuses(r.steps[4]) == "n1=planned n2=planned n3=planned n4=planned");
  }

  TEST_CASE("rolling apply: the first failing batch stops the run; later batches and steps never start") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: roll, apply: [files], batch: 2, health: [systemctl, is-active, docker] }
  - { name: after, command: [touch, /x] }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    w.transports["n3"] = std::make_shared<FakeTransport>("n3");
    w.transports["n3"]->on_contains("systemctl", {3, "", "inactive\n"}, true);
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), Real(), w.ops(), nullptr);
    CHECK(!r.ok);
    CHECK(r.stopped_at == "roll");
    CHECK(Statuses(r.steps[0]) == "n1=changed n2=changed n3=failed n4=changed");
    CHECK(r.steps[0].nodes[2].detail.find("health check systemctl is-active docker failed (exit 3): inactive") !=
          std::string::npos);
    CHECK(r.steps[0].nodes[0].detail == "1 change applied; re-plan empty; health check passed");
    CHECK(r.steps[0].notes == std::vector<std::string>{"batch 1/2 (2 nodes): ok",
                                                       "batch 2/2 (2 nodes): failed; later batches not started"});
    CHECK(r.steps[1].status == "not-started");
    CHECK(w.ran("n1", "touch") == 0);
    CHECK(w.with_reconnect == 4);

    // Batches of one: n2 fails its apply, so n3 and n4 are never applied.
    Findings g;
    Playbook one = Parse("steps:\n  - { name: roll, apply: all, batch: 1 }\n", g);
    World w2;
    w2.fail_apply = {"n2"};
    PlaybookRun r2 = RunPlaybook(one, inv, All(inv), Real(), w2.ops(), nullptr);
    CHECK(Statuses(r2.steps[0]) == "n1=changed n2=failed n3=not-started n4=not-started");
    CHECK(w2.applied.size() == 2);
    CHECK(r2.steps[0].nodes[1].detail == "change 1 failed");
  }

  TEST_CASE("wait_idle: busy and unknown nodes are left out (fail safe); wait re-checks; fail stops") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: idle, wait_idle: true }
  - { name: up, command: [apt-get, -y, full-upgrade], batch: 1 }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    w.busy = {"n2"};
    w.unknown = {"n3"};
    w.unreachable = {"n4"};
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), Real(), w.ops(), nullptr);
    CHECK(r.ok);
    CHECK(Statuses(r.steps[0]) == "n1=idle n2=skipped n3=skipped n4=skipped");
    CHECK(r.steps[0].nodes[2].detail.find("unknown: GPU use unknown: nvidia-smi failed") != std::string::npos);
    CHECK(r.steps[0].nodes[3].detail.find("unreachable: n4: connection refused") != std::string::npos);
    CHECK(Statuses(r.steps[1]) == "n1=changed");
    CHECK(w.ran("n1", "'timeout' 3600 'apt-get' '-y' 'full-upgrade'") + w.ran("n1", "timeout 3600 apt-get -y full-upgrade") == 1);
    CHECK(w.ran("n2", "full-upgrade") == 0);
    CHECK(r.skipped.size() == 3);

    Findings g;
    Playbook waiting = Parse("steps:\n  - { name: idle, wait_idle: true, on_busy: wait, timeout: 1m }\n", g);
    World w2;
    w2.busy = {"n2"};
    PlaybookRun r2 = RunPlaybook(waiting, inv, All(inv), Real(), w2.ops(), nullptr);
    CHECK(Statuses(r2.steps[0]) == "n1=idle n2=idle n3=idle n4=idle");  // the job ended during the first wait
    CHECK(w2.clock.time_since_epoch() == std::chrono::seconds(5));

    // --drain: a skip step waits first (the fake job ends during the first wait).
    World w4;
    w4.busy = {"n2"};
    RunnerOptions drain = Real();
    drain.drain_s = 60;
    PlaybookRun r4 = RunPlaybook(pb, inv, All(inv), drain, w4.ops(), nullptr);
    CHECK(Statuses(r4.steps[0]) == "n1=idle n2=idle n3=idle n4=idle");
    CHECK(Statuses(r4.steps[1]) == "n1=changed n2=changed n3=changed n4=changed");

    Findings h;
    Playbook failing = Parse("steps:\n  - { name: idle, wait_idle: true, on_busy: fail }\n  - { name: x, apply: all }\n", h);
    World w3;
    w3.unknown = {"n1"};
    PlaybookRun r3 = RunPlaybook(failing, inv, All(inv), Real(), w3.ops(), nullptr);
    CHECK(!r3.ok);
    CHECK(r3.steps[1].status == "not-started");
    CHECK(w3.applied.empty());
  }

  TEST_CASE("accounts steps apply only the users module, with the accounts changed; confirm; --from") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: lock, accounts: lock, users: expired }
  - { name: ask, confirm: "archive and delete?" }
  - { name: archive, accounts: archive, users: expired }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    RunnerOptions o = Real();
    o.ask = true;
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), o, w.ops(), nullptr);
    CHECK(r.ok);
    CHECK(w.questions == std::vector<std::string>{"archive and delete?"});
    CHECK(w.applied.size() == 8);
    for (const auto& a : w.applied) CHECK(a.ends_with(":users"));
    CHECK(r.steps[2].nodes[0].changes == std::vector<std::string>{"- user olda (archived)", "- user oldb (archived)"});

    World declined;
    declined.answer = false;
    PlaybookRun r2 = RunPlaybook(pb, inv, All(inv), o, declined.ops(), nullptr);
    CHECK(!r2.ok);
    CHECK(r2.steps[1].status == "declined");
    CHECK(r2.steps[2].status == "not-started");
    CHECK(declined.applied.size() == 4);  // the lock step only

    World from;
    RunnerOptions o3 = Real();
    o3.from = 2;
    PlaybookRun r3 = RunPlaybook(pb, inv, All(inv), o3, from.ops(), nullptr);
    CHECK(r3.steps[0].status == "skipped");
    CHECK(r3.steps[1].status == "skipped");
    CHECK(r3.steps[2].status == "done");
    CHECK(from.applied.size() == 4);
  }

  TEST_CASE("command: argv as quoted words behind its guard; a failure stops; an interrupt starts nothing") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: c, command: [sh, -c, "echo $HOME; rm -rf /tmp/x"], unless: [grep, -q, "a b", /etc/x] }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    for (auto n : {"n1", "n2", "n3", "n4"}) w.transports[n] = std::make_shared<FakeTransport>(n);
    w.transports["n1"]->on_contains("grep", {0, "", ""});
    w.transports["n2"]->on_contains("grep", {1, "", ""});
    w.transports["n2"]->respond([](const std::string&, const std::string&) { return RunResult{1, "", "boom\n"}; });
    w.transports["n3"]->on_contains("grep", {1, "", ""});
    w.transports["n4"]->on_contains("grep", {1, "", ""});
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), Real(), w.ops(), nullptr);
    CHECK(Statuses(r.steps[0]) == "n1=unchanged n2=failed n3=changed n4=changed");
    CHECK(r.steps[0].nodes[1].detail == "exit 1: boom");
    auto calls = w.transports["n3"]->calls();
    REQUIRE(calls.size() == 3);
    // After the command: the node's progress record (step 0 done).
    CHECK(calls[2].command == ScriptRunner());
    CHECK(calls[2].stdin_data.find("/var/lib/labfleet/playbooks/t.progress") != std::string::npos);
    CHECK(calls[2].stdin_data.find("done=0") != std::string::npos);
    const std::string guard = Cmd("grep").arg("-q").arg("a b").arg("/etc/x").str() + " >/dev/null 2>&1";
    CHECK(calls[0].command == "sh -c " + ShellQuote(guard) + " </dev/null");
    // The command itself: a script on stdin that takes the node lock, checks the guard again, then runs argv.
    CHECK(calls[1].command == ScriptRunner());
    const std::string& script = calls[1].stdin_data;
    CHECK(script.find("( set -C; lf_lock_write > /run/labfleet.lock )") != std::string::npos);
    CHECK(script.find("\nif " + guard + "; then printf") != std::string::npos);
    CHECK(script.find("\n" + Cmd("timeout").arg("3600").arg("sh").arg("-c").arg("echo $HOME; rm -rf /tmp/x").str() +
                      " </dev/null") > script.find("lf_lock_write > /run/labfleet.lock"));
    CHECK(w.ran("n1", "timeout") == 0);

    // Another run holds the node lock: the command does not run, and the holder is named.
    World locked;
    locked.transports["n1"] = std::make_shared<FakeTransport>("n1");
    locked.transports["n1"]->on_contains("grep", {1, "", ""});
    locked.transports["n1"]->respond([](const std::string&, const std::string& in) {
      // The nonce the script prints its markers with: `printf '@@lf-%s:locked\n' NONCE`.
      size_t at = in.find(":locked\\n' ");
      if (at == std::string::npos) return RunResult{0, "", ""};
      std::string nonce = in.substr(at + 11, in.find('\n', at) - at - 11);
      if (nonce.size() > 1 && nonce[0] == '\'') nonce = nonce.substr(1, nonce.size() - 2);
      return RunResult{75, "@@lf-" + nonce + ":locked\nalive: node-side process 77 still runs\nrun=r1\nwho=alice@laptop\n"
                           "host=laptop\npid=4242\nsince=1\nnode_pid=77\n", ""};
    });
    PlaybookRun rl = RunPlaybook(pb, inv, {&inv.nodes[0]}, Real(), locked.ops(), nullptr);
    CHECK(Statuses(rl.steps[0]) == "n1=failed");
    INFO(rl.steps[0].nodes[0].detail);
    CHECK(rl.steps[0].nodes[0].detail.find("node n1 is locked by alice@laptop") != std::string::npos);
    CHECK(rl.steps[0].nodes[0].detail.find("another apply is running") != std::string::npos);

    std::atomic<bool> stop{true};
    World w2;
    PlaybookRun r2 = RunPlaybook(pb, inv, All(inv), Real(), w2.ops(), &stop);
    CHECK(!r2.ok);
    CHECK(r2.steps[0].status == "not-started");
    CHECK(w2.transports.empty());
  }

  TEST_CASE("end_sessions: kills only the selected accounts' processes (uid >= 1000); the node's answer is bounded") {
    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse("steps:\n  - { name: end, accounts: end_sessions, users: expired }\n", f);
    REQUIRE(Errors(f) == "");
    REQUIRE(pb.steps[0].action == AccountAction::EndSessions);
    CHECK(AccountsInventory(pb.steps[0], inv, kToday).users.size() == inv.users.size());  // the inventory stays
    World w;
    for (auto n : {"n1", "n2", "n3", "n4"}) w.transports[n] = std::make_shared<FakeTransport>(n);
    // n1: olda had 2 processes; a line naming another account, a garbage line and a forged count are ignored.
    w.transports["n1"]->respond([](const std::string&, const std::string&) {
      return RunResult{0, "olda\t2\t0\nstays\t5\t0\ngarbage\noldb\tmany\t0\n", ""};
    });
    w.transports["n2"]->respond([](const std::string&, const std::string&) { return RunResult{0, "oldb\t1\t1\n", ""}; });
    w.transports["n3"]->respond([](const std::string&, const std::string&) { return RunResult{0, "", ""}; });
    w.transports["n4"]->respond([](const std::string&, const std::string&) { return RunResult{0, "", ""}; });
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), Real(), w.ops(), nullptr);
    CHECK(Statuses(r.steps[0]) == "n1=changed n2=failed n3=unchanged n4=unchanged");
    CHECK(r.steps[0].nodes[0].detail == "ended the processes of olda (2)");
    CHECK(r.steps[0].nodes[1].detail == "processes still running after SIGKILL: oldb (1)");
    CHECK(w.applied.empty());  // not an apply
    const std::string script = w.transports["n1"]->calls().at(0).stdin_data;
    CHECK(script.find("lf_uid=$(getent passwd olda | cut -d: -f3)") != std::string::npos);
    CHECK(script.find("[ \"$lf_uid\" -ge 1000 ]") != std::string::npos);
    CHECK(script.find("pkill -KILL -u \"$lf_uid\"") != std::string::npos);
    CHECK(script.find("/run/labfleet.lock") != std::string::npos);
    CHECK(script.find("stays") == std::string::npos);

    // A dry run counts and kills nothing.
    World dry;
    RunnerOptions o = Real();
    o.execute = false;
    dry.transports["n1"] = std::make_shared<FakeTransport>("n1");
    dry.transports["n1"]->respond([](const std::string&, const std::string&) { return RunResult{0, "olda\t3\t0\n", ""}; });
    PlaybookRun rd = RunPlaybook(pb, inv, {&inv.nodes[0]}, o, dry.ops(), nullptr);
    CHECK(rd.steps[0].nodes[0].status == "planned");
    CHECK(rd.steps[0].nodes[0].detail == "would end the processes of olda (3)");
    CHECK(dry.ran("n1", "pkill") == 0);
    CHECK(dry.ran("n1", "labfleet.lock") == 0);
  }

  TEST_CASE("a step's nodes: only those of the run's nodes; unknown names are findings") {
    std::string text = kInv;
    text.replace(text.find("  n4: { address: 10.9.0.4, groups: [gpu] }"), 42, "  n4: { address: 10.9.0.4, groups: [storage] }");
    text.replace(text.find("  gpu: {}"), 9, "  gpu: {}\n  storage: {}");
    Inventory inv = Load(text);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: snap, nodes: storage, command: [btrfs, subvolume, snapshot, -r, /home, /snap] }
  - { name: all, command: [true] }
  - { name: two, nodes: [n1, n4], command: [touch, /x] }
)", f);
    REQUIRE(Errors(f) == "");
    ValidatePlaybook(pb, inv, f);
    REQUIRE(Errors(f) == "");
    World w;
    PlaybookRun r = RunPlaybook(pb, inv, {&inv.nodes[0], &inv.nodes[1], &inv.nodes[3]}, Real(), w.ops(), nullptr);
    CHECK(r.ok);
    CHECK(Statuses(r.steps[0]) == "n4=changed");
    CHECK(Statuses(r.steps[1]) == "n1=changed n2=changed n4=changed");
    CHECK(Statuses(r.steps[2]) == "n1=changed n4=changed");
    CHECK(w.ran("n1", "btrfs") == 0);
    CHECK(w.ran("n4", "btrfs") == 1);
    // n3 is outside the run's selection: never added by a step.
    Findings g;
    Playbook only3 = Parse("steps:\n  - { name: x, nodes: [n3], command: [true] }\n", g);
    World w2;
    PlaybookRun r2 = RunPlaybook(only3, inv, {&inv.nodes[0]}, Real(), w2.ops(), nullptr);
    CHECK(Statuses(r2.steps[0]) == "");
    CHECK(w2.transports.empty());
    Findings h;
    Playbook bad = Parse("steps:\n  - { name: x, nodes: [nas], command: [true] }\n", h);
    ValidatePlaybook(bad, inv, h);
    INFO(Errors(h));
    CHECK(Errors(h).find("playbooks/t.yaml:2:23: unknown-node: step 'x': ") != std::string::npos);
  }

  TEST_CASE("progress records: parsed strictly; --resume skips on each node the steps its record lists") {
    CHECK(ProgressFile("semester-end") == "/var/lib/labfleet/playbooks/semester-end.progress");
    CHECK(ProgressFile("../x y") == "/var/lib/labfleet/playbooks/_.._x_y.progress");
    auto rec = ParseProgress("run=20261205T1-abc\nplaybook=ID\ndone=0,2,9,x,\ngarbage\n", "ID", 3);
    CHECK(rec.run_id == "20261205T1-abc");
    CHECK(rec.done == std::set<size_t>{0, 2});
    CHECK(ParseProgress("run=r\nplaybook=OTHER\ndone=0\n", "ID", 3).done.empty());
    CHECK(ParseProgress("run=r;rm\nplaybook=ID\ndone=0\n", "ID", 3).done.empty());
    CHECK(ParseProgress("done=0\n", "", 3).done.empty());

    Inventory inv = Load(kInv);
    Findings f;
    Playbook pb = Parse(R"(steps:
  - { name: a, apply: all }
  - { name: idle, wait_idle: true }
  - { name: b, command: [touch, /x] }
  - { name: c, apply: all }
)", f);
    REQUIRE(Errors(f) == "");
    World w;
    for (auto n : {"n1", "n2", "n3", "n4"}) w.transports[n] = std::make_shared<FakeTransport>(n);
    w.transports["n1"]->on_contains("head -c 4096", {0, "run=r1\nplaybook=ID\ndone=0,1,2\n", ""});
    w.transports["n2"]->on_contains("head -c 4096", {0, "run=r1\nplaybook=ID\ndone=0\n", ""});
    w.transports["n3"]->on_contains("head -c 4096", {0, "run=r0\nplaybook=OLD\ndone=0,2\n", ""});
    w.transports["n4"]->on_contains("head -c 4096", {1, "", ""});
    RunnerOptions o = Real();
    o.resume = true;
    o.playbook_id = "ID";
    PlaybookRun r = RunPlaybook(pb, inv, All(inv), o, w.ops(), nullptr);
    CHECK(r.ok);
    CHECK(Statuses(r.steps[0]) == "n1=done-earlier n2=done-earlier n3=changed n4=changed");
    CHECK(r.steps[0].nodes[0].detail == "done in an earlier run (r1); skipped by --resume");
    CHECK(Statuses(r.steps[1]) == "n1=idle n2=idle n3=idle n4=idle");  // busy state is always checked again
    CHECK(Statuses(r.steps[2]) == "n1=done-earlier n2=changed n3=changed n4=changed");
    CHECK(Statuses(r.steps[3]) == "n1=changed n2=changed n3=changed n4=changed");
    CHECK(w.ran("n1", "touch") == 0);
    CHECK(w.ran("n2", "touch") == 1);
    // Every step done: the records are removed.
    for (auto n : {"n1", "n2", "n3", "n4"}) CHECK(w.ran(n, "rm -f /var/lib/labfleet/playbooks/t.progress") == 1);

    // Without --resume the records are neither read nor followed.
    World plain;
    PlaybookRun r2 = RunPlaybook(pb, inv, All(inv), Real(), plain.ops(), nullptr);
    CHECK(Statuses(r2.steps[0]) == "n1=changed n2=changed n3=changed n4=changed");
    CHECK(plain.ran("n1", "head -c 4096") == 0);
  }

  TEST_CASE("accounts: snapshot and delete_data parse; their keys are checked") {
    Findings f;
    Playbook pb = Parse("steps:\n"
                        "  - { name: s, nodes: n1, accounts: snapshot, users: expired, homes: /srv/home, to: /srv/snaps, keep: 2 }\n"
                        "  - { name: d, accounts: delete_data, users: [olda] }\n", f);
    CHECK(Errors(f) == "");
    REQUIRE(pb.steps.size() == 2);
    CHECK(pb.steps[0].action == AccountAction::Snapshot);
    CHECK(pb.steps[0].homes == "/srv/home");
    CHECK(pb.steps[0].snapshot_to == "/srv/snaps");
    CHECK(pb.steps[0].keep == 2);
    CHECK(pb.steps[1].action == AccountAction::DeleteData);
    CHECK(pb.steps[1].homes == "");
    Inventory inv = Load(kInv);
    CHECK(AccountsInventory(pb.steps[0], inv, kToday).users.size() == inv.users.size());  // the inventory stays
    Findings g;
    Parse(R"(steps:
  - { name: a, accounts: snapshot, users: expired }
  - { name: b, accounts: lock, users: expired, to: /x, keep: 1 }
  - { name: c, accounts: delete_data, users: expired, homes: srv/home }
  - { name: d, accounts: lock, users: expired, homes: /srv/home }
)", g);
    std::string e = Errors(g);
    INFO(e);
    CHECK(e.find("playbooks/t.yaml:2:5: missing-required:") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:3:48: invalid-value: 'to' only goes with `accounts: snapshot`") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:3:56: invalid-value: 'keep' only goes with `accounts: snapshot`") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:4:62: invalid-value: 'homes' must be a plain absolute path") != std::string::npos);
    CHECK(e.find("playbooks/t.yaml:5:48: invalid-value: 'homes' only goes with") != std::string::npos);
  }

  TEST_CASE("accounts lock: a directory account stays with shadowExpire 1; the directory module is applied too") {
    Inventory inv = Load(std::string(kInv) + "");
    inv.users[0].accounts = "directory";  // olda lives in the directory
    PlaybookStep st;
    st.kind = StepKind::Accounts;
    st.expired = true;
    st.action = AccountAction::Lock;
    Inventory locked = AccountsInventory(st, inv, kToday);
    REQUIRE(locked.user("olda") != nullptr);
    CHECK(locked.user("olda")->expires == "1970-01-02");
    CHECK(locked.user("oldb") == nullptr);  // local: left out, the users module locks it
    CHECK(AccountsModules(inv) == std::vector<std::string>{"users"});
    Inventory withdir = LoadUnvalidated(R"(lab:
  name: t
  directory: { server: n1, base: "dc=t,dc=example" }
nodes:
  n1: { address: 10.9.0.1 }
)");
    CHECK(AccountsModules(withdir) == std::vector<std::string>{"users", "directory"});
  }

  TEST_CASE("delete_data deletes only what a checked snapshot (or archive) of this run covers; a failed snapshot deletes nothing") {
    std::string text = kInv;
    text.replace(text.find("  gpu: {}"), 9, "  gpu: { rootless_docker: { data_root: \"/local/.docker/{{user}}\" } }");
    Inventory inv = Load(text);
    Findings f;
    Playbook pb = Parse("steps:\n"
                        "  - { name: snap, nodes: n1, accounts: snapshot, users: expired, homes: /srv/home, to: /srv/snaps, keep: 1 }\n"
                        "  - { name: del, nodes: [n1, n2], accounts: delete_data, users: expired, homes: /srv/home }\n", f);
    REQUIRE(Errors(f) == "");
    auto run = [&](const std::string& snapshot_answer, int snapshot_exit) {
      auto w = std::make_unique<World>();
      for (auto n : {"n1", "n2"}) {
        w->transports[n] = std::make_shared<FakeTransport>(n);
        w->transports[n]->respond([=](const std::string&, const std::string& script) {
          if (script.find("lf_find") != std::string::npos) return RunResult{snapshot_exit, snapshot_answer, "no btrfs"};
          // delete_data: claims for every path in the script, plus a forged line for a path it was not given
          std::string out = "removed\tolda\t/etc\t1\n";
          for (const char* p : {"/local/.docker/olda", "/srv/home/olda", "/local/.docker/oldb", "/srv/home/oldb"})
            if (script.find(std::string(p) + "\n") != std::string::npos || script.find(std::string(p) + " ") != std::string::npos)
              out += std::string("removed\t") + (std::string(p).find("olda") != std::string::npos ? "olda" : "oldb") + "\t" + p + "\t8\n";
          return RunResult{0, out, ""};
        });
      }
      PlaybookRun r = RunPlaybook(pb, inv, {&inv.nodes[0], &inv.nodes[1]}, Real(), w->ops(), nullptr);
      return std::make_pair(std::move(w), r);
    };
    // olda's snapshot made and checked; oldb has neither home nor snapshot: only olda's data goes.
    auto [w, r] = run("created\tolda\t/srv/snaps/homes-2030-01-01/olda\nmissing\toldb\t\ncreated\tstays\t/x\n"
                      "pruned\thomes-2029-06-30\t\n", 0);
    CHECK(r.ok);
    CHECK(Statuses(r.steps[0]) == "n1=changed");
    CHECK(r.steps[0].nodes[0].detail == "snapshot made and checked: olda; no home and no snapshot (nothing of theirs is "
                                        "deleted): oldb; pruned homes-2029-06-30");
    CHECK(Statuses(r.steps[1]) == "n1=changed n2=changed");
    CHECK(r.steps[1].nodes[0].changes ==
          std::vector<std::string>{"- /local/.docker/olda (olda, 8 KiB)", "- /srv/home/olda (olda, 8 KiB)"});
    CHECK(r.steps[1].nodes[1].detail == "deleted 2 paths; kept (no snapshot or archive of theirs checked in this run): oldb");
    std::string del;
    for (const auto& c : w->transports["n2"]->calls())
      if (c.stdin_data.find("lf_kib") != std::string::npos) del = c.stdin_data;
    CHECK(del.find("oldb") == std::string::npos);
    CHECK(del.find("rm -rf --one-file-system -- /local/.docker/olda ") != std::string::npos);
    CHECK(del.find("lf_rootonly /local/.docker ") != std::string::npos);
    const std::string snap = w->transports["n1"]->calls().at(0).stdin_data;
    CHECK(snap.find("btrfs subvolume snapshot -r /srv/home/olda /srv/snaps/homes-") != std::string::npos);
    CHECK(snap.find("lf_rootonly /srv/snaps ") != std::string::npos);
    CHECK(snap.find("cmp -s") != std::string::npos);

    // The snapshot fails: the run stops there and nothing is deleted anywhere.
    auto [w2, r2] = run("", 1);
    CHECK(!r2.ok);
    CHECK(Statuses(r2.steps[0]) == "n1=failed");
    CHECK(r2.steps[0].nodes[0].detail == "snapshot of the homes under /srv/snaps failed (exit 1): no btrfs; nothing after this step runs");
    CHECK(r2.steps[1].status == "not-started");
    CHECK(w2->ran("n2", "rm -rf") == 0);
    CHECK(w2->ran("n1", "rm -rf") == 0);

    // Without a snapshot step, delete_data deletes nothing at all.
    Playbook only = Parse("steps:\n  - { name: del, accounts: delete_data, users: expired }\n", f);
    World w3;
    w3.transports["n2"] = std::make_shared<FakeTransport>("n2");
    w3.transports["n2"]->respond([](const std::string&, const std::string&) { return RunResult{0, "", ""}; });
    PlaybookRun r3 = RunPlaybook(only, inv, {&inv.nodes[1]}, Real(), w3.ops(), nullptr);
    CHECK(Statuses(r3.steps[0]) == "n2=unchanged");
    CHECK(r3.steps[0].nodes[0].detail ==
          "no data of the checked accounts here; kept (no snapshot or archive of theirs checked in this run): olda, oldb");
    CHECK(w3.ran("n2", "rm -rf") == 0);
  }

  TEST_CASE("reboot: idle nodes that need it, a batch at a time, back with a new boot id and checked; a failed check stops") {
    Inventory inv = Load(R"(lab:
  name: t
nodes:
  n1: { address: 10.9.0.1, gpus: 2 }
  n2: { address: 10.9.0.2, gpus: 2 }
  n3: { address: 10.9.0.3, gpus: 2 }
  n4: { address: 10.9.0.4, gpus: 2 }
)");
    Findings f;
    Playbook pb = Parse("steps:\n  - { name: reboot, reboot: when_required, timeout: 1m }\n", f);
    REQUIRE(Errors(f) == "");
    CHECK(pb.steps[0].kind == StepKind::Reboot);
    CHECK(pb.steps[0].batch == 1);
    CHECK(pb.steps[0].reboot_timeout_s == 60);
    struct State {
      bool required = true, rebooted = false, comes_back = true;
      int gpus_after = 2;
    };
    const std::string kOld = "0b5e6c7a-1111-4f00-9a9a-000000000001:1", kNew = "0b5e6c7a-2222-4f00-9a9a-000000000002:7";
    auto world = [&](std::map<std::string, State>& st) {
      auto w = std::make_unique<World>();
      for (auto& [name, _] : st) {
        w->transports[name] = std::make_shared<FakeTransport>(name);
        State* s = &st[name];
        w->transports[name]->respond([=](const std::string& cmd, const std::string& in) {
          const std::string all = cmd + "\n" + in;
          if (all.find("reboot-required") != std::string::npos)
            return RunResult{0, "boot=" + (s->rebooted ? kNew : kOld) + "\n" + (s->required ? "required\n" : ""), ""};
          if (all.find("systemctl reboot") != std::string::npos) {
            s->rebooted = s->comes_back;
            s->required = !s->comes_back;
            return RunResult{0, "", ""};
          }
          if (all.find("random/boot_id") != std::string::npos) return RunResult{0, "boot=" + (s->rebooted ? kNew : kOld) + "\n", ""};
          if (all.find("nvidia-smi") != std::string::npos) {
            std::string out = "garbage\n";
            for (int i = 0; i < s->gpus_after; ++i) out += "GPU-" + std::to_string(i) + "aaaa-bbbb\n";
            return RunResult{0, out, ""};
          }
          return RunResult{0, "", ""};
        });
      }
      return w;
    };
    RunnerOptions o = Real();
    o.reboot = true;
    {
      std::map<std::string, State> st{{"n1", {}}, {"n2", {}}, {"n3", {}}, {"n4", {}}};
      st["n2"].required = false;
      st["n3"].gpus_after = 1;  // a GPU did not come back
      auto w = world(st);
      PlaybookRun r = RunPlaybook(pb, inv, All(inv), o, w->ops(), nullptr);
      CHECK(!r.ok);
      CHECK(Statuses(r.steps[0]) == "n1=changed n2=unchanged n3=failed n4=not-started");
      CHECK(r.steps[0].nodes[0].detail == "rebooted and back; checked: 2 GPUs");
      CHECK(r.steps[0].nodes[1].detail == "no reboot needed");
      CHECK(r.steps[0].nodes[2].detail == "rebooted and back; check failed: 1 GPUs visible, the inventory says 2");
      CHECK(w->ran("n1", "systemctl reboot") == 1);
      CHECK(w->ran("n1", "/run/labfleet.lock") >= 1);  // the reboot is started under the node lock
      CHECK(w->ran("n2", "systemctl reboot") == 0);
      CHECK(w->ran("n4", "systemctl reboot") == 0);  // the rollout stopped before it
    }
    {  // a node that does not come back (the boot id never changes) fails; a busy node is skipped, not rebooted
      std::map<std::string, State> st{{"n1", {}}, {"n2", {}}};
      st["n2"].comes_back = false;
      auto w = world(st);
      w->busy.insert("n1");
      PlaybookRun r = RunPlaybook(pb, inv, {&inv.nodes[0], &inv.nodes[1]}, o, w->ops(), nullptr);
      CHECK(Statuses(r.steps[0]) == "n1=skipped n2=failed");
      CHECK(r.steps[0].nodes[0].detail.find("not rebooted (reboot pending (/run/reboot-required))") != std::string::npos);
      CHECK(r.steps[0].nodes[1].detail ==
            "rebooted, but it did not come back with a new boot id within 60 s (still the old boot id)");
      CHECK(w->ran("n1", "systemctl reboot") == 0);
    }
    {  // without --reboot (and in a dry run) the nodes that need one are listed, none is rebooted
      std::map<std::string, State> st{{"n1", {}}, {"n2", {}}};
      st["n2"].required = false;
      auto w = world(st);
      PlaybookRun r = RunPlaybook(pb, inv, {&inv.nodes[0], &inv.nodes[1]}, Real(), w->ops(), nullptr);
      CHECK(r.ok);
      CHECK(Statuses(r.steps[0]) == "n1=pending n2=unchanged");
      CHECK(w->ran("n1", "systemctl reboot") == 0);
      RunnerOptions dry = o;
      dry.execute = false;
      PlaybookRun d = RunPlaybook(pb, inv, {&inv.nodes[0]}, dry, w->ops(), nullptr);
      CHECK(Statuses(d.steps[0]) == "n1=planned");
      CHECK(w->ran("n1", "systemctl reboot") == 0);
    }
    {  // docker and mounts are checked where the node has those settings: docker inactive, a mount missing
      Inventory dm = Load(R"(lab:
  name: t
nodes:
  n1: { address: 10.9.0.1, groups: [g] }
groups:
  g:
    docker: { data_root: /local/.docker }
    mounts:
      - { target: /mnt/scratch, type: tmpfs, options: [size=8m] }
)");
      std::map<std::string, State> st{{"n1", {}}};
      auto w = world(st);
      PlaybookRun r = RunPlaybook(pb, dm, All(dm), o, w->ops(), nullptr);
      CHECK(Statuses(r.steps[0]) == "n1=failed");
      // the fake answers systemctl with nothing, and its plan of any module but users/busy has a change
      CHECK(r.steps[0].nodes[0].detail ==
            "rebooted and back; check failed: docker is not active; mounts differ from the inventory (~ file /etc/motd)");
      CHECK(w->ran("n1", "systemctl is-active docker") == 1);
    }
    Findings g;
    Parse("steps:\n  - { name: r, reboot: sometimes, keep: 1 }\n", g);
    INFO(Errors(g));
    CHECK(Errors(g).find("playbooks/t.yaml:2:24: invalid-value:") != std::string::npos);
    CHECK(Errors(g).find("unknown-key") != std::string::npos);
  }

  TEST_CASE("the shipped playbooks parse and validate against the example inventory") {
    const std::filesystem::path root = LABFLEET_SOURCE_DIR;
    Findings f;
    Inventory inv = LoadInventoryDir((root / "inventory").string(), f);
    REQUIRE(!f.has_errors());
    size_t n = ValidatePlaybooksDir((root / "inventory").string(), inv, f);
    CHECK(n >= 3);
    CHECK(Errors(f) == "");
    for (const char* name : {"semester-end", "upgrade", "rolling-apply"}) {
      CAPTURE(name);
      std::string path = PlaybookPath((root / "inventory").string(), name);
      CHECK(std::filesystem::exists(path));
      Findings g;
      Playbook pb = ParsePlaybook(ReadAll(path), path, g);
      CHECK(!g.has_errors());
      CHECK(!pb.steps.empty());
      CHECK(!pb.description.empty());
    }
  }
}

TEST_SUITE("playbook") {
  TEST_CASE("accounts: report: the node's lines parsed as untrusted (real lastlog output), and written as safe CSV") {
    // tests/fixtures/playbooks/account_report.txt: what the report script prints, with lastlog's real lines
    // (one set with `lastlog -S`, others never logged in), a garbage line, a relative home, an oversized size,
    // a duplicate and a user who is not selected (with terminal escapes in its line).
    auto rows = ParseAccountReport(Fixture("playbooks/account_report.txt"), {"olda", "oldb", "soon"});
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].user == "olda");
    CHECK(rows[0].home == "/home/olda");
    CHECK(rows[0].home_kib == 1208);  // the first line for a user counts; the duplicate is ignored
    CHECK(rows[0].last_login == "lastlog localhost Sat Dec 5 21:45:46 +0000 2026");
    CHECK(rows[1].user == "oldb");
    CHECK(rows[1].home_kib == -1);  // du gave nothing: unknown, not 0
    CHECK(rows[1].last_login == "never");
    CHECK(rows[2].user == "soon");
    CHECK(rows[2].home == "");  // not an absolute path: not shown as one
    CHECK(rows[2].home_kib == -1);
    CHECK(rows[2].last_login == "unknown");
    auto evil = ParseAccountReport(Fixture("playbooks/account_report.txt"), {"evil"});
    REQUIRE(evil.size() == 1);
    CHECK(evil[0].last_login.find('\033') == std::string::npos);
    CHECK(evil[0].last_login.find('\007') == std::string::npos);

    rows[0].node = "node1";
    rows[0].expires = "2024-01-31";
    AccountReportRow formula;
    formula.node = "node2";
    formula.user = "x";
    formula.home = "/home/x";
    formula.last_login = "=HYPERLINK(\"http://evil\")";
    CHECK(AccountReportCsv({rows[0], formula}) ==
          "node,user,expires,home,home_kib,last_login\r\n"
          "\"node1\",\"olda\",\"2024-01-31\",\"/home/olda\",\"1208\",\"lastlog localhost Sat Dec 5 21:45:46 +0000 2026\"\r\n"
          "\"node2\",\"x\",\"\",\"/home/x\",\"\",\"'=HYPERLINK(\"\"http://evil\"\")\"\r\n");
  }

  TEST_CASE("accounts: report parses and validates; it never counts as locking out the login user") {
    Findings f;
    Playbook pb = ParsePlaybook("steps:\n  - { name: list, accounts: report, users: expired }\n", "pb.yaml", f);
    CHECK_FALSE(f.has_errors());
    REQUIRE(pb.steps.size() == 1);
    CHECK(pb.steps[0].action == AccountAction::Report);
    CHECK(std::string(AccountActionName(pb.steps[0].action)) == "report");
    // Reading root's home size is harmless; locking root is refused.
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  n1: { address: 10.0.0.1 }\nusers:\n  root: { uid: 0 }\n");
    PlaybookStep st;
    st.kind = StepKind::Accounts;
    st.users = {"root"};
    std::vector<const NodeDef*> nodes{&inv.nodes[0]};
    st.action = AccountAction::Report;
    CHECK(AccountsRefusal(st, inv, nodes, TodayDays()) == "");
    st.action = AccountAction::Lock;
    CHECK(AccountsRefusal(st, inv, nodes, TodayDays()) != "");
  }
}
