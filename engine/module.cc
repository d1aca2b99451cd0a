#include "engine/module.h"

#include <algorithm>

namespace labfleet {

static std::vector<std::unique_ptr<Module>>& Registry() {
  static std::vector<std::unique_ptr<Module>> modules;
  return modules;
}

ModuleRegistrar::ModuleRegistrar(std::unique_ptr<Module> m) {
  auto& r = Registry();
  r.push_back(std::move(m));
  std::stable_sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a->order() < b->order(); });
}

const std::vector<std::unique_ptr<Module>>& Modules() { return Registry(); }

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
