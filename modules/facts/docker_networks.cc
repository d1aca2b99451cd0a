#include "modules/facts/docker_networks.h"

#include <nlohmann/json.hpp>

namespace labfleet {

Probe DockerNetworksProbe() {
  // Network ids are checked to be hex before they become words of the inspect command.
  return {"docker:networks",
          // The ids are picked by shell builtins (no grep, no head -n: each program is a fork/exec in every probe):
          // at most 64 KiB of the list (512 ids of 64 hex digits and a newline fit in half), a word cut there
          // dropped, words of 12..64 hex digits only, at most 512; set -f so no word is globbed.
          // A failing `docker network ls` (the daemon is not running, or does not answer) says "no-daemon": an
          // empty list would read as "no networks". So does a node where the CLI could only reach the default
          // socket and there is none (no DOCKER_HOST, no CLI contexts): the CLI is not started for nothing (it is
          // a large Go program, ~10 ms of the node's CPU in every probe).
          "if ! command -v docker >/dev/null 2>&1; then echo no-docker; elif [ -z \"${DOCKER_HOST:-}\" ] && "
          "[ ! -S /var/run/docker.sock ] && [ ! -S /run/docker.sock ] && "
          "[ ! -e \"${DOCKER_CONFIG:-${HOME:-/root}/.docker}/contexts\" ]; then echo no-daemon; "
          "else lf_r=$( { docker network ls -q --no-trunc "
          "2>/dev/null || echo @@lf-no-daemon; } | head -c 65536); case $lf_r in *@@lf-no-daemon) echo no-daemon;; *) "
          "[ ${#lf_r} -lt 65536 ] || lf_r=${lf_r%[!0-9a-f]*}; lf_n=; lf_c=0; set -f; "
          "for lf_i in $lf_r; do case $lf_i in *[!0-9a-f]*) continue;; esac; [ ${#lf_i} -ge 12 ] && "
          "[ ${#lf_i} -le 64 ] && [ $lf_c -lt 512 ] && { lf_n=\"$lf_n $lf_i\"; lf_c=$((lf_c+1)); }; done; "
          "if [ -n \"$lf_n\" ]; then docker network inspect $lf_n 2>/dev/null | head -c 4194304; else echo '[]'; fi;; esac; fi"};
}

DockerNetworks ParseDockerNetworks(std::string_view text) {
  DockerNetworks out;
  std::string_view t = text;
  while (!t.empty() && (t.front() == ' ' || t.front() == '\n')) t.remove_prefix(1);
  if (t.substr(0, 9) == "no-docker") {
    out.no_docker = true;
    return out;
  }
  if (t.substr(0, 9) == "no-daemon") {
    out.no_daemon = true;
    return out;
  }
  // Lines before the JSON array (a CLI warning) are skipped.
  size_t at = 0;
  while (at < t.size() && t[at] != '[') {
    size_t nl = t.find('\n', at);
    if (nl == std::string_view::npos) break;
    at = nl + 1;
    ++out.skipped;
  }
  if (at >= t.size() || t[at] != '[') {
    out.error = "no JSON array in the output of docker network inspect";
    return out;
  }
  auto j = nlohmann::json::parse(t.substr(at), nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    out.error = "the output of docker network inspect is not a JSON array (cut short, or not Docker's)";
    return out;
  }
  for (const auto& n : j) {
    if (!n.is_object() || !n.contains("Name") || !n["Name"].is_string()) {
      ++out.skipped;
      continue;
    }
    DockerNetwork net;
    net.name = n["Name"].get<std::string>();
    if (n.contains("Id") && n["Id"].is_string()) net.id = n["Id"].get<std::string>();
    if (n.contains("IPAM") && n["IPAM"].is_object() && n["IPAM"].contains("Config") && n["IPAM"]["Config"].is_array())
      for (const auto& c : n["IPAM"]["Config"])
        if (c.is_object() && c.contains("Subnet") && c["Subnet"].is_string()) net.subnets.push_back(c["Subnet"].get<std::string>());
    if (n.contains("Containers") && n["Containers"].is_object())
      for (const auto& [id, c] : n["Containers"].items())
        net.containers.push_back(c.is_object() && c.contains("Name") && c["Name"].is_string() ? c["Name"].get<std::string>() : id);
    out.networks.push_back(std::move(net));
  }
  return out;
}

}  // namespace labfleet
