#include "engine/local_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <mutex>

#include "engine/shell.h"

extern char** environ;

namespace labfleet {

std::string WrapSudo(const std::string& command) {
  return Cmd("sudo").arg("-n").arg("sh").arg("-c").arg(command).str();
}

bool IsSudoPasswordRefusal(const RunResult& r) {
  if (r.exit_code != 1) return false;
  return r.err.rfind("sudo: a password is required", 0) == 0 || r.err.rfind("sudo: a terminal is required", 0) == 0;
}

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void IgnoreSigpipeOnce() {
  // Writing to a pipe whose reader died must be an EPIPE error, not a process kill. labfleet is a CLI: ignoring
  // SIGPIPE process-wide is what every such tool does.
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

// Whether process group `pgid` still has a live member. A zombie does not count: an orphaned child that died is
// reaped by PID 1, which in a container may take its time (or never come), and kill(-pgid, 0) would still succeed
// for it. Reads /proc/<pid>/stat (state and pgrp follow the ") " after the name); without /proc, kill(-pgid, 0).
bool GroupAlive(pid_t pgid) {
  DIR* dir = ::opendir("/proc");
  if (!dir) return ::kill(-pgid, 0) == 0;
  bool alive = false;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    const auto close = line.rfind(") ");
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (std::sscanf(line.c_str() + close + 2, "%c %ld %ld", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') {
      alive = true;
      break;
    }
  }
  ::closedir(dir);
  return alive;
}

// /bin/sh -c COMMAND with stdin from `stdin_fd` (-1: /dev/null), stdout and stderr to the given fds; returns its
// pid. Own process group, so a timeout kills the command and everything it started. Default SIGPIPE and SIGTERM
// (a timeout stops the command with SIGTERM: one ignored by whatever started labfleet must not be inherited, or
// the command's traps could not run), and no blocked signal.
pid_t SpawnShell(const std::string& command, int stdin_fd, int out_fd, int err_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (stdin_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t def, none;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGTERM);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw TransportError(TransportError::Kind::Other, "cannot start /bin/sh: " + std::string(strerror(rc)));
  return pid;
}

}  // namespace

LocalTransport::LocalTransport(std::string name, int command_timeout_s, bool become_sudo)
    : name_(std::move(name)), command_timeout_s_(command_timeout_s), become_sudo_(become_sudo && geteuid() != 0) {
  IgnoreSigpipeOnce();
}

std::string LocalTransport::describe() const { return name_ + " (local)"; }

RunResult LocalTransport::run(const std::string& command, std::string_view stdin_data) {
  StringSource in(stdin_data);
  return stream(command, in);
}

RunResult LocalTransport::stream(const std::string& command_in, ByteSource& source) {
  using Clock = std::chrono::steady_clock;
  if (cancelled()) throw_interrupted("It was not started.", {});
  const std::string command = become_sudo_ ? WrapSudo(command_in) : command_in;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw TransportError(TransportError::Kind::Other, "pipe: " + std::string(strerror(errno)));
  Fd in_r(in[0]), in_w(in[1]);
  if (pipe2(out, O_CLOEXEC) != 0) throw TransportError(TransportError::Kind::Other, "pipe: " + std::string(strerror(errno)));
  Fd out_r(out[0]), out_w(out[1]);
  if (pipe2(err, O_CLOEXEC) != 0) throw TransportError(TransportError::Kind::Other, "pipe: " + std::string(strerror(errno)));
  Fd err_r(err[0]), err_w(err[1]);

  pid_t pid = SpawnShell(command, in_r.fd, out_w.fd, err_w.fd);
  in_r.reset();
  out_w.reset();
  err_w.reset();
  fcntl(in_w.fd, F_SETFL, fcntl(in_w.fd, F_GETFL) | O_NONBLOCK);

  RunResult result;
  // stdin: one buffer from the source at a time, refilled once the pipe took all of it.
  char inbuf[65536];
  size_t in_len = 0, in_off = 0;
  auto refill = [&] {
    if (in_off < in_len || in_w.fd < 0) return;
    in_off = 0;
    try {
      in_len = source.read(inbuf, sizeof inbuf);
    } catch (...) {
      ::kill(-pid, SIGKILL);
      int st;
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      throw;
    }
    if (in_len == 0) in_w.reset();  // the end: the command sees EOF
  };
  refill();
  const auto deadline = Clock::now() + std::chrono::seconds(command_timeout_s_);
  bool exited = false;
  int status = 0;
  Clock::time_point exited_at{};
  char buf[65536];
  // Stops the command's process group: SIGTERM, up to 2 s for the group to go (traps run: an apply script
  // releases its lock; its output pipes stay open meanwhile, so it does not die of SIGPIPE first), then our ends
  // of the pipes closed and SIGKILL. Says what happened.
  auto stop = [&]() -> std::string {
    in_w.reset();
    ::kill(-pid, SIGTERM);
    const auto until = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < until) {
      if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = true;
      if (exited && !GroupAlive(pid)) return "It was stopped (SIGTERM to its process group).";
      usleep(20000);
    }
    out_r.reset();
    err_r.reset();
    ::kill(-pid, SIGKILL);
    if (!exited)
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    return "It was stopped (SIGTERM, then SIGKILL to its process group).";
  };
  while (out_r.fd >= 0 || err_r.fd >= 0 || in_w.fd >= 0) {
    if (!exited) {
      pid_t w = waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        exited_at = Clock::now();
        in_w.reset();  // nobody will read it any more
      }
    }
    // A background process that keeps stdout open must not hold us forever once the command itself is done.
    if (exited && Clock::now() - exited_at > std::chrono::milliseconds(200)) break;
    auto now = Clock::now();
    if (now >= deadline) {
      std::string how = stop();
      throw TransportError(TransportError::Kind::Timeout,
                           "command on " + describe() + " did not finish within " + std::to_string(command_timeout_s_) +
                               " s (--timeout). " + how + " Raise --timeout if it is expected to take longer.",
                           std::move(result.out));
    }
    if (cancelled()) {
      std::string how = stop();
      throw_interrupted(how, std::move(result.out));
    }
    pollfd p[3];
    int n = 0;
    int i_out = -1, i_err = -1, i_in = -1;
    if (out_r.fd >= 0) p[i_out = n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) p[i_err = n++] = {err_r.fd, POLLIN, 0};
    if (in_w.fd >= 0) p[i_in = n++] = {in_w.fd, POLLOUT, 0};
    long ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int wait_ms = int(std::min<long>(ms + 1, exited ? 20 : 50));
    int pr = n ? ::poll(p, n, wait_ms) : (usleep(wait_ms * 1000), 0);
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    auto drain = [&](int idx, Fd& fd, std::string& into) {
      if (idx < 0 || !(p[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t r = ::read(fd.fd, buf, sizeof buf);
      if (r > 0)
        into.append(buf, size_t(r));
      else if (r == 0 || (errno != EINTR && errno != EAGAIN))
        fd.reset();
    };
    drain(i_out, out_r, result.out);
    drain(i_err, err_r, result.err);
    if (result.out.size() + result.err.size() > max_output()) {
      std::string how = stop();
      if (result.out.size() > max_output()) result.out.resize(max_output());
      throw_output_limit(how, std::move(result.out));
    }
    if (i_in >= 0 && (p[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(in_w.fd, inbuf + in_off, in_len - in_off);
      if (w > 0) in_off += size_t(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR)
        in_w.reset();  // the command closed its input: the source is not read further
      else
        refill();
    }
  }
  if (!exited) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = 128 + WTERMSIG(status);
  else
    result.exit_code = 255;
  if (become_sudo_ && IsSudoPasswordRefusal(result))
    throw TransportError(TransportError::Kind::Auth,
                         "sudo on " + describe() + " asks for a password; `ssh.become: sudo` needs passwordless sudo "
                         "(a NOPASSWD rule in /etc/sudoers.d) for this user");
  return result;
}

}  // namespace labfleet

// ---- Streaming stdout (run_to, transport.h "Streaming stdout").
namespace labfleet {

RunResult LocalTransport::run_to(const std::string& command_in, ByteSink& sink) {
  using Clock = std::chrono::steady_clock;
  if (cancelled()) throw_interrupted("It was not started.", {});
  const std::string command = become_sudo_ ? WrapSudo(command_in) : command_in;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw TransportError(TransportError::Kind::Other, "pipe: " + std::string(strerror(errno)));
  Fd out_r(out[0]), out_w(out[1]);
  if (pipe2(err, O_CLOEXEC) != 0) throw TransportError(TransportError::Kind::Other, "pipe: " + std::string(strerror(errno)));
  Fd err_r(err[0]), err_w(err[1]);
  pid_t pid = SpawnShell(command, -1, out_w.fd, err_w.fd);
  out_w.reset();
  err_w.reset();
  auto reap = [&](bool kill_it) {
    if (kill_it) {
      out_r.reset();
      err_r.reset();
      ::kill(-pid, SIGTERM);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
  };
  RunResult result;
  const auto deadline = Clock::now() + std::chrono::seconds(command_timeout_s_);
  char buf[65536];
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    if (Clock::now() >= deadline) {
      reap(true);
      throw TransportError(TransportError::Kind::Timeout, "streaming command on " + describe() +
                                                              " did not finish within " +
                                                              std::to_string(command_timeout_s_) + " s (--timeout)");
    }
    if (cancelled()) {
      reap(true);
      throw_interrupted("It was stopped (SIGTERM to its process group).", {});
    }
    pollfd p[2];
    int n = 0, i_out = -1, i_err = -1;
    if (out_r.fd >= 0) p[i_out = n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) p[i_err = n++] = {err_r.fd, POLLIN, 0};
    int pr = ::poll(p, n, 100);
    if (pr <= 0) continue;
    if (i_out >= 0 && (p[i_out].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = ::read(out_r.fd, buf, sizeof buf);
      if (r > 0) {
        bool more;
        try {
          more = sink.write(buf, size_t(r));
        } catch (...) {
          reap(true);
          throw;
        }
        if (!more) {
          reap(true);
          result.exit_code = 141;
          result.err += "labfleet: the receiving side took no more output; the command was stopped\n";
          return result;
        }
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        out_r.reset();
      }
    }
    if (i_err >= 0 && (p[i_err].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = ::read(err_r.fd, buf, sizeof buf);
      if (r > 0) {
        if (result.err.size() < max_output()) result.err.append(buf, std::min(size_t(r), max_output() - result.err.size()));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        err_r.reset();
      }
    }
  }
  int status = reap(false);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
  return result;
}

}  // namespace labfleet
