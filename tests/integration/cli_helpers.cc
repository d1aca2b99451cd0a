#include "tests/integration/cli_helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "engine/cli.h"

namespace fs = std::filesystem;
extern char** environ;

namespace labfleet::testing {

CliResult Cli(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"labfleet"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = labfleet::RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

CliResult Cli(const Sandbox& sbx, const std::string& inv, const std::vector<std::string>& args) {
  std::vector<std::string> all{"--inventory", inv};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back("--known-hosts");
  all.push_back(sbx.known_hosts());
  return Cli(all);
}

void WriteFile(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Child::Child(const Sandbox& sbx, const std::vector<std::string>& args, const fs::path& dir) {
  out_file = (dir / "child.out").string();
  err_file = (dir / "child.err").string();
  std::vector<std::string> argv{LABFLEET_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--known-hosts");
  argv.push_back(sbx.known_hosts());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  // The test process may block or ignore signals (the sandbox wrapper's handlers): the child starts clean.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawn(&pid, argv[0].c_str(), &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  REQUIRE(rc == 0);
}

Child::~Child() {
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

int Child::wait(std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  int st = 0;
  while (std::chrono::steady_clock::now() < until) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      pid = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

bool Child::running() const { return pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0; }
std::string Child::output() const { return ReadFile(out_file) + ReadFile(err_file); }

TempInventory::TempInventory(const Sandbox& sbx, const std::string& prefix) {
  std::string tmpl = "/var/tmp/" + prefix + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  root = tmpl;
  WriteFile(root / "inventory/nodes.yaml", sbx.nodes_yaml());
}

TempInventory::~TempInventory() {
  std::error_code ec;
  fs::remove_all(root, ec);
}

SshTarget Target(const Sandbox& sbx, const std::string& node, const std::string& known_hosts) {
  SshTarget t;
  t.name = node;
  t.host = sbx.node(node).address;
  t.port = sbx.node(node).port;
  t.identity = sbx.identity();
  t.known_hosts = known_hosts;
  t.connect_timeout_s = 5;
  t.command_timeout_s = 30;
  return t;
}

std::string Exec(const Sandbox& sbx, const std::string& node, const std::string& cmd) {
  auto r = sbx.exec(node, cmd);
  INFO(node << ": " << cmd << " -> " << r.exit_code << " " << r.err);
  CHECK(r.exit_code == 0);
  return r.out;
}

std::string Exec(const Sandbox& sbx, const std::string& cmd) { return Exec(sbx, "node1", cmd); }

std::string Summaries(const nlohmann::json& doc, const char* list) {
  std::string out;
  for (const auto& node : doc["plan"])
    for (const auto& c : node[list]) out += (out.empty() ? "" : " | ") + c["summary"].get<std::string>();
  return out;
}

std::string Summaries(const CliResult& r) { return Summaries(r.json()); }

}  // namespace labfleet::testing
