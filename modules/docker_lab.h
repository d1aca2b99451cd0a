// What a user's rootless Docker daemon takes from the lab's docker settings (docker.cc, exposed for
// rootless_docker.cc). Pure.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "engine/value.h"

namespace labfleet {

struct DockerForUsers {
  // daemon.json keys shared with the system daemon, as dockerd names them: default-address-pools,
  // registry-mirrors, insecure-registries, dns (only those the settings set).
  nlohmann::json daemon_json = nlohmann::json::object();
  std::string http_proxy, https_proxy, no_proxy;  // no_proxy joined with ','; "" when unset
};
// `docker`: a node's merged `docker:` value (validated by the docker module); a non-map gives nothing.
DockerForUsers DockerSettingsForUsers(const Value& docker);

}  // namespace labfleet
