#include "engine/module.h"

#include <nlohmann/json.hpp>

#include "engine/schema.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace labfleet {

static std::vector<std::unique_ptr<Module>>& Registry() {
  static std::vector<std::unique_ptr<Module>> modules;
  return modules;
}

ModuleRegistrar::ModuleRegistrar(std::unique_ptr<Module> m) {
  auto& r = Registry();
  for (const auto& other : r)
    if (other->name() == m->name()) {
      // Two modules of one name would each own the same settings: a build defect, not a user error.
      std::fprintf(stderr, "labfleet: two modules register the name '%s'\n", m->name().c_str());
      std::abort();
    }
  r.push_back(std::move(m));
  // (order, name): the apply order never depends on which object file's static initialiser ran first.
  std::sort(r.begin(), r.end(), [](const auto& a, const auto& b) {
    return a->order() != b->order() ? a->order() < b->order() : a->name() < b->name();
  });
}

const std::vector<std::unique_ptr<Module>>& Modules() { return Registry(); }

void RequireModules() {
  if (Registry().empty())
    throw std::runtime_error(
        "no module is registered: this labfleet was linked without its modules (link labfleet_core with "
        "--whole-archive, as CMakeLists.txt does); it would plan nothing and report every node converged");
}

const Module* FindModule(std::string_view name) {
  for (const auto& m : Registry())
    if (m->name() == name) return m.get();
  return nullptr;
}

const ProbeOutput* FindProbe(const ProbeResults& results, const std::string& key) {
  auto it = results.find(key);
  return it == results.end() ? nullptr : &it->second;
}

DiffResult Noop(std::string why) {
  DiffResult d;
  d.noop = std::move(why);
  return d;
}

DiffResult Failure(std::string why) {
  DiffResult d;
  d.error = std::move(why);
  return d;
}

}  // namespace labfleet

namespace labfleet {
nlohmann::json Module::settings_schema(const std::string&) const { return schema::Any(); }
}  // namespace labfleet
