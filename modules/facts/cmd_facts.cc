// `labfleet facts [NODES|GROUPS...]`: what every selected node is, gathered in one round trip per node, all
// nodes in parallel. Text: one table row per node, then busy GPUs, warnings and unreachable nodes. JSON: every
// fact (NodeFacts::ToJson) plus a summary. Exit 4 when any node could not be reached or its script failed.
#include <algorithm>
#include <cstring>
#include <cmath>
#include <mutex>

#include "engine/cli.h"
#include "engine/connect.h"
#include "modules/facts/facts.h"
#include "engine/inventory.h"
#include "engine/ssh_transport.h"

namespace labfleet {
namespace {

std::string Human(long long kib) {
  if (kib < 0) return "?";
  const char* units[] = {"K", "M", "G", "T", "P"};
  double v = double(kib);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v >= 100 || u == 0)
    snprintf(buf, sizeof buf, "%.0f%s", v, units[u]);
  else
    snprintf(buf, sizeof buf, "%.1f%s", v, units[u]);
  return buf;
}

std::string Duration(double s) {
  long long t = (long long)s;
  long long d = t / 86400, h = t % 86400 / 3600, m = t % 3600 / 60;
  if (d) return std::to_string(d) + "d" + std::to_string(h) + "h";
  if (h) return std::to_string(h) + "h" + std::to_string(m) + "m";
  return std::to_string(m) + "m";
}

std::string OsText(const NodeFacts& f) {
  std::string name = f.os.name;
  // "Debian GNU/Linux" -> "Debian"; keep it short
  if (auto sp = name.find(' '); sp != std::string::npos) name = name.substr(0, sp);
  if (name.empty()) name = f.os.id;
  if (name.empty()) return "?";
  return f.os.version_id.empty() ? name : name + " " + f.os.version_id;
}

std::string CpuText(const NodeFacts& f) {
  std::string model = f.cpu.model.empty() ? "?" : f.cpu.model;
  for (const char* junk : {"(R)", "(TM)", " CPU", " Processor"}) {
    for (size_t p; (p = model.find(junk)) != std::string::npos;) model.erase(p, strlen(junk));
  }
  if (auto at = model.find(" @ "); at != std::string::npos) model = model.substr(0, at);
  if (model.size() > 28) model = model.substr(0, 27) + "~";
  return model + " (" + std::to_string(f.cpu.cores) + "c/" + std::to_string(f.cpu.logical) + "t)";
}

std::string GpuText(const NodeFacts& f) {
  int n = f.gpu_count();
  std::string s;
  if (n == 0) {
    s = f.nvidia_smi_error.empty() ? (f.gpus_expected > 0 ? "0" : "-") : "0 (nvidia-smi failed)";
  } else {
    std::string model = f.gpu_model();
    for (const char* prefix : {"NVIDIA Corporation ", "NVIDIA "})
      if (model.rfind(prefix, 0) == 0) model = model.substr(strlen(prefix));
    s = std::to_string(n) + "x " + model;
    if (!f.gpu_driver().empty()) s += " (" + f.gpu_driver() + ")";
    else if (f.gpu_source == "lspci") s += " (no driver)";
  }
  if (f.gpu_count_mismatch()) s += " [expected " + std::to_string(f.gpus_expected) + "]";
  return s;
}

std::string DockerText(const NodeFacts& f) {
  if (!f.docker_installed) return "-";
  if (f.docker_version.empty()) return "daemon down";
  return f.docker_version + ", " + std::to_string(f.containers.size()) + " running";
}

void PrintTable(Reporter& rep, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    rep.line(line);
  }
}

const CommandRegistrar kFacts(
    "facts", "show what each node is: OS, kernel, CPU, memory, disks, GPUs and who uses them, docker",
    [](CLI::App& sub) -> CommandRun {
      auto names = std::make_shared<std::vector<std::string>>();
      auto opts = std::make_shared<ConnectOptions>();
      sub.add_option("nodes", *names, "nodes or groups (default: all)");
      AddConnectOptions(sub, *opts);
      return [names, opts](CommandContext& ctx) -> int {
        Reporter& rep = ctx.reporter;
        Findings findings;
        Inventory inv = LoadInventoryDir(ctx.global.inventory, findings);
        if (findings.has_errors()) {
          findings.sort();
          rep.findings(findings);
          rep.error("the inventory has errors; run `labfleet validate` for details");
          return kExitErrors;
        }
        Findings unknown;
        std::vector<const NodeDef*> nodes = inv.select(*names, &unknown);
        if (!unknown.items().empty()) {
          rep.findings(unknown);
          return kExitUsage;
        }
        std::vector<NodeFacts> facts(nodes.size());
        std::vector<std::string> notes(nodes.size());
        ForEachNode(nodes, opts->parallel, [&](size_t i, const NodeDef& node) {
          NodeFacts& f = facts[i];
          try {
            auto t = Connect(inv, node, *opts);
            if (auto* ssh = dynamic_cast<SshTransport*>(t.get())) notes[i] = ssh->notes();
            // The node's own `busy:` settings: the same busy probe plan and apply run, parsed the same way.
            f = GatherFacts(*t, BusySettingsOf(inv.settings(node)));
          } catch (const TransportError& e) {
            f = NodeFacts{};
            f.reachable = false;
            f.error = e.what();
            f.error_kind = KindName(e.kind());
          } catch (const std::exception& e) {
            f = NodeFacts{};
            f.reachable = false;
            f.error = e.what();
            f.error_kind = "other";
          }
          f.node = node.name;
          f.gpus_expected = node.gpus;
        });

        size_t failed = 0;
        std::vector<std::string> warnings, mismatched;
        for (size_t i = 0; i < facts.size(); ++i) {
          const NodeFacts& f = facts[i];
          if (!f.error.empty()) ++failed;
          if (f.gpu_count_mismatch()) {
            mismatched.push_back(f.node);
            warnings.push_back(f.node + ": the inventory declares gpus: " + std::to_string(f.gpus_expected) +
                               " but the node shows " + std::to_string(f.gpu_count()) + " (" + f.gpu_source +
                               "); check that every GPU is seated and visible on the PCI bus (after a BIOS or PCI "
                               "change some may be missing), or fix `gpus:` in the inventory");
          }
          if (f.reachable && f.gpu_source == "nvidia-smi" && f.pci_nvidia_count() > int(f.gpus.size()))
            warnings.push_back(f.node + ": " + std::to_string(f.pci_nvidia_count()) +
                               " NVIDIA display controllers on the PCI bus but nvidia-smi lists " +
                               std::to_string(f.gpus.size()));
          if (!f.nvidia_smi_error.empty()) warnings.push_back(f.node + ": nvidia-smi failed: " + f.nvidia_smi_error);
          if (!f.state_error.empty()) warnings.push_back(f.node + ": " + f.state_error);
        }

        if (rep.json()) {
          auto& doc = rep.doc();
          doc["nodes"] = nlohmann::json::array();
          for (const auto& f : facts) doc["nodes"].push_back(f.ToJson());
          doc["warnings"] = warnings;
          std::vector<std::string> held;
          for (const auto& f : facts)
            if (f.busy_probed && f.busy.holds()) held.push_back(f.node);
          doc["summary"] = {{"nodes", facts.size()},
                            {"busy_or_unknown", held},
                            {"ok", facts.size() - failed},
                            {"failed", failed},
                            {"gpu_count_mismatch", mismatched}};
          return failed ? kExitNodesFailed : kExitOk;
        }

        for (const auto& n : notes)
          if (!n.empty()) rep.note(n);
        std::vector<std::vector<std::string>> rows;
        rows.push_back({"NODE", "OS", "KERNEL", "UP", "CPU", "MEM (avail)", "ROOT FS (free)", "GPUS", "DOCKER"});
        for (const auto& f : facts) {
          if (!f.reachable) {
            rows.push_back({f.node, "UNREACHABLE (" + f.error_kind + ")"});
            continue;
          }
          std::string root = f.root_fs_type.empty() ? "?" : f.root_fs_type;
          if (f.root_df) root += " " + Human(f.root_df->avail_kib) + "/" + Human(f.root_df->size_kib);
          rows.push_back({f.node, OsText(f), f.kernel.empty() ? "?" : f.kernel, f.uptime_s ? Duration(*f.uptime_s) : "?",
                          CpuText(f), Human(f.mem.total_kib) + " (" + Human(f.mem.available_kib) + ")", root,
                          GpuText(f), DockerText(f)});
        }
        PrintTable(rep, rows);

        std::vector<std::vector<std::string>> busy;
        for (const auto& f : facts)
          for (const auto& p : f.gpu_processes)
            busy.push_back({"  " + f.node, p.gpu_index >= 0 ? "GPU" + std::to_string(p.gpu_index) : p.gpu_uuid,
                            p.user.empty() ? "?" : p.user, "pid " + std::to_string(p.pid),
                            p.used_memory_mib >= 0 ? std::to_string(p.used_memory_mib) + " MiB" : "? MiB",
                            p.elapsed_s >= 0 ? "for " + Duration(double(p.elapsed_s)) : "", p.process_name});
        if (!busy.empty()) {
          rep.line("");
          rep.line("busy GPUs:");
          PrintTable(rep, busy);
        }
        // What plan/apply would decide: busy or unknown nodes hold disruptive changes back.
        std::vector<std::string> busy_lines;
        for (const auto& f : facts) {
          if (!f.reachable || !f.busy_probed) continue;
          if (f.busy.holds())
            busy_lines.push_back("  " + f.node + ": " + f.busy.state() + " \u2014 " + f.busy.describe() +
                                 " (disruptive changes wait)");
          for (const auto& n : f.busy.notes) busy_lines.push_back("  " + f.node + ": note: " + n);
        }
        if (!busy_lines.empty()) {
          rep.line("");
          rep.line("busy nodes:");
          for (const auto& l : busy_lines) rep.line(l);
        }
        for (const auto& f : facts)
          if (f.reachable && !f.error.empty()) warnings.push_back(f.node + ": " + f.error);
        if (!warnings.empty()) rep.line("");
        for (const auto& w : warnings) rep.line("warning: " + w);
        bool any_unreachable = false;
        for (const auto& f : facts)
          if (!f.reachable) {
            if (!any_unreachable) rep.line(""), rep.line("unreachable:");
            any_unreachable = true;
            rep.line("  " + f.node + ": " + f.error);
          }
        rep.line("");
        rep.line(std::to_string(facts.size()) + " node" + (facts.size() == 1 ? "" : "s") + ": " +
                 std::to_string(facts.size() - failed) + " ok, " + std::to_string(failed) + " failed" +
                 (mismatched.empty() ? "" : ", " + std::to_string(mismatched.size()) + " with a GPU count mismatch"));
        return failed ? kExitNodesFailed : kExitOk;
      };
    });

}  // namespace
}  // namespace labfleet
