#include "engine/connect_map.h"

#include <fstream>
#include <sstream>

#include "engine/yaml_load.h"

namespace labfleet {

void ApplyConnectMap(Inventory& inv, const std::string& file, Findings& f) {
  std::ifstream in(file);
  if (!in) {
    f.error({file}, "connect-map", "cannot read the connect map " + file);
    return;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  Value doc = ParseYaml(ss.str(), file, f);
  const Value* nodes = doc.find("nodes");
  if (!nodes || !nodes->is_map()) {
    f.error({file, 1, 1}, "connect-map", "the connect map needs a 'nodes:' map");
    return;
  }
  for (const auto& e : nodes->entries()) {
    NodeDef* node = nullptr;
    for (auto& n : inv.nodes)
      if (n.name == e.key) node = &n;
    if (!node) {
      f.error(e.key_loc, "connect-map", "node '" + e.key + "' of the connect map is not in the inventory");
      continue;
    }
    if (const Value* a = e.value.find("address"); a && a->is_scalar()) node->address = a->str();
    Value raw = node->raw.is_map() ? node->raw : Value::Map(node->where);
    Value ssh = raw.find("ssh") && raw.find("ssh")->is_map() ? *raw.find("ssh") : Value::Map(e.value.loc());
    if (const Value* s = e.value.find("ssh"); s && s->is_map())
      for (const auto& se : s->entries()) ssh.set(se.key, se.value, se.key_loc);
    // The node layer wins the merge, so this also overrides a group's or the lab's jump host.
    if (!(e.value.find("ssh") && e.value.find("ssh")->find("jump"))) ssh.set("jump", Value::Scalar("", e.key_loc));
    raw.set("ssh", ssh, e.key_loc);
    Value cleaned = Value::Map(raw.loc());
    for (const auto& re : raw.entries())
      if (re.key != "host_key") cleaned.set(re.key, re.value, re.key_loc);
    node->raw = cleaned;
  }
}

}  // namespace labfleet
