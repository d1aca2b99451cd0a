// Scaffolding shared by the integration tests: the labfleet CLI run in-process (labfleet::RunCli with captured
// stdout/stderr, JSON output parsed on demand), a throwaway inventory directory holding a sandbox's nodes.yaml,
// checked commands inside a node, and the change summaries of a plan or apply document.
//
//   Sandbox sbx({.nodes = 1});
//   TempInventory inv(sbx);
//   inv.write("inventory/lab.yaml", "lab: { name: t }\n");
//   auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
//   CHECK(r.json()["result"]["failed"] == 0);
#pragma once
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/ssh_transport.h"
#include "tests/integration/sandbox.h"

namespace labfleet::testing {

struct CliResult {
  int rc = 0;
  std::string out, err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }  // throws on output that is not JSON
};

// `labfleet ARGS...`, in this process.
CliResult Cli(const std::vector<std::string>& args);
// `labfleet --inventory INV ARGS... --known-hosts <the sandbox's known_hosts>`, in this process.
CliResult Cli(const Sandbox& sbx, const std::string& inv, const std::vector<std::string>& args);

// Writes `text` to `p` (binary), creating the parent directories.
void WriteFile(const std::filesystem::path& p, const std::string& text);
// The whole file ("" when it cannot be read).
std::string ReadFile(const std::filesystem::path& p);

// `labfleet ARGS... --known-hosts <the sandbox's known_hosts>` as a child process (the real binary, so signals
// reach it as they would from a terminal), with default signal dispositions and an empty signal mask, stdin from
// /dev/null, stdout and stderr into DIR/child.out and DIR/child.err. Killed (SIGKILL) on destruction if still
// running.
struct Child {
  pid_t pid = -1;
  std::string out_file, err_file;
  Child(const Sandbox& sbx, const std::vector<std::string>& args, const std::filesystem::path& dir);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Waits for the exit (at most `limit`); returns the exit code, 128+signal, or -1 when it did not exit.
  int wait(std::chrono::seconds limit);
  bool running() const;
  std::string output() const;  // stdout then stderr, as written so far
};

// A throwaway directory /var/tmp/PREFIX-XXXXXX (host side) with inventory/nodes.yaml of the sandbox's nodes;
// removed with everything in it on destruction. Throws std::runtime_error when it cannot be made.
struct TempInventory {
  std::filesystem::path root;

  explicit TempInventory(const Sandbox& sbx, const std::string& prefix = "labfleet-inv");
  ~TempInventory();
  TempInventory(const TempInventory&) = delete;
  TempInventory& operator=(const TempInventory&) = delete;

  std::string dir() const { return (root / "inventory").string(); }  // for --inventory
  // Writes ROOT/REL ("inventory/lab.yaml", "templates/motd.mustache"), creating its directories.
  void write(const std::string& rel, const std::string& text) const { WriteFile(root / rel, text); }
  // inventory/lab.yaml: a lab named "t" whose defaults are `yaml` (lines indented by 4, under `defaults:`).
  void defaults(const std::string& yaml) const { write("inventory/lab.yaml", "lab:\n  name: t\n  defaults:\n" + yaml); }
};

// How an SshTransport reaches `node` of the sandbox as root with the sandbox's key, checking host keys
// against `known_hosts`; connect timeout 5 s, command timeout 30 s.
SshTarget Target(const Sandbox& sbx, const std::string& node, const std::string& known_hosts);

// Runs `cmd` in the node (an independent check inside it, not over labfleet's transport); CHECKs that it exits
// 0 and returns its stdout. Without a node: on node1, the one node of a single-node sandbox.
std::string Exec(const Sandbox& sbx, const std::string& node, const std::string& cmd);
std::string Exec(const Sandbox& sbx, const std::string& cmd);

// The change summaries of a plan or apply document (apply's JSON carries the plan it ran), all nodes, in
// order, joined by " | "; `list` is "changes" or "deferred".
std::string Summaries(const nlohmann::json& doc, const char* list = "changes");
// The same of a `--format json` run's output.
std::string Summaries(const CliResult& r);

}  // namespace labfleet::testing
