// A test that dies halfway must not leave sandbox nodes behind. The owner of a sandbox here is a child process
// (this test binary re-executed to run only the hidden helper test case below), killed while its nodes run: with
// SIGKILL (nothing of it runs any more: the `sandbox watch` process takes the nodes down), with SIGKILL while its
// `up` is still in flight (the watcher waits for that `up`, then takes down what it made), and with SIGTERM (the
// wrapper's signal handler takes the nodes down before the process dies). Afterwards none of what the nodes were
// remains: no node init, holder or process below an init (sshd), no mount or PID namespace of a node, no loop
// device on a btrfs image, nothing in the host's mountinfo, no directory.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

extern char** environ;

namespace fs = std::filesystem;
using labfleet::Cmd;
using namespace labfleet::testing;

namespace {

constexpr const char* kHelperName = "sandbox-teardown-helper";
constexpr int kHelperFd = 3;  // the helper reports its sandbox's directory on this descriptor

// ---- processes, as the host sees them --------------------------------------------------------------------

// Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, ... [19] starttime.
std::vector<std::string> StatFields(pid_t pid) {
  std::string s = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = s.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream in(s.substr(close + 1));
  std::vector<std::string> f;
  for (std::string w; in >> w;) f.push_back(w);
  return f;
}

// A process identified by PID and start time, so that a reused PID is not mistaken for it.
struct Proc {
  pid_t pid = -1;
  std::string start;
  std::string comm;
};

std::optional<Proc> Observe(pid_t pid) {
  auto f = StatFields(pid);
  if (f.size() < 20 || f[0] == "Z" || f[0] == "X") return std::nullopt;
  std::string comm = ReadFile("/proc/" + std::to_string(pid) + "/comm");
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return Proc{pid, f[19], comm};
}

bool Alive(const Proc& p) {
  auto now = Observe(p.pid);
  return now && now->start == p.start;
}

bool AlivePid(pid_t pid) { return Observe(pid).has_value(); }

pid_t ParentOf(pid_t pid) {
  auto f = StatFields(pid);
  return f.size() > 1 ? pid_t(std::atoi(f[1].c_str())) : -1;
}

// PID and every process below it.
void Tree(pid_t pid, std::vector<Proc>& out) {
  auto p = Observe(pid);
  if (!p) return;
  out.push_back(*p);
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::istringstream in(ReadFile(t.path() / "children"));
    for (pid_t c; in >> c;) Tree(c, out);
  }
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") == std::string::npos) out.push_back(std::atoi(name.c_str()));
  }
  return out;
}

std::vector<std::string> Argv(pid_t pid) {
  std::string raw = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> out;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    out.push_back(raw.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string ArgAfter(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) return argv[i + 1];
  return "";
}

// The `sandbox watch` processes started by `owner`: their PID, --dir and --after. (Only the owner's children:
// a watcher's own forks carry its command line until they exec.)
struct Watcher {
  pid_t pid = -1;
  std::string dir;
  pid_t after = -1;
};
std::vector<Watcher> Watchers(pid_t owner) {
  std::vector<Watcher> out;
  for (pid_t pid : AllPids()) {
    auto argv = Argv(pid);
    if (argv.size() < 3 || argv[1] != SandboxScript() || argv[2] != "watch" || ParentOf(pid) != owner) continue;
    std::string after = ArgAfter(argv, "--after");
    out.push_back({pid, ArgAfter(argv, "--dir"), after.empty() ? -1 : pid_t(std::atoi(after.c_str()))});
  }
  return out;
}

// Any process whose command line mentions `needle`.
std::vector<std::string> ProcessesMentioning(const std::string& needle) {
  std::vector<std::string> out;
  for (pid_t pid : AllPids()) {
    std::string line;
    for (const auto& a : Argv(pid)) line += a + " ";
    if (line.find(needle) != std::string::npos) out.push_back(std::to_string(pid) + ": " + line);
  }
  return out;
}

// Every namespace link (`mnt:[4026532...]`, `pid:[...]`) some process on the host is in.
std::set<std::string> LiveNamespaces() {
  std::set<std::string> out;
  for (pid_t pid : AllPids())
    for (const char* kind : {"mnt", "pid"}) {
      std::error_code ec;
      auto l = fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + kind, ec);
      if (!ec) out.insert(l.string());
    }
  return out;
}

std::string Host(const Cmd& c) { return RunCommand(c.str()).out; }

// Polls `done` every 10 ms for at most `limit_s` (a generous bound: the wait normally ends far sooner).
bool WaitFor(const std::function<bool()>& done, double limit_s = 30) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// "KEY VALUE" lines of a node's status file.
std::multimap<std::string, std::string> StatusOf(const fs::path& file) {
  std::multimap<std::string, std::string> out;
  std::istringstream in(ReadFile(file));
  for (std::string line; std::getline(in, line);) {
    auto sp = line.find(' ');
    out.emplace(line.substr(0, sp), sp == std::string::npos ? "" : line.substr(sp + 1));
  }
  return out;
}

// ---- what a sandbox consists of while its nodes run --------------------------------------------------------

struct Footprint {
  std::string dir;
  std::vector<Proc> procs;  // holders, node inits and everything below them
  std::vector<std::string> namespaces;
  std::vector<std::string> loops;  // loop devices of the nodes' btrfs images
};

// From the runtime files of DIR (status and holder files: written before a node does anything, so this works
// while `up` is still running). CHECKs that it is a live sandbox of `nodes` nodes, each with its sshd (and its
// btrfs), so that the checks after the teardown are not vacuous.
Footprint TakeFootprint(const std::string& dir, int nodes, bool btrfs) {
  Footprint fp;
  fp.dir = dir;
  const fs::path rt = fs::path(dir) / ".rt";
  int inits = 0;
  for (const auto& e : fs::directory_iterator(rt)) {
    if (e.path().extension() == ".holder") {
      if (auto h = Observe(std::atoi(ReadFile(e.path()).c_str()))) fp.procs.push_back(*h);
      continue;
    }
    if (e.path().extension() != ".status") continue;
    const std::string name = e.path().stem();
    CAPTURE(name);
    auto st = StatusOf(e.path());
    REQUIRE(st.count("ready") == 1);
    REQUIRE(st.count("pid") == 1);
    const pid_t init = std::atoi(st.find("pid")->second.c_str());
    std::vector<Proc> tree;
    Tree(init, tree);
    REQUIRE(!tree.empty());
    ++inits;
    int sshd = 0;
    for (const auto& p : tree) sshd += p.comm == "sshd";
    CHECK(sshd >= 1);
    fp.procs.insert(fp.procs.end(), tree.begin(), tree.end());
    for (const char* kind : {"mnt", "pid"}) {
      auto l = fs::read_symlink("/proc/" + std::to_string(init) + "/ns/" + kind);
      CHECK(l != fs::read_symlink(std::string("/proc/self/ns/") + kind));  // the node's own
      fp.namespaces.push_back(l.string());
    }
    const std::string node_mounts = ReadFile("/proc/" + std::to_string(init) + "/mountinfo");
    if (btrfs) {
      REQUIRE(st.count("loop") == 1);
      fp.loops.push_back(st.find("loop")->second);
      CHECK(node_mounts.find(" /srv/btrfs ") != std::string::npos);  // mounted in the node's namespace
      CHECK(Host(Cmd("losetup").arg("-n").arg("-O").arg("BACK-FILE").arg(fp.loops.back())).find(dir) !=
            std::string::npos);
    }
  }
  CHECK(inits == nodes);
  // ... and none of it in the host's mount namespace
  CHECK(ReadFile("/proc/self/mountinfo").find(dir) == std::string::npos);
  return fp;
}

void CheckGone(const Footprint& fp) {
  CAPTURE(fp.dir);
  for (const auto& p : fp.procs) {
    CAPTURE(p.pid);
    CAPTURE(p.comm);
    CHECK_FALSE(Alive(p));
  }
  auto live = LiveNamespaces();
  for (const auto& ns : fp.namespaces) {
    CAPTURE(ns);
    CHECK(live.count(ns) == 0);
  }
  CHECK(ProcessesMentioning(fp.dir).empty());
  CHECK(ReadFile("/proc/self/mountinfo").find(fp.dir) == std::string::npos);
  CHECK(Host(Cmd("losetup").arg("-a")).find(fp.dir) == std::string::npos);
  for (const auto& dev : fp.loops) {
    CAPTURE(dev);
    CHECK(Host(Cmd("losetup").arg("-n").arg("-O").arg("BACK-FILE").arg(dev)).find(fp.dir) == std::string::npos);
  }
  CHECK_FALSE(fs::exists(fp.dir));
}

// ---- the owner: this binary, running only the helper test case ------------------------------------------

struct Owner {
  pid_t pid = -1;
  int report = -1;  // read end of the helper's report descriptor
  fs::path log;     // its stdout and stderr

  Owner(int nodes, int btrfs_mb, const fs::path& log_file, bool btrfs_root = false) : log(log_file) {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    // The write end must not be descriptor kHelperFd already (dup2 onto itself would keep close-on-exec).
    int w = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
    close(p[1]);
    REQUIRE(w >= 10);
    report = p[0];
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "LABFLEET_SBX_HELPER", 19) != 0) env_s.emplace_back(*e);
    env_s.push_back("LABFLEET_SBX_HELPER_FD=" + std::to_string(kHelperFd));
    env_s.push_back("LABFLEET_SBX_HELPER_PARENT=" + std::to_string(getpid()));
    env_s.push_back("LABFLEET_SBX_HELPER_NODES=" + std::to_string(nodes));
    env_s.push_back("LABFLEET_SBX_HELPER_BTRFS=" + std::to_string(btrfs_mb));
    if (btrfs_root) env_s.push_back("LABFLEET_SBX_HELPER_BTRFS_ROOT=1");
    std::vector<std::string> args_s = {fs::read_symlink("/proc/self/exe").string(), std::string("-tc=") + kHelperName,
                                       "--no-skip", "--no-version"};
    std::vector<char*> argv, envp;
    for (auto& a : args_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_adddup2(&fa, w, kHelperFd);
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    close(w);
    REQUIRE_MESSAGE(rc == 0, std::strerror(rc));
  }
  // Whatever happens to the test: the owner does not outlive it (its watcher then takes its sandbox down).
  ~Owner() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      reap();
    }
    if (report >= 0) close(report);
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;

  // The directory the helper reports once its sandbox is up ("" when it died or failed first).
  std::string wait_dir() {
    std::string got;
    char buf[512];
    for (ssize_t n; (n = read(report, buf, sizeof buf)) != 0;) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      got.append(buf, size_t(n));
      if (got.find('\n') != std::string::npos) break;
    }
    if (got.rfind("dir ", 0) != 0) return "";
    return got.substr(4, got.find('\n') - 4);
  }
  // Waits for the owner to end; its status.
  int reap() {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    return st;
  }
};

// The test's own safety net: when the mechanism under test failed to take DIR down, take it down anyway, so that a
// failing test leaves nothing behind either.
struct DownAfterwards {
  std::string dir;
  ~DownAfterwards() {
    if (!dir.empty() && fs::exists(dir))
      RunCommand(Cmd("/bin/bash").arg(SandboxScript()).arg("down").arg("--dir").arg(dir).arg("--purge").str());
  }
};

// A temporary directory for the owner's log.
struct Scratch {
  fs::path root;
  Scratch() {
    char tmpl[] = "/var/tmp/labfleet-teardown-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

}  // namespace

TEST_SUITE("integration-sandbox") {
  // Not a test: the owner process of the teardown tests (run as `labfleet_tests -tc=sandbox-teardown-helper
  // --no-skip` with the LABFLEET_SBX_HELPER_* variables; without them it does nothing). It starts a sandbox,
  // reports "dir DIR" on descriptor 3 and waits to be killed.
  TEST_CASE("sandbox-teardown-helper" * doctest::skip()) {
    const char* fd_s = std::getenv("LABFLEET_SBX_HELPER_FD");
    const char* parent_s = std::getenv("LABFLEET_SBX_HELPER_PARENT");
    if (!fd_s || !parent_s) return;
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test that started us
    if (getppid() != std::atoi(parent_s)) _exit(3);
    const int fd = std::atoi(fd_s);
    auto say = [fd](const std::string& s) { (void)!write(fd, s.data(), s.size()); };
    try {
      Sandbox sbx({.nodes = std::atoi(std::getenv("LABFLEET_SBX_HELPER_NODES")),
                   .btrfs_mb = std::atoi(std::getenv("LABFLEET_SBX_HELPER_BTRFS")),
                   .btrfs_root = std::getenv("LABFLEET_SBX_HELPER_BTRFS_ROOT") != nullptr});
      say("dir " + sbx.dir() + "\n");
      for (;;) pause();
    } catch (const std::exception& e) {
      say(std::string("error ") + e.what() + "\n");
      _exit(2);
    }
  }

  TEST_CASE("teardown: the owner of two nodes (btrfs) is SIGKILLed; its watcher takes everything down") {
    Scratch s;
    Owner owner(2, 16, s.root / "owner.log");
    const std::string dir = owner.wait_dir();
    INFO(ReadFile(owner.log));
    REQUIRE(!dir.empty());
    DownAfterwards down{dir};
    const Footprint fp = TakeFootprint(dir, 2, true);
    Watcher watcher;
    for (const auto& w : Watchers(owner.pid))
      if (w.dir == dir) watcher = w;
    REQUIRE(watcher.pid > 0);

    kill(owner.pid, SIGKILL);
    const int st = owner.reap();
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    // nothing of the owner ran after the kill: all of the cleanup is the watcher's
    CHECK(WaitFor([&] { return !AlivePid(watcher.pid) && !fs::exists(dir); }));
    CheckGone(fp);
  }

  TEST_CASE("teardown: the owner of two nodes booted from btrfs @ (--btrfs-root) is SIGKILLed; its watcher takes everything down") {
    Scratch s;
    Owner owner(2, 64, s.root / "owner.log", true);
    const std::string dir = owner.wait_dir();
    INFO(ReadFile(owner.log));
    REQUIRE(!dir.empty());
    DownAfterwards down{dir};
    const Footprint fp = TakeFootprint(dir, 2, true);
    for (const auto& p : fp.procs)  // the nodes really run on their btrfs: / is the subvolume @
      if (p.comm == "sshd") {
        CHECK(ReadFile("/proc/" + std::to_string(p.pid) + "/mountinfo").find(" /@ / ") != std::string::npos);
        break;
      }
    kill(owner.pid, SIGKILL);
    const int st = owner.reap();
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
    CHECK(WaitFor([&] { return !fs::exists(dir); }));
    CheckGone(fp);
  }

  TEST_CASE("teardown: the owner is SIGKILLed while its `up` (btrfs) is still running; nothing is left") {
    Scratch s;
    Owner owner(1, 16, s.root / "owner.log");
    INFO(ReadFile(owner.log));
    // The owner's watcher starts right after its `up`; it names that `up` (--after), a child of the owner.
    Watcher watcher;
    REQUIRE(WaitFor([&] {
      for (const auto& w : Watchers(owner.pid))
        if (w.after > 0 && ParentOf(w.after) == owner.pid) watcher = w;
      return watcher.pid > 0;
    }));
    const std::string dir = watcher.dir;
    DownAfterwards down{dir};  // declared before Resume: runs after it (a held `up` holds DIR's lock)
    // The `sandbox up` itself: --after names it, or the `sh -c` whose child it is (not one of the subshells it
    // forks, which carry the same command line).
    auto is_up = [&](pid_t pid) {
      auto argv = Argv(pid);
      return argv.size() > 2 && argv[1] == SandboxScript() && argv[2] == "up" && ArgAfter(argv, "--dir") == dir;
    };
    pid_t up = -1;
    REQUIRE(WaitFor([&] {
      if (is_up(watcher.after)) {
        up = watcher.after;
      } else {
        for (pid_t pid : AllPids())
          if (ParentOf(pid) == watcher.after && is_up(pid)) up = pid;
      }
      return up > 0;
    }));
    // Hold the `up` as soon as it has launched the node (the node itself starts on its own), so that the owner
    // dies with its `up` demonstrably unfinished.
    struct Resume {
      pid_t up;
      ~Resume() { kill(up, SIGCONT); }
    } resume{up};
    REQUIRE(WaitFor([&] { return fs::exists(fs::path(dir) / ".rt/node1.holder") || !AlivePid(up); }));
    REQUIRE(kill(up, SIGSTOP) == 0);
    REQUIRE(WaitFor([&] { return StatusOf(fs::path(dir) / ".rt/node1.status").count("ready") == 1; }));
    CHECK_FALSE(fs::exists(fs::path(dir) / "state.json"));  // `up` has not finished
    const Footprint fp = TakeFootprint(dir, 1, true);

    kill(owner.pid, SIGKILL);
    owner.reap();
    // The watcher saw its owner die and now waits for the `up` (a `sleep` in its wait loop) instead of taking
    // the DIR down under it; the node is still there.
    REQUIRE(WaitFor([&] {
      std::vector<Proc> tree;
      Tree(watcher.pid, tree);
      for (const auto& p : tree)
        if (p.comm == "sleep") return true;
      return false;
    }));
    for (const auto& p : fp.procs) CHECK(Alive(p));
    REQUIRE(kill(up, SIGCONT) == 0);
    CHECK(WaitFor([&] {
      return !AlivePid(watcher.pid) && !AlivePid(up) && !AlivePid(watcher.after) && !fs::exists(dir);
    }));
    CheckGone(fp);
  }

  TEST_CASE("teardown: the owner gets SIGTERM; its handler takes the nodes (btrfs) down before it dies") {
    Scratch s;
    Owner owner(1, 16, s.root / "owner.log");
    const std::string dir = owner.wait_dir();
    INFO(ReadFile(owner.log));
    REQUIRE(!dir.empty());
    DownAfterwards down{dir};
    const Footprint fp = TakeFootprint(dir, 1, true);
    Watcher watcher;
    for (const auto& w : Watchers(owner.pid))
      if (w.dir == dir) watcher = w;
    REQUIRE(watcher.pid > 0);

    kill(owner.pid, SIGTERM);
    const int st = owner.reap();
    CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM));
    // Already gone when the owner's death is seen: the handler's `down` ran to the end inside the owner (the
    // watcher only acts once the owner's end of its socket is closed, i.e. after the owner is dead).
    for (const auto& p : fp.procs) {
      CAPTURE(p.pid);
      CAPTURE(p.comm);
      CHECK_FALSE(Alive(p));
    }
    CHECK_FALSE(fs::exists(dir));
    CHECK(Host(Cmd("losetup").arg("-a")).find(dir) == std::string::npos);
    // ... and the watcher, finding nothing left to do, ends too.
    CHECK(WaitFor([&] { return !AlivePid(watcher.pid); }));
    CheckGone(fp);
  }
}
