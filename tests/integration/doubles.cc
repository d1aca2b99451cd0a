#include "tests/integration/doubles.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "engine/shell.h"

namespace labfleet::testing {

namespace {

const char* kLog = "/var/log/labfleet-doubles.log";
const char* kState = "/var/lib/labfleet-doubles";

std::string ReadSource(const std::string& rel) {
  std::ifstream f(std::string(LABFLEET_SOURCE_DIR) + "/" + rel, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + rel);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Shell that writes `bytes` to `path` in the node (base64 through printf: any content arrives intact).
std::string WriteFile(const std::string& path, const std::string& bytes, const char* mode = "0644") {
  return Cmd("mkdir").arg("-p").arg(path.substr(0, path.rfind('/'))).str() + " && " +
         Cmd("printf").arg("%s").arg(Base64Encode(bytes)).raw("|").then(Cmd("base64").arg("-d")).raw(">").arg(path).str() +
         " && " + Cmd("chmod").arg(mode).arg(path).str();
}

}  // namespace

std::string MustExec(const Sandbox& sbx, const std::string& node, const std::string& cmd) {
  auto r = sbx.exec(node, cmd);
  if (r.exit_code != 0)
    throw std::runtime_error("in " + node + ": `" + cmd.substr(0, 300) + "` exited " + std::to_string(r.exit_code) +
                             ": " + r.out + r.err);
  return r.out;
}

void InstallDoubles(const Sandbox& sbx, const std::string& node, std::vector<std::string> names) {
  std::string script = Cmd("mkdir").arg("-p").arg(std::string(kState) + "/units").arg("/usr/local/sbin").str() +
                       " && : > " + ShellQuote(kLog);
  for (const auto& n : names) {
    if (n.find('/') != std::string::npos) throw std::runtime_error("bad double name " + n);
    script += " && " + WriteFile("/usr/local/sbin/" + n, ReadSource("tests/doubles/" + n), "0755");
    // The daemon's socket, as a node running Docker has it (the networks probe looks for it before it starts the
    // CLI). Only its file: nothing listens, the double answers every command. perl-base is Essential in Debian.
    if (n == "docker")
      script += " && rm -f /run/docker.sock && perl -MIO::Socket::UNIX -e "
                "'IO::Socket::UNIX->new(Local => \"/run/docker.sock\", Listen => 1) or die \"docker.sock: $!\\n\"'";
  }
  MustExec(sbx, node, script);
}

std::vector<std::string> DoubleCalls(const Sandbox& sbx, const std::string& node) {
  std::vector<std::string> out;
  std::istringstream in(MustExec(sbx, node, Cmd("cat").arg(kLog).str()));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> DoubleActions(const Sandbox& sbx, const std::string& node) {
  std::vector<std::string> out;
  for (auto& c : DoubleCalls(sbx, node)) {
    auto starts = [&](const char* p) { return c.rfind(p, 0) == 0; };
    if (starts("systemctl show") || starts("systemctl get-default") || starts("systemctl is-") ||
        starts("systemctl list-") || starts("nvidia-smi --query") || starts("nvidia-smi -L"))
      continue;
    out.push_back(std::move(c));
  }
  return out;
}

void ClearDoubleCalls(const Sandbox& sbx, const std::string& node) { MustExec(sbx, node, ": > " + ShellQuote(kLog)); }

void SeedUnit(const Sandbox& sbx, const std::string& node, const std::string& unit, const std::string& file_state,
              const std::string& active_state, const std::string& aliases) {
  std::string text = "file=" + file_state + "\nactive=" + active_state + "\n";
  if (!aliases.empty()) text += "names=" + aliases + "\n";
  MustExec(sbx, node, WriteFile(std::string(kState) + "/units/" + unit, text));
}

std::string UnitState(const Sandbox& sbx, const std::string& node, const std::string& unit) {
  auto r = sbx.exec(node, Cmd("cat").arg(std::string(kState) + "/units/" + unit).str());
  return r.exit_code == 0 ? r.out : "";
}

void SeedGpus(const Sandbox& sbx, const std::string& node, const std::string& csv) {
  MustExec(sbx, node, WriteFile(std::string(kState) + "/gpus.csv", csv));
}

void SeedGpuApps(const Sandbox& sbx, const std::string& node, const std::string& csv) {
  MustExec(sbx, node, WriteFile(std::string(kState) + "/apps.csv", csv));
}

void BuildLocalAptRepo(const Sandbox& sbx, const std::string& node, const std::vector<FakeDeb>& debs) {
  Script s;
  s.raw("set -e");
  s.add(Cmd("mkdir").arg("-p").arg("/srv/repo").arg("/srv/repo-build"));
  for (const auto& d : debs) {
    const std::string dir = "/srv/repo-build/" + d.name + "_" + d.version;
    std::string control = "Package: " + d.name + "\nVersion: " + d.version +
                          "\nArchitecture: all\nMaintainer: labfleet tests <tests@labfleet.invalid>\n" +
                          (d.depends.empty() ? "" : "Depends: " + d.depends + "\n") +
                          "Description: labfleet test package (built by tests/integration/doubles.cc)\n";
    s.add(Cmd("rm").arg("-rf").arg(dir));
    s.raw(WriteFile(dir + "/DEBIAN/control", control));
    s.raw(WriteFile(dir + "/usr/share/doc/" + d.name + "/README", d.name + " " + d.version + "\n"));
    s.add(Cmd("dpkg-deb").arg("--build").arg("-Zgzip").arg(dir).arg("/srv/repo/" + d.name + "_" + d.version + "_all.deb")
              .raw(">/dev/null"));
  }
  // The index, without dpkg-scanpackages/apt-ftparchive: control fields plus Filename, Size and SHA256.
  s.raw("cd /srv/repo && for f in *.deb; do dpkg-deb -f \"$f\"; echo \"Filename: ./$f\"; "
        "echo \"Size: $(stat -c %s \"$f\")\"; echo \"SHA256: $(sha256sum \"$f\" | cut -d' ' -f1)\"; echo; done > Packages");
  // Nothing of the node's own apt sources may reach the network.
  s.raw("rm -f /etc/apt/sources.list; for f in /etc/apt/sources.list.d/*; do case ${f##*/} in labfleet-*) ;; "
        "*) rm -f \"$f\" ;; esac; done");
  MustExec(sbx, node, s.str());
}

void UseLocalAptRepo(const Sandbox& sbx, const std::string& node) {
  MustExec(sbx, node, WriteFile("/etc/apt/sources.list.d/labfleet-test-repo.list", "deb [trusted=yes] file:/srv/repo ./\n"));
}

int CountCalls(const std::vector<std::string>& calls, const std::string& call) {
  int n = 0;
  for (const auto& c : calls) n += c == call;
  return n;
}

}  // namespace labfleet::testing
