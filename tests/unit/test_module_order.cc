// The order in which a node's changes are applied is part of labfleet's contract (engine/module.h says why each
// module sits where it does): pinned here, so a new module or a changed order() is a visible decision.
#include <doctest/doctest.h>

#include <string>

#include "engine/module.h"

using namespace labfleet;

TEST_SUITE("modules") {
  TEST_CASE("apply order: by order(), ties by name, whatever the link order") {
    std::string names;
    for (const auto& m : Modules()) names += m->name() + " " + std::to_string(m->order()) + ", ";
    CHECK(names ==
          "busy 1, images 2, apt_repos 4, packages 5, nvidia 6, pip 7, directory 8, user_groups 10, users 20, ssh_keys 30, subids 40, files 50, hosts 50, lines 55, "
          "directory_client 60, docker 70, sshd 70, mounts 75, exports 76, automounts 77, rootless_docker 80, services 85, timers 86, ");
    CHECK_NOTHROW(RequireModules());
  }

  TEST_CASE("every module has a unique name and is found by it") {
    for (const auto& m : Modules()) {
      CAPTURE(m->name());
      CHECK(FindModule(m->name()) == m.get());
    }
    CHECK(FindModule("no-such-module") == nullptr);
  }
}
