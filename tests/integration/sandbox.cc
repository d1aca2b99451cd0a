#include "tests/integration/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "engine/shell.h"

extern char** environ;

namespace labfleet::testing {

std::string SandboxScript() { return std::string(LABFLEET_SOURCE_DIR) + "/tests/sandbox/sandbox"; }

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("sandbox: cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- process-wide safety net ------------------------------------------------------------------------
// Fixed storage so that the signal handler only touches async-signal-safe state (atomics, char arrays)
// and calls fork/execve/waitpid.

constexpr int kSlots = 64;
constexpr size_t kPathMax = 512;
struct Slot {
  std::atomic<bool> used{false};
  char dir[kPathMax] = {};
};
Slot g_slots[kSlots];
char g_script[kPathMax] = {};
std::mutex g_mu;  // guards slot allocation and handler installation (not used in the handler)
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGABRT};
struct sigaction g_prev[NSIG];
volatile sig_atomic_t g_in_handler = 0;
pid_t g_owner = 0;  // a forked child that calls exit() must not take our sandboxes down

void DownSignalSafe(char* dir) {
  static char bash[] = "/bin/bash", down[] = "down", dir_flag[] = "--dir", purge[] = "--purge";
  static char path_env[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  char* argv[] = {bash, g_script, down, dir_flag, dir, purge, nullptr};
  char* envp[] = {path_env, nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    execve(bash, argv, envp);
    _exit(127);
  }
  if (pid > 0) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

void DownAllLive() {
  if (getpid() != g_owner) return;
  for (auto& s : g_slots)
    if (s.used.exchange(false)) DownSignalSafe(s.dir);
}

void OnFatalSignal(int sig) {
  if (g_in_handler) {  // re-entered through a chain of handlers: stop chaining
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_in_handler = 1;
  DownAllLive();
  // Hand over to whoever was installed before us (doctest's reporter, or the default action).
  sigaction(sig, &g_prev[sig], nullptr);
  g_in_handler = 0;
  raise(sig);
}

// Called from every constructor: doctest swaps its own handlers in and out around each test case, so
// ours is (re)installed on top of whatever is current, chaining to it.
void InstallSafetyNet() {
  static bool atexit_done = false;
  if (!atexit_done) {
    g_owner = getpid();
    std::atexit(DownAllLive);
    std::string script = SandboxScript();
    std::strncpy(g_script, script.c_str(), kPathMax - 1);
    atexit_done = true;
  }
  for (int sig : kSignals) {
    struct sigaction cur {};
    sigaction(sig, nullptr, &cur);
    if (cur.sa_handler == OnFatalSignal) continue;
    struct sigaction sa {};
    sa.sa_handler = OnFatalSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(sig, &sa, &g_prev[sig]);
  }
}

int AcquireSlot(const std::string& dir) {
  std::lock_guard<std::mutex> lock(g_mu);
  InstallSafetyNet();
  if (dir.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    if (s.used.load()) continue;
    std::memset(s.dir, 0, kPathMax);
    std::memcpy(s.dir, dir.data(), dir.size());
    s.used.store(true);
    return i;
  }
  return -1;
}

void ReleaseSlot(int slot) {
  if (slot >= 0) g_slots[slot].used.store(false);
}

// `sandbox watch --dir DIR` in its own session, reading a socket whose other end only we hold
// (close-on-exec): EOF without "done" means this process died, and the watcher runs `down`.
pid_t SpawnWatcher(const std::string& dir, pid_t after, int* fd_out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  std::string script = SandboxScript();
  std::vector<std::string> args = {"/bin/bash", script, "watch", "--dir", dir, "--after", std::to_string(after)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/bin/bash", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return -1;
  }
  *fd_out = sv[0];
  return pid;
}

}  // namespace

namespace {

struct Child {
  pid_t pid = -1;
  int out = -1;
  int err = -1;
};

// Starts `/bin/sh -c command` with stdin from /dev/null and stdout/stderr on pipes.
Child StartCommand(const std::string& command) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    throw std::runtime_error("pipe2 failed");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    throw std::runtime_error(std::string("posix_spawn /bin/sh failed: ") + std::strerror(rc));
  }
  return {pid, out[0], err[0]};
}

// Reads both pipes to EOF and reaps the child.
Sandbox::ExecResult FinishCommand(Child c) {
  Sandbox::ExecResult r;
  pollfd fds[2] = {{c.out, POLLIN, 0}, {c.err, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int st = 0;
  while (waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

}  // namespace

Sandbox::ExecResult RunCommand(const std::string& command) { return FinishCommand(StartCommand(command)); }

Sandbox::Sandbox(SandboxOptions opts) : opts_(std::move(opts)) {
  char tmpl[] = "/var/tmp/labfleet-sbx-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error(std::string("sandbox: mkdtemp failed: ") + std::strerror(errno));
  dir_ = tmpl;
  slot_ = AcquireSlot(dir_);

  Cmd up = Cmd("/bin/bash").arg(SandboxScript()).arg("up").arg("--dir").arg(dir_);
  up.arg("--nodes").arg(std::to_string(opts_.nodes)).arg("--prefix").arg(opts_.prefix);
  if (opts_.btrfs_mb > 0) up.arg("--btrfs").arg(std::to_string(opts_.btrfs_mb));
  if (opts_.btrfs_root) up.arg("--btrfs-root");
  if (opts_.login) up.arg("--login");
  if (opts_.sshd_defaults) up.arg("--sshd-defaults");
  if (opts_.password_only) up.arg("--password-only");
  ExecResult r;
  try {
    // The watcher waits for this `up` to finish before it would clean up, so a DIR is never cleaned
    // while an `up` is still creating nodes in it.
    Child child = StartCommand(up.str());
    watcher_ = SpawnWatcher(dir_, child.pid, &watcher_fd_);
    r = FinishCommand(child);
    if (r.exit_code == 0) {
      auto state = nlohmann::json::parse(ReadFile(dir_ + "/state.json"));
      for (const auto& n : state.at("nodes"))
        nodes_.push_back({n.at("name").get<std::string>(), n.at("address").get<std::string>(), n.at("port").get<int>()});
    }
  } catch (const std::exception& e) {
    down();
    throw std::runtime_error(std::string("sandbox up: ") + e.what());
  }
  if (r.exit_code != 0) {
    down();
    throw std::runtime_error("sandbox up failed (exit " + std::to_string(r.exit_code) + "):\n" + r.err);
  }
}

Sandbox::~Sandbox() { down(); }

void Sandbox::down() noexcept {
  if (dir_.empty()) return;
  try {
    auto r = RunCommand(Cmd("/bin/bash").arg(SandboxScript()).arg("down").arg("--dir").arg(dir_).str());
    if (r.exit_code != 0) fprintf(stderr, "sandbox down --dir %s failed:\n%s", dir_.c_str(), r.err.c_str());
  } catch (...) {
  }
  if (watcher_fd_ >= 0) {
    static const char kDone[] = "done\n";
    (void)!send(watcher_fd_, kDone, sizeof kDone - 1, MSG_NOSIGNAL);
    close(watcher_fd_);
    watcher_fd_ = -1;
  }
  if (watcher_ > 0) {
    int st;
    while (waitpid(watcher_, &st, 0) < 0 && errno == EINTR) {
    }
    watcher_ = -1;
  }
  ReleaseSlot(slot_);
  slot_ = -1;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  dir_.clear();
}

const SandboxNode& Sandbox::node(const std::string& name) const {
  for (const auto& n : nodes_)
    if (n.name == name) return n;
  throw std::out_of_range("sandbox has no node " + name);
}

std::string Sandbox::nodes_yaml() const { return ReadFile(dir_ + "/nodes.yaml"); }
std::string Sandbox::known_hosts() const { return dir_ + "/known_hosts"; }
std::string Sandbox::identity() const { return dir_ + "/id_ed25519"; }
std::string Sandbox::ssh_config() const { return dir_ + "/ssh_config"; }

Sandbox::ExecResult Sandbox::exec(const std::string& node, const std::string& shell_command) const {
  return RunCommand(Cmd("/bin/bash")
                        .arg(SandboxScript())
                        .arg("exec")
                        .arg("--dir")
                        .arg(dir_)
                        .arg(node)
                        .arg("--")
                        .arg("sh")
                        .arg("-c")
                        .arg(shell_command)
                        .str());
}

void Sandbox::restart(const std::string& node) {
  auto r = RunCommand(Cmd("/bin/bash").arg(SandboxScript()).arg("restart").arg("--dir").arg(dir_).arg(node).str());
  if (r.exit_code != 0)
    throw std::runtime_error("sandbox restart " + node + " failed (exit " + std::to_string(r.exit_code) + "):\n" + r.err);
}

}  // namespace labfleet::testing
