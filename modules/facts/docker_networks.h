// Docker networks as the node's docker CLI reports them, for the docker module's overlap check and
// remove_networks. The probe lists network ids (`docker network ls -q --no-trunc`), keeps only hex ids (12..64
// digits, at most 512, from the first 64 KiB of the list) and prints `docker network inspect` of them, cut at 4 MiB; a node without docker prints "no-docker",
// one whose `docker network ls` fails (no daemon answering), or where no daemon can answer (no socket at
// /var/run/docker.sock or /run/docker.sock, no DOCKER_HOST, no CLI contexts: the CLI is not started) "no-daemon".
// The output is untrusted: the parser never throws, returns an error for anything that is not a JSON array, and
// skips entries without a string Name and lines before the array (a CLI warning).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "engine/module.h"

namespace labfleet {

struct DockerNetwork {
  std::string name, id;                 // as Docker printed them (untrusted: quote them in messages)
  std::vector<std::string> subnets;     // IPAM.Config[].Subnet
  std::vector<std::string> containers;  // names (or ids) of the attached containers
};
struct DockerNetworks {
  bool no_docker = false;  // the node has no docker command
  bool no_daemon = false;  // it has one, but `docker network ls` failed (the daemon is not running or not answering)
  std::string error;       // the output could not be read (nothing may be removed then)
  std::vector<DockerNetwork> networks;
  int skipped = 0;  // lines before the JSON, entries without a name
};
Probe DockerNetworksProbe();  // key "docker:networks"
DockerNetworks ParseDockerNetworks(std::string_view text);

}  // namespace labfleet
