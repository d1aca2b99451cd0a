// `labfleet schema`: generated from the key tables validate uses (checked key by key here), and a real JSON
// Schema validator (Debian's python3-jsonschema) accepts the example inventory with it and refuses typos and
// wrong shapes that `labfleet validate` also refuses.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using labfleet::testing::TempDir;

namespace {

// Runs the python3-jsonschema validator of schema.json over FILES, read as YAML 1.2 like yaml-language-server
// reads them (PyYAML is YAML 1.1: there `on:` is the key True and dates are not strings; both are turned off
// here); prints one "FILE: path: message" line per error. Exit 0 when every file is valid.
const char* kCheck = R"PY(
import json, re, sys, yaml, jsonschema
class L(yaml.SafeLoader): pass
L.yaml_implicit_resolvers = {k: [r for r in v if r[0] not in ('tag:yaml.org,2002:timestamp', 'tag:yaml.org,2002:bool')]
                             for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
L.add_implicit_resolver('tag:yaml.org,2002:bool', re.compile(r'^(?:true|True|TRUE|false|False|FALSE)$'), list('tTfF'))
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
bad = 0
for f in sys.argv[2:]:
    for e in v.iter_errors(yaml.load(open(f), Loader=L)):
        bad += 1
        print(f + ": " + "/".join(str(p) for p in e.absolute_path) + ": " + e.message)
sys.exit(1 if bad else 0)
)PY";

int Check(const TempDir& d, const std::string& files, std::string* out) {
  d.write("check.py", kCheck);
  std::string cmd = "cd " + ShellQuote(d.str()) + " && " + ShellQuote(LABFLEET_BINARY) +
                    " schema > schema.json && python3 check.py schema.json " + files + " > out.log 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(d.str("out.log"));
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_SUITE("schema") {
  TEST_CASE("every key validate accepts is in the schema, and only those") {
    RequireModules();
    nlohmann::json s = InventorySchema();
    const auto& defs = s["definitions"];
    for (const auto& k : SettingsKeys()) {
      CAPTURE(k);
      CHECK(defs["settings"]["properties"].contains(k));
      CHECK(defs["node"]["properties"].contains(k));
    }
    for (const auto& k : NodeOnlyKeys()) CHECK(defs["node"]["properties"].contains(k));
    CHECK(defs["settings"]["properties"].size() == SettingsKeys().size());
    CHECK(defs["node"]["properties"].size() == SettingsKeys().size() + NodeOnlyKeys().size());
    CHECK(defs["lab"]["properties"].size() == LabKeys().size());
    CHECK(defs["user"]["properties"].size() == UserKeys().size());
    CHECK(defs["user_group"]["properties"].size() == UserGroupKeys().size());
    CHECK(s["properties"].size() == InventorySections().size());
    for (const char* d : {"settings", "node", "lab", "user", "user_group"}) CHECK(defs[d]["additionalProperties"] == false);
    // Every module describes its settings (a new module that forgets gets the default: any value).
    for (const auto& m : Modules())
      for (const auto& k : m->settings_keys()) {
        if (k == "vars") continue;  // a core key (free map), read by the loader
        CAPTURE(m->name());
        CAPTURE(k);
        nlohmann::json ks = m->settings_schema(k);
        CHECK((ks.contains("type") || ks.contains("anyOf") || ks.contains("enum")));
      }
  }

  TEST_CASE("python3-jsonschema: the example inventory passes; typos and wrong shapes are refused") {
    TempDir d("labfleet-schema");
    std::string out;
    const std::string inv = std::string(LABFLEET_SOURCE_DIR) + "/inventory";
    std::string files;
    for (const char* f : {"lab.yaml", "groups.yaml", "nodes.yaml", "users/groups.yaml", "users/staff.yaml",
                          "users/students.yaml", "users/visitors.yaml"})
      files += " " + ShellQuote(inv + "/" + f);
    CHECK_MESSAGE(Check(d, files, &out) == 0, out);

    d.write("bad.yaml",
            "x-common: &c { docker: { mtu: 1400 } }\n"
            "nodes:\n"
            "  n1: { address: 10.0.0.1, dokcer: {} }\n"
            "  n2: { address: 10.0.0.2, docker: { mtu: big, data-root: /x } }\n"
            "  n3: { address: 10.0.0.3, sshd: { PermitRootLogn: no }, gpus: -1 }\n"
            "users:\n"
            "  alice: { uid: 2001, remove: later, expires: 2027-01-31 }\n"
            "groups:\n"
            "  gpu: { nvidia: { flavor: laptop }, services: { ssh: { state: runing } } }\n"
            "lab: { name: t, defauts: {} }\n");
    CHECK(Check(d, "bad.yaml", &out) == 1);
    for (const char* want : {"nodes/n1: Additional properties are not allowed ('dokcer'",
                             "nodes/n2/docker/mtu: 'big' is not of type 'integer'",
                             "nodes/n2/docker: Additional properties are not allowed ('data-root'",
                             "nodes/n3/sshd: Additional properties are not allowed ('PermitRootLogn'",
                             "nodes/n3/gpus: -1 is less than the minimum of 0",
                             "users/alice/remove: 'later' is not valid",
                             "groups/gpu/nvidia/flavor: 'laptop' is not one of",
                             "groups/gpu/services/ssh/state: 'runing' is not one of",
                             "lab: Additional properties are not allowed ('defauts'"}) {
      CAPTURE(want);
      CHECK(out.find(want) != std::string::npos);
    }
    CHECK(out.find("x-common") == std::string::npos);
    CHECK(out.find("expires") == std::string::npos);  // a date is a string, as editors read it

    // labfleet reads yes/no/on/off as booleans too (Value::as_bool); in YAML 1.2 they are strings.
    d.write("yes.yaml", "groups:\n  g: { nvidia: { hold: yes, persistence: off }, mounts: [ { target: /a, automount: maybe } ] }\n");
    CHECK(Check(d, "yes.yaml", &out) == 1);
    CHECK(out.find("hold") == std::string::npos);
    CHECK(out.find("persistence") == std::string::npos);
    CHECK(out.find("groups/g/mounts/0/automount: 'maybe' is not valid") != std::string::npos);
  }
}
