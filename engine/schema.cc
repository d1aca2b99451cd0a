#include "engine/schema.h"

#include <algorithm>
#include <cctype>

#include "engine/inventory.h"
#include "engine/module.h"

namespace labfleet {
namespace schema {
namespace {
nlohmann::json Described(nlohmann::json s, std::string description) {
  if (!description.empty()) s["description"] = std::move(description);
  return s;
}
}  // namespace

nlohmann::json Any(std::string description) { return Described(nlohmann::json::object(), std::move(description)); }
nlohmann::json Scalar(std::string description) {
  return Described({{"type", {"string", "number", "boolean"}}}, std::move(description));
}
// Value::as_bool: true/false/yes/no/on/off in any case, unquoted; YAML 1.2 editors read the words as strings.
nlohmann::json Boolean(std::string description) {
  nlohmann::json words = nlohmann::json::array();
  for (const char* w : {"true", "false", "yes", "no", "on", "off"}) {
    std::string s = w, cap = s, up = s;
    cap[0] = char(std::toupper((unsigned char)cap[0]));
    for (auto& c : up) c = char(std::toupper((unsigned char)c));
    words.push_back(s), words.push_back(cap), words.push_back(up);
  }
  return Described({{"anyOf", {{{"type", "boolean"}}, {{"enum", words}}}}}, std::move(description));
}
nlohmann::json Integer(long long min, long long max, std::string description) {
  return Described({{"type", "integer"}, {"minimum", min}, {"maximum", max}}, std::move(description));
}
nlohmann::json Enum(const std::vector<std::string>& values, std::string description) {
  return Described({{"enum", values}}, std::move(description));
}
nlohmann::json ListOf(nlohmann::json item, std::string description) {
  return Described({{"type", "array"}, {"items", std::move(item)}}, std::move(description));
}
nlohmann::json Strings(std::string description) { return ListOf(Scalar(), std::move(description)); }
nlohmann::json MapOf(nlohmann::json value, std::string description) {
  return Described({{"type", {"object", "null"}}, {"additionalProperties", std::move(value)}}, std::move(description));
}
nlohmann::json Closed(const std::vector<std::string>& keys, nlohmann::json props, std::string description) {
  nlohmann::json p = nlohmann::json::object();
  for (const auto& k : keys) p[k] = props.contains(k) ? props[k] : Any();
  // A null value reads as an empty map (MapReader), so `docker:` with nothing after it is valid.
  return Described({{"type", {"object", "null"}}, {"properties", std::move(p)}, {"additionalProperties", false}},
                   std::move(description));
}
nlohmann::json OneOf(std::vector<nlohmann::json> alternatives, std::string description) {
  return Described({{"anyOf", std::move(alternatives)}}, std::move(description));
}
}  // namespace schema

namespace {
using namespace schema;

nlohmann::json SshSchema() {
  return Closed(SshKeys(),
                {{"user", Scalar("login user")},
                 {"port", Integer(1, 65535)},
                 {"identity", Scalar("private key file")},
                 {"jump", Scalar("jump host: [user@]host[:port]")},
                 {"become", Enum({"", "sudo"}, "sudo: log in as `user`, run as root through sudo")},
                 {"host_key", Scalar("pinned host public key, e.g. ssh-ed25519 AAAA...")},
                 {"fallback_ports", ListOf(Integer(1, 65535))}},
                "how labfleet reaches the node");
}

// The settings a layer (lab.defaults, a group, a node) may hold: core keys, then every module's.
nlohmann::json SettingsProperties() {
  nlohmann::json props = {{"ssh", SshSchema()},
                          {"host_key", Scalar("the node's pinned SSH host public key")},
                          {"vars", MapOf(Any(), "free variables for templates ({{vars.name}})")}};
  const auto& core = CoreSettingsKeys();
  for (const auto& m : Modules())
    for (const auto& key : m->settings_keys()) {
      if (std::find(core.begin(), core.end(), key) != core.end()) continue;  // read by the loader, above
      nlohmann::json s = m->settings_schema(key);
      if (!s.contains("description")) s["description"] = "module " + m->name();
      props[key] = std::move(s);
    }
  return props;
}

nlohmann::json SettingsSchema(const nlohmann::json& props, std::string description) {
  return {{"type", {"object", "null"}},
          {"properties", props},
          {"additionalProperties", false},
          {"description", std::move(description)}};
}

}  // namespace

nlohmann::json InventorySchema() {
  const nlohmann::json settings = SettingsProperties();
  nlohmann::json node_props = settings;
  node_props["address"] = Scalar("IP address or host name labfleet connects to (required)");
  node_props["groups"] = Strings("groups the node is in");
  node_props["gpus"] = Integer(0, 1024, "number of GPUs");
  node_props["connection"] = Enum({"ssh", "local"});
  for (const auto& k : NodeOnlyKeys())
    if (!node_props.contains(k)) node_props[k] = Any();

  nlohmann::json lab = Closed(LabKeys(),
                              {{"name", Scalar("the lab's name (required)")},
                               {"domain", Scalar()},
                               {"reserved_networks", Strings("CIDRs Docker must not use (campus, VPN)")},
                               {"ssh", SshSchema()},
                               {"defaults", {{"$ref", "#/definitions/settings"}}},
                               {"templates_dir", Scalar()},
                               {"home_archive", Scalar()},
                               {"directory", Closed({"server", "base", "uri", "ca"},
                                                    {{"server", Scalar("the node that runs the LDAP server")},
                                                     {"base", Scalar("base DN, e.g. dc=lab,dc=example")},
                                                     {"uri", Scalar("ldaps:// or ldap:// URI clients use")},
                                                     {"ca", Scalar("PEM file of the CA, relative to the inventory")}},
                                                    "the lab's LDAP directory (docs/directory.md)")},
                               {"accounts", Enum({"local", "directory"})}},
                              "the lab: name, networks, defaults for every node");
  nlohmann::json user = Closed(
      UserKeys(),
      {{"uid", Integer(0, 4294967294LL, "fixed uid, the same on every node (required unless remove)")},
       {"full_name", Scalar()},
       {"primary_group", Scalar()},
       {"groups", Strings()},
       {"ssh_keys", Strings("authorized_keys lines")},
       {"shell", Scalar()},
       {"home", Scalar()},
       {"expires", Scalar("YYYY-MM-DD")},
       {"password_hash", Scalar()},
       {"rootless_docker", Boolean()},
       {"subids", Closed({"start", "count"}, {{"start", Integer(1, 4294967294LL)}, {"count", Integer(1, 4294967294LL)}})},
       {"on", Strings("nodes and groups the account exists on (default: every node)")},
       {"system", Boolean()},
       {"remove", OneOf({Boolean(), Enum({"archive"})}, "true, false or archive")},
       {"accounts", Enum({"local", "directory"})}});
  nlohmann::json user_group =
      Closed(UserGroupKeys(), {{"gid", Integer(0, 4294967294LL)}, {"system", Boolean("an existing system group")}});

  nlohmann::json sections = {
      {"lab", {{"$ref", "#/definitions/lab"}}},
      {"groups", MapOf({{"$ref", "#/definitions/settings"}}, "group name -> settings")},
      {"nodes", MapOf({{"$ref", "#/definitions/node"}}, "node name -> settings")},
      {"user_groups", MapOf({{"$ref", "#/definitions/user_group"}})},
      {"users", MapOf({{"$ref", "#/definitions/user"}})}};
  nlohmann::json props = nlohmann::json::object();
  for (const auto& s : InventorySections()) props[s] = sections.contains(s) ? sections[s] : Any();
  return {{"$schema", "http://json-schema.org/draft-07/schema#"},
          {"title", "labfleet inventory file"},
          {"description", "Generated by `labfleet schema` from the tables `labfleet validate` uses; validate stays the "
                          "authority (it also checks values, references and conflicts between files)."},
          {"type", {"object", "null"}},
          {"properties", props},
          {"patternProperties", {{"^x-", Any("YAML anchors; ignored by labfleet")}}},
          {"additionalProperties", false},
          {"definitions",
           {{"settings", SettingsSchema(settings, "settings of lab.defaults or a group")},
            {"node", SettingsSchema(node_props, "a node: address, groups, gpus, connection and settings")},
            {"lab", lab},
            {"user", user},
            {"user_group", user_group}}}};
}

}  // namespace labfleet
