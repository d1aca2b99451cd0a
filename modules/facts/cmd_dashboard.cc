// `labfleet dashboard`: polls the selected nodes' facts over the usual transport (one round trip per node per
// interval, on the node's kept connection), keeps the latest in memory and serves the page, /api/facts and
// /metrics (modules/facts/dashboard.h). One thread per node: a slow or dead node never delays the others, and a
// node's next poll starts only after its previous one ended.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>

#include "engine/busy.h"
#include "engine/cli.h"
#include "engine/connect.h"
#include "engine/connect_map.h"
#include "engine/http_server.h"
#include "engine/inventory.h"
#include "engine/stop_signals.h"
#include "engine/transport.h"
#include "modules/facts/dashboard.h"
#include "modules/facts/facts.h"

namespace labfleet {
namespace {


long long Now() { return (long long)std::time(nullptr); }

struct Board {
  std::mutex mu;
  std::condition_variable wake;
  std::vector<DashboardNode> nodes;
};

bool ParseListen(const std::string& s, std::string* host, int* port) {
  size_t c = s.rfind(':');
  if (c == std::string::npos || c == 0) return false;
  *host = s.substr(0, c);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  try {
    size_t used = 0;
    int p = std::stoi(s.substr(c + 1), &used);
    if (used != s.size() - c - 1 || p < 0 || p > 65535) return false;
    *port = p;
  } catch (...) {
    return false;
  }
  return true;
}

const CommandRegistrar kDashboard(
    "dashboard", "serve a live page of the fleet's GPUs (who uses which, which are free), /api/facts and /metrics",
    [](CLI::App& sub) -> CommandRun {
      auto names = std::make_shared<std::vector<std::string>>();
      auto opts = std::make_shared<ConnectOptions>();
      auto listen = std::make_shared<std::string>("127.0.0.1:8080");
      auto interval = std::make_shared<int>(15);
      auto connect_map = std::make_shared<std::string>();
      sub.add_option("nodes", *names, "nodes or groups (default: all)");
      sub.add_option("--listen", *listen, "HOST:PORT to serve on (port 0: any free port, printed at start)")
          ->capture_default_str();
      sub.add_option("--interval", *interval, "seconds between two polls of a node")
          ->check(CLI::Range(1, 3600))
          ->capture_default_str();
      sub.add_option("--connect-map", *connect_map, "YAML nodes map overriding addresses/ssh (staging, sandbox demo)");
      AddConnectOptions(sub, *opts);
      return [=](CommandContext& ctx) -> int {
        Reporter& rep = ctx.reporter;
        std::string host;
        int port = 0;
        if (!ParseListen(*listen, &host, &port)) {
          rep.error("--listen " + *listen + " is not HOST:PORT (e.g. 127.0.0.1:8080, or 0.0.0.0:8080 for the lab)");
          return kExitUsage;
        }
        Findings findings;
        Inventory inv = LoadInventoryDir(ctx.global.inventory, findings);
        if (!findings.has_errors() && !connect_map->empty()) ApplyConnectMap(inv, *connect_map, findings);
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
        // A poll that hangs must not outlive two intervals by much: the page shows the node as unreachable.
        ConnectOptions copts = *opts;
        copts.command_timeout_s = std::min(opts->command_timeout_s, std::max(5, *interval * 2));
        copts.connect_timeout_s = std::min(opts->connect_timeout_s, std::max(3, *interval));
        // `stop` ends the pollers and cancels their commands: set by the first SIGINT/SIGTERM (through the watcher
        // below), or when the server stops serving for any other reason.
        StopSignals signals;
        std::atomic<bool> stop{false};
        copts.cancel = &stop;

        Board board;
        for (const NodeDef* n : nodes) {
          DashboardNode d;
          d.name = n->name;
          d.groups = n->groups;
          d.gpus_expected = n->gpus;
          board.nodes.push_back(std::move(d));
        }

        HttpServer server([&](const std::string& path, const std::string&) -> HttpResponse {
          if (path == "/" || path == "/index.html")
            return {200, "text/html; charset=utf-8", DashboardPage(*interval)};
          if (path == "/api/facts") {
            std::lock_guard<std::mutex> lk(board.mu);
            return {200, "application/json", DashboardJson(board.nodes, Now(), *interval).dump() + "\n"};
          }
          if (path == "/metrics") {
            std::lock_guard<std::mutex> lk(board.mu);
            return {200, "text/plain; version=0.0.4; charset=utf-8", DashboardMetrics(board.nodes, Now())};
          }
          if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
          return {404, "text/plain; charset=utf-8", "not found: try /, /api/facts or /metrics\n"};
        });
        int bound = server.bind(host, port);


        std::vector<std::thread> pollers;
        for (size_t i = 0; i < nodes.size(); ++i)
          pollers.emplace_back([&, i] {
            const NodeDef& node = *nodes[i];
            const BusySettings busy = BusySettingsOf(inv.settings(node));
            std::unique_ptr<Transport> t;
            while (!stop) {
              auto started = std::chrono::steady_clock::now();
              NodeFacts f;
              try {
                if (!t) t = Connect(inv, node, copts);
                f = GatherFacts(*t, busy);
              } catch (const TransportError& e) {
                t.reset();  // reconnect next time
                f = NodeFacts{};
                f.error = e.what();
                f.error_kind = KindName(e.kind());
              } catch (const std::exception& e) {
                t.reset();
                f = NodeFacts{};
                f.error = e.what();
                f.error_kind = "other";
              }
              f.node = node.name;
              f.gpus_expected = node.gpus;
              double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
              std::unique_lock<std::mutex> lk(board.mu);
              DashboardNode& d = board.nodes[i];
              d.facts = std::move(f);
              d.polled = true;
              d.polls++;
              d.last_poll = Now();
              if (d.facts.reachable) d.last_ok = d.last_poll;
              d.poll_seconds = took;
              board.wake.wait_until(lk, started + std::chrono::seconds(*interval), [&stop] { return stop.load(); });
            }
          });
        std::thread watcher([&] {
          while (!stop && !signals.stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
          stop = true;
          board.wake.notify_all();
          server.stop();
        });

        rep.note("labfleet dashboard: http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                 std::to_string(bound) + "/ (" + std::to_string(nodes.size()) + " nodes, every " +
                 std::to_string(*interval) + " s; /api/facts, /metrics; Ctrl-C stops)");
        server.serve();
        stop = true;
        watcher.join();
        board.wake.notify_all();
        for (auto& p : pollers) p.join();
        return kExitOk;
      };
    });

}  // namespace
}  // namespace labfleet
