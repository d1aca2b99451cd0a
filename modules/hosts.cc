// hosts: a managed block in /etc/hosts (`hosts: {10.0.1.66: [master]}`); lines outside it are untouched.
#include <nlohmann/json.hpp>

#include "engine/cidr.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {
namespace {

constexpr const char* kBegin = "# BEGIN labfleet managed block: edits inside are overwritten";
constexpr const char* kEnd = "# END labfleet managed block";

struct HostsWant {
  std::vector<std::pair<std::string, std::vector<std::string>>> entries;
};

}  // namespace

// Replaces (or appends) the managed block; exposed for tests.
std::string ReplaceManagedBlock(const std::string& text, const std::string& block) {
  std::string out;
  bool inside = false, placed = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (!inside && line.rfind("# BEGIN labfleet managed block", 0) == 0) {
      inside = true;
      continue;
    }
    if (inside) {
      if (line == kEnd) {
        inside = false;
        if (!placed && !block.empty()) out += block;
        placed = true;
      }
      continue;
    }
    out += line + "\n";
  }
  if (!placed && !block.empty()) {
    if (!out.empty() && out.back() != '\n') out += "\n";
    out += block;
  }
  return out;
}

namespace {

class HostsModule : public Module {
 public:
  std::string name() const override { return "hosts"; }
  int order() const override { return 50; }
  std::vector<std::string> settings_keys() const override { return {"hosts"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return MapOf(OneOf({Strings(), Scalar()}), "IP address -> [names], a block in /etc/hosts");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    auto check = [&](const Value* v) {
      if (!v) return;
      if (!v->is_map()) {
        f.error(v->loc(), "hosts-type", "hosts must be a map of address: [names]");
        return;
      }
      for (const auto& e : v->entries()) {
        if (!e.value.is_seq() && !e.value.is_scalar()) {
          f.error(e.value.loc(), "hosts-type", "names of host " + Quoted(e.key) + " must be a list of names");
          continue;
        }
        // Each entry becomes one line "ADDRESS NAME...": the address must be an IP address, every name one
        // host name, or a value could add fields or lines to /etc/hosts.
        if (!Report(f, e.key_loc, "hosts address " + Quoted(e.key), CheckNoControl(e.key)) && !ParseIp(e.key))
          f.error(e.key_loc, "hosts-address",
                  "hosts address " + Quoted(e.key) + " is not an IPv4 or IPv6 address (write the address as the key "
                  "and the names as its list: { 10.0.1.66: [master] })");
        std::vector<const Value*> names;
        if (e.value.is_scalar()) names.push_back(&e.value);
        for (const auto& n : e.value.items()) names.push_back(&n);
        for (const Value* n : names) {
          if (!n->is_scalar()) {
            f.error(n->loc(), "hosts-type", "names of host " + Quoted(e.key) + " must be a list of names");
            continue;
          }
          Report(f, n->loc(), "hosts name " + Quoted(n->str()) + " of " + Quoted(e.key), CheckHostName(n->str()));
        }
      }
    };
    check(inv.lab.find("defaults") ? inv.lab.find("defaults")->find("hosts") : nullptr);
    for (const auto& g : inv.groups) check(g.raw.find("hosts"));
    for (const auto& n : inv.nodes) check(n.raw.find("hosts"));
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("hosts");
    if (!v || !v->is_map()) return {};
    return {{"/etc/hosts", "hosts:"}};
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("hosts");
    if (!v || !v->is_map()) return {};
    auto want = std::make_shared<HostsWant>();
    for (const auto& e : v->entries()) {
      std::vector<std::string> names;
      if (e.value.is_scalar()) names.push_back(e.value.str());
      for (const auto& n : e.value.items()) names.push_back(n.str());
      want->entries.emplace_back(e.key, names);
    }
    return {{name(), "hosts:/etc/hosts", v->loc(), want}};
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override {
    return {FileProbe("/etc/hosts")};
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    FileState live = ParseFileProbe(results, "/etc/hosts");
    if (auto refused = RefuseUnreadEdit(live, "/etc/hosts")) return *refused;
    std::string block = std::string(kBegin) + "\n";
    for (const auto& [addr, names] : r.as<HostsWant>().entries) {
      block += addr;
      for (const auto& n : names) block += " " + n;
      block += "\n";
    }
    block += std::string(kEnd) + "\n";
    FileSpec want{"/etc/hosts", ReplaceManagedBlock(live.content, block), live.exists ? live.mode : 0644u,
                  live.exists ? live.owner : "root", live.exists ? live.group : "root"};
    return DiffFile(want, live, "hosts block in /etc/hosts (" + Counted(r.as<HostsWant>().entries.size(), "entry", "entries") +
                                    ")");
  }
};

ModuleRegistrar registrar(std::make_unique<HostsModule>());

}  // namespace
}  // namespace labfleet
