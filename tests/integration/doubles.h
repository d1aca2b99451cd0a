// Test doubles (stand-ins) for tools a sandbox node lacks or must not run for real: systemctl (no systemd in a
// sandbox node), nvidia-smi (no GPU), reboot, update-grub, update-initramfs, mkinitcpio and sysctl (nodes share
// the host's kernel). The scripts live in tests/doubles/; InstallDoubles copies the named ones into ONE node's
// /usr/local/sbin, which comes first on that node's PATH (and on the PATH labfleet's probe and apply scripts
// set). Every double appends its invocation ("NAME ARGS...") to /var/log/labfleet-doubles.log in the node;
// DoubleCalls reads it back so tests can assert exactly which restarts/reloads happened.
//
// Also: a local apt repository of tiny .deb files built inside a node (dpkg-deb; Packages written without
// dpkg-scanpackages or apt-ftparchive), for the packages and nvidia modules' tests. Everything happens inside
// the node's own overlay: the host's apt configuration and packages are never touched.
#pragma once
#include <string>
#include <vector>

#include "tests/integration/sandbox.h"

namespace labfleet::testing {

// Installs tests/doubles/NAME for each name into the node's /usr/local/sbin (mode 0755), creates
// /var/lib/labfleet-doubles/units and starts an empty /var/log/labfleet-doubles.log. Throws std::runtime_error.
void InstallDoubles(const Sandbox& sbx, const std::string& node, std::vector<std::string> names);
// Every recorded invocation, in order ("systemctl restart cachefilesd.service").
std::vector<std::string> DoubleCalls(const Sandbox& sbx, const std::string& node);
// The recorded invocations that change something: systemctl's queries (show, get-default, is-*, list-*) and
// nvidia-smi's --query-* / -L are left out.
std::vector<std::string> DoubleActions(const Sandbox& sbx, const std::string& node);
void ClearDoubleCalls(const Sandbox& sbx, const std::string& node);
// How many of `calls` are exactly `call` ("systemctl restart docker").
int CountCalls(const std::vector<std::string>& calls, const std::string& call);

// systemctl double: a unit that exists with unit-file state (enabled|disabled|static|masked) and active
// state (active|inactive|failed); `aliases` space separated.
void SeedUnit(const Sandbox& sbx, const std::string& node, const std::string& unit, const std::string& file_state,
              const std::string& active_state, const std::string& aliases = "");
// systemctl double: the unit's state file as KEY=VALUE lines ("" when the unit does not exist).
std::string UnitState(const Sandbox& sbx, const std::string& node, const std::string& unit);
// nvidia-smi double: gpus.csv / apps.csv (header line of field names, then rows; see tests/doubles/nvidia-smi).
void SeedGpus(const Sandbox& sbx, const std::string& node, const std::string& csv);
void SeedGpuApps(const Sandbox& sbx, const std::string& node, const std::string& csv);

struct FakeDeb {
  std::string name, version;
  std::string depends;  // Depends: field, "" for none
};
// Builds each package (Architecture: all, a README under /usr/share/doc/NAME) into the node's /srv/repo, writes
// /srv/repo/Packages, and removes the node's own apt sources so nothing reaches the network. Calling it again
// adds packages (the index is rewritten from every .deb there).
void BuildLocalAptRepo(const Sandbox& sbx, const std::string& node, const std::vector<FakeDeb>& debs);
// Points the node's apt at /srv/repo ("deb [trusted=yes] file:/srv/repo ./").
void UseLocalAptRepo(const Sandbox& sbx, const std::string& node);

// Runs `cmd` in the node and throws std::runtime_error (with its output) unless it exits 0.
std::string MustExec(const Sandbox& sbx, const std::string& node, const std::string& cmd);

}  // namespace labfleet::testing
