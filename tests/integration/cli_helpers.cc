#include "tests/integration/cli_helpers.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "engine/cli.h"

namespace fs = std::filesystem;

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
