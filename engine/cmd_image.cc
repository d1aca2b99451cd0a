// `labfleet image capture|ship|list|export|import|activate|rollback` (issue 12, docs/images.md): root images as
// btrfs snapshots. Node-side scripts are built in engine/image.cc; bytes move through engine/image_ship.h (one
// read of the source's `btrfs send | zstd -T0`, fanned out to every target at once); imported files are checked
// by engine/zstd_stream.h before any node receives them.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "engine/busy.h"
#include "engine/cli.h"
#include "engine/connect.h"
#include "engine/image.h"
#include "engine/image_ship.h"
#include "engine/shell.h"
#include "engine/stop_signals.h"
#include "engine/syntax.h"
#include "engine/inventory.h"
#include "engine/sha256.h"
#include "engine/text.h"
#include "engine/zstd_stream.h"

namespace labfleet {
namespace {

std::string RandomTag() {
  std::random_device rd;
  char b[17];
  snprintf(b, sizeof b, "%08x%08x", rd(), rd());
  return b;
}

std::string UtcStamp(bool iso) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  strftime(b, sizeof b, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y%m%dT%H%M%SZ", &tm);
  return b;
}

std::string FirstLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.size() > 600) s = s.substr(0, 600) + "...";
  for (char& c : s)
    if (c == '\n') c = ' ';
    else if (static_cast<unsigned char>(c) < 32) c = '?';
  return s;
}

struct Loaded {
  Inventory inv;
  bool ok = false;
};

Loaded Load(CommandContext& ctx) {
  Loaded l;
  Findings f;
  l.inv = LoadInventoryDir(ctx.global.inventory, f);
  if (f.has_errors()) {
    f.sort();
    ctx.reporter.findings(f);
    ctx.reporter.error("the inventory has errors; run `labfleet validate` for details");
    return l;
  }
  l.ok = true;
  return l;
}

ImageSettings SettingsOf(const Inventory& inv, const NodeDef& n) {
  Value eff = inv.settings(n);
  return ParseImageSettings(eff.is_map() ? eff.find("images") : nullptr, nullptr);
}

// The selection, or nullopt after reporting unknown names.
std::optional<std::vector<const NodeDef*>> Select(CommandContext& ctx, const Inventory& inv,
                                                  const std::vector<std::string>& names) {
  Findings unknown;
  auto nodes = inv.select(names, &unknown);
  if (!unknown.items().empty()) {
    ctx.reporter.findings(unknown);
    return std::nullopt;
  }
  return nodes;
}

std::vector<Subvolume> Held(Transport& t, const ImageSettings& s) {
  RunResult r = t.run(HeldImagesProbe(s));
  if (!r.ok()) throw std::runtime_error("listing " + s.snapshot_dir + " failed (exit " + std::to_string(r.exit_code) + "): " + FirstLine(r.err));
  return ParseHeldImages(r.out);
}

const Subvolume* FindImage(const std::vector<Subvolume>& held, const std::string& name) {
  for (const auto& sv : held)
    if (sv.name == name && sv.readonly) return &sv;
  return nullptr;
}

// The source's stdout into a file (export), hashed as it passes.
struct FileSink : ByteSink {
  std::ofstream out;
  Sha256 hash;
  uint64_t bytes = 0;
  bool write(const char* d, size_t n) override {
    hash.update(std::string_view(d, n));
    bytes += n;
    out.write(d, std::streamsize(n));
    return bool(out);
  }
};

// Progress of one stream, every 2 s: per target bytes and rate (text: a note on stderr; JSON: doc()["progress"]).
// There is no ETA: the size of a compressed send stream is known only at its end.
struct ProgressSink : ByteSink {
  FanOut& fan;
  Reporter& rep;
  std::vector<std::string> names;
  std::string image;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), last = start;
  ProgressSink(FanOut& f, Reporter& r, std::vector<std::string> n, std::string im)
      : fan(f), rep(r), names(std::move(n)), image(std::move(im)) {}
  bool write(const char* d, size_t n) override {
    bool more = fan.write(d, n);
    auto now = std::chrono::steady_clock::now();
    if (now - last >= std::chrono::seconds(2)) {
      last = now;
      double secs = std::chrono::duration<double>(now - start).count();
      std::vector<uint64_t> t = fan.taken();
      std::string line = image + ": " + ByteCount(fan.written()) + " read from the source";
      nlohmann::json ev = {{"image", image}, {"seconds", secs}, {"read", fan.written()}, {"targets", nlohmann::json::object()}};
      for (size_t i = 0; i < t.size() && i < names.size(); ++i) {
        char rate[32];
        snprintf(rate, sizeof rate, "%.1f", double(t[i]) / (1 << 20) / std::max(secs, 0.001));
        line += "; " + names[i] + " " + ByteCount(t[i]) + " (" + rate + " MiB/s)";
        ev["targets"][names[i]] = t[i];
      }
      if (rep.json()) rep.doc()["progress"].push_back(ev);
      else rep.note(line);
    }
    return more;
  }
};

// One target of a transfer: its connection, settings and what it holds.
struct Target {
  const NodeDef* node = nullptr;
  std::unique_ptr<Transport> t;
  ImageSettings s;
  std::vector<Subvolume> held;
  std::string parent;  // image name of the shared parent ("" = full)
  std::string store;   // --store: the directory the stream is kept in as a file ("" = a node receiving it)
  std::string status;  // "" while pending; else done / skipped / failed
  std::string detail;
};

// Ships one stream (from `pump`) to `group`; fills status/detail. `pump(FanOut&)` returns whether the source
// succeeded (and why not in *why).
void ShipGroup(Reporter& rep, std::vector<Target*>& group, const std::string& name, const std::string& manifest,
               const std::function<bool(ByteSink&, std::string*)>& pump, nlohmann::json& events, uint64_t* wire_bytes,
               std::string* sha) {
  const std::string tag = RandomTag();
  std::vector<Receiver> recv;
  for (Target* tg : group)
    recv.push_back([tg, tag, name](ByteSource& in) {
      return tg->t->stream(tg->store.empty() ? ReceiveScript(tg->s, name, tag) : StoreReceiveScript(tg->store, name, tag), in);
    });
  FanOut fan(std::move(recv));
  std::vector<std::string> names;
  for (Target* tg : group) names.push_back(tg->node->name);
  ProgressSink progress(fan, rep, names, name);
  std::string why;
  bool src_ok = false;
  try {
    src_ok = pump(progress, &why);
  } catch (const std::exception& e) {
    why = e.what();
  }
  FanOutResult res = fan.finish(src_ok);
  // The transfer is over (done, failed or interrupted). What follows on each target (keep the snapshot after the
  // hash check, or delete what was received) is short and must run to its end, also after an interrupt: a
  // target is never left holding half an image.
  for (Target* tg : group) tg->t->set_cancel(nullptr);
  *wire_bytes = res.bytes;
  *sha = res.sha256;
  for (size_t i = 0; i < group.size(); ++i) {
    Target& tg = *group[i];
    const ReceiverOutcome& o = res.receivers[i];
    std::string reported;
    if (o.ok) {
      auto at = o.result.out.find("sha256 ");
      if (at != std::string::npos) reported = o.result.out.substr(at + 7, 64);
    }
    if (!src_ok || !o.ok) {
      try {
        tg.t->run(tg.store.empty() ? AbortReceiveScript(tg.s, name, tag) : StoreAbortScript(tg.store, name, tag));
      } catch (...) {
      }
      tg.status = "failed";
      tg.detail = !src_ok ? "the source failed: " + FirstLine(why) : "receiving failed: " + FirstLine(o.error);
      continue;
    }
    try {
      // The node compares its own hash of what it received with the one labfleet saw pass, and only then keeps it.
      std::string mj = manifest;
      if (!tg.store.empty()) {  // the file's manifest says which image the stream is a delta against (import reads it)
        nlohmann::json j = nlohmann::json::parse(manifest, nullptr, false);
        if (j.is_object()) j["stream_parent"] = tg.parent;
        mj = j.dump();
      }
      RunResult f = tg.t->run(tg.store.empty() ? FinalizeScript(tg.s, tag, name, res.sha256, mj)
                                               : StoreFinalizeScript(tg.store, name, tag, res.sha256, mj));
      if (!f.ok()) {
        tg.status = "failed";
        tg.detail = (f.exit_code == 4 ? "hash mismatch, deleted: " : "keeping the snapshot failed: ") + FirstLine(f.err);
        continue;
      }
      tg.status = "done";
      tg.detail = std::string(tg.store.empty() ? "" : "stored as " + tg.store + "/" + name + ".zst, ") +
                  (tg.parent.empty() ? "full" : "incremental from " + tg.parent) + ", " +
                  ByteCount(res.bytes) + " on the wire, sha256 " + res.sha256.substr(0, 16) + (reported.empty() ? "" : "");
    } catch (const std::exception& e) {
      tg.status = "failed";
      tg.detail = e.what();
    }
  }
  events.push_back({{"parent", group.empty() ? "" : group[0]->parent}, {"bytes", res.bytes}, {"sha256", res.sha256},
                    {"source_ok", src_ok}});
}

void ConnectTargets(const Inventory& inv, const std::vector<const NodeDef*>& nodes, const ConnectOptions& copts,
                    std::vector<Target>& targets) {
  targets.resize(nodes.size());
  ForEachNode(nodes, copts.parallel, [&](size_t i, const NodeDef& n) {
    Target& tg = targets[i];
    tg.node = &n;
    tg.s = SettingsOf(inv, n);
    try {
      tg.t = Connect(inv, n, copts);
      tg.held = Held(*tg.t, tg.s);
    } catch (const std::exception& e) {
      tg.status = "failed";
      tg.detail = e.what();
    }
  });
}

int ReportTargets(CommandContext& ctx, const std::vector<Target>& targets, const char* verb) {
  auto& arr = ctx.reporter.doc()["targets"];
  arr = nlohmann::json::array();
  int failed = 0;
  for (const auto& tg : targets) {
    ctx.reporter.line(tg.node->name + ": " + tg.status + (tg.detail.empty() ? "" : " (" + tg.detail + ")"),
                      tg.status == "failed" ? LineStyle::Fail : tg.status == "done" ? LineStyle::Add : LineStyle::Plain);
    arr.push_back({{"node", tg.node->name}, {"status", tg.status}, {"detail", tg.detail}, {"parent", tg.parent}});
    if (tg.status == "failed") ++failed;
  }
  (void)verb;
  return failed ? kExitNodesFailed : kExitOk;
}

struct Args {
  ConnectOptions copts;
  std::string name, from, out, file, parent, store;
  std::vector<std::string> nodes;
  bool force = false;
  bool reboot = false;
  int batch = 1;
  int reboot_timeout = 600;
  int keep = 3;
  bool dry_run = false;
  // Set by the first SIGINT/SIGTERM (StopSignals): transfers stop (their targets keep nothing), no further node
  // or batch is started. Root swaps (activate, rollback) are never cut: they run to their end on the node.
  const std::atomic<bool>* stop = nullptr;
  bool stopped() const { return stop && stop->load(); }
};

int Capture(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  if (auto p = ImageNameProblem(a.name); !p.empty()) {
    ctx.reporter.error("--name " + a.name + ": " + p);
    return kExitUsage;
  }
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  if (sel->size() != 1) {
    ctx.reporter.error("image capture takes exactly one node (the golden node)");
    return kExitUsage;
  }
  const NodeDef& n = *(*sel)[0];
  ImageSettings s = SettingsOf(l.inv, n);
  auto t = Connect(l.inv, n, a.copts);
  std::vector<Subvolume> before = Held(*t, s);
  RunResult r = t->run(CaptureScript(s, a.name));
  if (!r.ok()) {
    ctx.reporter.error(n.name + ": capture failed (exit " + std::to_string(r.exit_code) + "): " + FirstLine(r.err));
    return kExitNodesFailed;
  }
  auto sv = ParseSubvolumeShow(r.out);
  if (!sv) {
    ctx.reporter.error(n.name + ": the snapshot was made but `btrfs subvolume show` of it did not parse: " + FirstLine(r.out));
    return kExitNodesFailed;
  }
  ImageManifest m;
  m.name = a.name;
  m.source_node = n.name;
  m.uuid = sv->uuid;
  m.generation = sv->generation;
  m.time = UtcStamp(true);
  // The parent: the newest image captured here from the same root (same parent uuid), if any.
  long long best = -1;
  for (const auto& b : before)
    if (b.readonly && b.received_uuid.empty() && b.parent_uuid == sv->parent_uuid && b.generation > best) {
      best = b.generation;
      m.parent = b.name;
      m.parent_uuid = b.uuid;
    }
  RunResult w = t->run(WriteManifestScript(s, a.name, m.ToJson().dump()));
  if (!w.ok()) {
    ctx.reporter.error(n.name + ": writing the manifest failed: " + FirstLine(w.err));
    return kExitNodesFailed;
  }
  ctx.reporter.line("captured " + a.name + " on " + n.name + " (" + s.root + " -> " + s.snapshot_dir + "/" + a.name +
                    ", uuid " + m.uuid + (m.parent.empty() ? "" : ", parent " + m.parent) + ")");
  ctx.reporter.doc()["image"] = m.ToJson();
  return kExitOk;
}

// The source node's image and manifest text.
struct SourceImage {
  const NodeDef* node = nullptr;
  std::unique_ptr<Transport> t;
  ImageSettings s;
  std::vector<Subvolume> held;
  Subvolume image;
  std::string manifest;
};

std::optional<SourceImage> OpenSource(CommandContext& ctx, const Inventory& inv, const Args& a) {
  SourceImage src;
  auto sel = Select(ctx, inv, {a.from});
  if (!sel) return std::nullopt;
  if (a.from.empty() || sel->size() != 1) {
    ctx.reporter.error("--from NODE: the one node that holds the image");
    return std::nullopt;
  }
  src.node = (*sel)[0];
  src.s = SettingsOf(inv, *src.node);
  src.t = Connect(inv, *src.node, a.copts);
  src.held = Held(*src.t, src.s);
  const Subvolume* im = FindImage(src.held, a.name);
  if (!im) {
    ctx.reporter.error(src.node->name + " holds no complete image " + a.name + " in " + src.s.snapshot_dir +
                       " (labfleet image list " + src.node->name + ")");
    return std::nullopt;
  }
  src.image = *im;
  RunResult mr = src.t->run(ReadManifestScript(src.s, a.name));
  std::string why;
  auto m = ImageManifest::FromJson(mr.out, &why);
  if (!mr.ok() || !m || m->name != a.name) {
    ctx.reporter.error(src.node->name + ": the manifest of " + a.name + " is missing or invalid (" +
                       (mr.ok() ? why : FirstLine(mr.err)) + ")");
    return std::nullopt;
  }
  src.manifest = m->ToJson().dump();
  return src;
}

int Ship(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  auto src = OpenSource(ctx, l.inv, a);
  if (!src) return kExitErrors;
  std::vector<const NodeDef*> tnodes;
  for (const NodeDef* n : *sel)
    if (n != src->node) tnodes.push_back(n);
  std::vector<Target> targets;
  ConnectTargets(l.inv, tnodes, a.copts, targets);
  // Group the targets by the parent each can take: one stream per distinct parent.
  std::map<std::string, std::vector<Target*>> groups;
  for (Target& tg : targets) {
    if (!tg.status.empty()) continue;
    if (TargetHolds(src->image, tg.held)) {
      tg.status = "skipped";
      tg.detail = "already holds " + a.name;
      continue;
    }
    if (FindImage(tg.held, a.name) || std::any_of(tg.held.begin(), tg.held.end(), [&](const Subvolume& h) { return h.name == a.name; })) {
      tg.status = "failed";
      tg.detail = "it holds another subvolume named " + a.name + " in " + tg.s.snapshot_dir;
      continue;
    }
    if (auto p = PickParent(src->image, src->held, tg.held)) tg.parent = p->name;
    groups[tg.parent].push_back(&tg);
  }
  // --store NODE:PATH: a self-contained copy (the full stream) kept as a file on a storage node
  std::unique_ptr<Target> store;
  if (!a.store.empty()) {
    size_t colon = a.store.find(':');
    PathResult dir = NormalizeAbsolutePath(colon == std::string::npos ? "" : a.store.substr(colon + 1));
    auto ssel = colon == std::string::npos ? std::nullopt : Select(ctx, l.inv, {a.store.substr(0, colon)});
    if (!ssel || ssel->size() != 1 || dir.error) {
      ctx.reporter.error("--store " + a.store + ": NODE:/ABSOLUTE/PATH of one node of the inventory");
      return kExitUsage;
    }
    store = std::make_unique<Target>();
    store->node = (*ssel)[0];
    store->store = dir.path;
    try {
      store->t = Connect(l.inv, *store->node, a.copts);
      groups[""].push_back(store.get());
    } catch (const std::exception& e) {
      store->status = "failed";
      store->detail = e.what();
    }
  }
  nlohmann::json streams = nlohmann::json::array();
  for (auto& [parent, group] : groups) {
    if (a.stopped()) {
      for (Target* tg : group) tg->status = "skipped", tg->detail = "not started: labfleet was interrupted";
      continue;
    }
    uint64_t bytes = 0;
    std::string sha;
    const std::string send = SendScript(src->s, a.name, parent);
    ShipGroup(ctx.reporter, group, a.name, src->manifest,
              [&](ByteSink& fan, std::string* why) {
                RunResult r = src->t->run_to(send, fan);
                if (!r.ok()) *why = "exit " + std::to_string(r.exit_code) + ": " + FirstLine(r.err);
                return r.ok();
              },
              streams, &bytes, &sha);
    ctx.reporter.line((parent.empty() ? "full stream" : "incremental stream from " + parent) + ": " +
                      std::to_string(bytes) + " bytes (" + ByteCount(bytes) + ") to " + Counted(group.size(), "node", "nodes"));
  }
  ctx.reporter.doc()["image"] = a.name;
  ctx.reporter.doc()["source"] = src->node->name;
  ctx.reporter.doc()["streams"] = streams;
  if (store) targets.push_back(std::move(*store));
  return ReportTargets(ctx, targets, "ship");
}

int Export(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto src = OpenSource(ctx, l.inv, a);
  if (!src) return kExitErrors;
  if (!a.parent.empty() && !FindImage(src->held, a.parent)) {
    ctx.reporter.error("--parent " + a.parent + ": " + src->node->name + " holds no such image");
    return kExitErrors;
  }
  const std::string part = a.out + ".part";
  FileSink sink;
  sink.out.open(part, std::ios::binary | std::ios::trunc);
  if (!sink.out) {
    ctx.reporter.error("cannot write " + part);
    return kExitErrors;
  }
  RunResult r;
  try {
    r = src->t->run_to(SendScript(src->s, a.name, a.parent), sink);
  } catch (...) {  // interrupted or connection lost: no partial file is left behind
    sink.out.close();
    std::remove(part.c_str());
    throw;
  }
  sink.out.close();
  if (!r.ok() || !sink.out) {
    std::remove(part.c_str());
    ctx.reporter.error("export failed (exit " + std::to_string(r.exit_code) + "): " + FirstLine(r.err));
    return kExitNodesFailed;
  }
  const std::string sha = sink.hash.hex();
  {
    std::ofstream h(a.out + ".sha256");
    h << sha << "  " << std::filesystem::path(a.out).filename().string() << "\n";  // `sha256sum -c` beside the file
    std::ofstream m(a.out + ".manifest.json");
    nlohmann::json mj = nlohmann::json::parse(src->manifest);
    mj["stream_parent"] = a.parent;
    m << mj.dump(2) << "\n";
    if (!h || !m) {
      ctx.reporter.error("cannot write " + a.out + ".sha256 / .manifest.json");
      return kExitErrors;
    }
  }
  std::rename(part.c_str(), a.out.c_str());
  ctx.reporter.line("exported " + a.name + (a.parent.empty() ? "" : " (incremental from " + a.parent + ")") + " to " +
                    a.out + ": " + std::to_string(sink.bytes) + " bytes, sha256 " + sha);
  ctx.reporter.doc()["file"] = a.out;
  ctx.reporter.doc()["bytes"] = sink.bytes;
  ctx.reporter.doc()["sha256"] = sha;
  return kExitOk;
}

int Import(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  // Everything about the file is checked before any node is touched: hash, then the zstd frames end to end.
  std::string expect;
  {
    std::ifstream h(a.file + ".sha256");
    h >> expect;
  }
  std::ifstream mf(a.file + ".manifest.json");
  std::string mtext((std::istreambuf_iterator<char>(mf)), std::istreambuf_iterator<char>());
  std::string why;
  auto m = ImageManifest::FromJson(mtext, &why);
  if (expect.size() != 64 || !m) {
    ctx.reporter.error(a.file + ": needs " + a.file + ".sha256 and a valid " + a.file + ".manifest.json (" +
                       (m ? "no hash" : why) + "), as `labfleet image export` writes them");
    return kExitErrors;
  }
  std::string stream_parent;
  if (auto j = nlohmann::json::parse(mtext, nullptr, false); j.is_object() && j.contains("stream_parent") && j["stream_parent"].is_string())
    stream_parent = j["stream_parent"].get<std::string>();
  {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) {
      ctx.reporter.error("cannot read " + a.file);
      return kExitErrors;
    }
    Sha256 h;
    ZstdCheck z;
    std::vector<char> buf(1 << 16);
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      std::string_view chunk(buf.data(), size_t(in.gcount()));
      h.update(chunk);
      z.feed(chunk);
    }
    std::string got = h.hex();
    if (got != expect) {
      ctx.reporter.error(a.file + ": SHA-256 " + got + " does not match " + expect + " (" + a.file +
                         ".sha256): the file is damaged; refused before any node received it");
      return kExitErrors;
    }
    if (!z.finish()) {
      ctx.reporter.error(a.file + ": " + z.error() + "; refused before any node received it");
      return kExitErrors;
    }
  }
  std::vector<Target> targets;
  ConnectTargets(l.inv, *sel, a.copts, targets);
  std::vector<Target*> group;
  for (Target& tg : targets) {
    if (!tg.status.empty()) continue;
    bool holds = std::any_of(tg.held.begin(), tg.held.end(), [&](const Subvolume& h) { return h.readonly && h.origin_uuid() == m->uuid; });
    if (holds) {
      tg.status = "skipped";
      tg.detail = "already holds " + m->name;
      continue;
    }
    tg.parent = stream_parent;
    group.push_back(&tg);
  }
  nlohmann::json streams = nlohmann::json::array();
  if (!group.empty()) {
    uint64_t bytes = 0;
    std::string sha;
    ShipGroup(ctx.reporter, group, m->name, m->ToJson().dump(),
              [&](ByteSink& fan, std::string* why) {
                std::ifstream in(a.file, std::ios::binary);
                std::vector<char> buf(1 << 16);
                while (in) {
                  if (a.stopped()) {
                    *why = "interrupted";
                    return false;
                  }
                  in.read(buf.data(), std::streamsize(buf.size()));
                  if (in.gcount() > 0 && !fan.write(buf.data(), size_t(in.gcount()))) break;
                }
                return true;
              },
              streams, &bytes, &sha);
  }
  ctx.reporter.doc()["image"] = m->name;
  ctx.reporter.doc()["streams"] = streams;
  return ReportTargets(ctx, targets, "import");
}

int List(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  std::vector<Target> targets;
  ConnectTargets(l.inv, *sel, a.copts, targets);
  auto& arr = ctx.reporter.doc()["nodes"];
  arr = nlohmann::json::array();
  int failed = 0;
  for (Target& tg : targets) {
    nlohmann::json jn = {{"node", tg.node->name}, {"images", nlohmann::json::array()}};
    if (!tg.status.empty()) {
      ++failed;
      jn["error"] = tg.detail;
      ctx.reporter.line(tg.node->name + ": " + tg.detail, LineStyle::Fail);
      arr.push_back(jn);
      continue;
    }
    std::string runs;
    try {
      RunResult r = tg.t->run("btrfs subvolume show " + ShellQuote(tg.s.root) + " 2>/dev/null | head -c 8192");
      if (auto root = ParseSubvolumeShow(r.out)) {
        jn["root"] = {{"uuid", root->uuid}, {"parent_uuid", root->parent_uuid}, {"path", root->path}};
        for (const auto& h : tg.held)
          if (h.uuid == root->parent_uuid) runs = h.name;
        jn["runs_image"] = runs;
      }
    } catch (const std::exception&) {
    }
    ctx.reporter.line(tg.node->name + ":" + (runs.empty() ? "" : " runs " + runs));
    for (const auto& h : tg.held) {
      jn["images"].push_back({{"name", h.name}, {"uuid", h.uuid}, {"origin_uuid", h.origin_uuid()},
                              {"received", !h.received_uuid.empty()}, {"readonly", h.readonly},
                              {"generation", h.generation}, {"created", h.created}});
      char line[256];
      snprintf(line, sizeof line, "  %-24s %-36s %s%s", h.name.c_str(), h.origin_uuid().c_str(),
               h.received_uuid.empty() ? "captured" : "received", h.readonly ? "" : " (not read-only: not an image)");
      ctx.reporter.line(line);
    }
    arr.push_back(jn);
  }
  return failed ? kExitNodesFailed : kExitOk;
}

// Activation or rollback of one node (tg.status/detail filled).
void SwapOne(const Inventory& inv, const Args& a, bool activate, const std::string& stamp, const NodeDef& n, Target& tg) {
  tg.node = &n;
  tg.s = SettingsOf(inv, n);
  if (a.stopped()) {
    tg.status = "skipped";
    tg.detail = "not started: labfleet was interrupted";
    return;
  }
  try {
    tg.t = Connect(inv, n, a.copts);
    if (activate && !a.force) {
      // Activation is disruptive: deferred on a busy node (or one whose GPU use is unknown), like apply's
      // disruptive changes; the node's own busy: settings, the same probe and parser.
      BusySettings bs = BusySettingsOf(inv.settings(n));
      RunResult b = tg.t->run(BusyProbeCommand(bs));
      BusyInfo info = ParseBusy(b.out, bs);
      if (info.holds()) {
        tg.status = "deferred";
        tg.detail = (info.busy() ? "busy: " : "GPU use unknown: ") + info.describe() + "; nothing changed (--force to activate anyway)";
        return;
      }
    }
    RunResult r = tg.t->run(activate ? ActivateScript(tg.s, a.name, stamp) : RollbackScript(tg.s, stamp));
    if (!r.ok()) {
      tg.status = "failed";
      tg.detail = "exit " + std::to_string(r.exit_code) + ": " + FirstLine(r.err);
      return;
    }
    tg.status = "done";
    for (std::string_view line : LineViews(r.out)) {
      if (line.substr(0, 5) == "prev ") tg.detail = "running root renamed to " + std::string(line.substr(5));
      if (line.substr(0, 9) == "restored ") tg.detail = "restored " + std::string(line.substr(9));
    }
    if (!a.reboot) tg.detail += activate ? "; " + a.name + " is the next root (reboot to run it)" : "; reboot to run it";
  } catch (const std::exception& e) {
    tg.status = "failed";
    tg.detail = e.what();
  }
}

const char* kBootId = "cat /proc/sys/kernel/random/boot_id";
const char* kRebootCmd =
    "nohup sh -c 'sleep 1; systemctl reboot 2>/dev/null || reboot' </dev/null >/dev/null 2>&1 &";

// --reboot: activate, reboot, wait for a new boot id over SSH, check the node runs the image (its root subvolume
// was made from the image) and is healthy (GPU count, docker); a node that fails is rolled back (and rebooted).
void ActivateRebootOne(const Inventory& inv, const Args& a, const std::string& stamp, const NodeDef& n, Target& tg) {
  std::string boot_before, image_uuid;
  try {
    auto t0 = Connect(inv, n, a.copts);
    boot_before = FirstLine(t0->run(kBootId).out);
    if (const Subvolume* im = FindImage(Held(*t0, SettingsOf(inv, n)), a.name)) image_uuid = im->uuid;
  } catch (const std::exception& e) {
    tg.node = &n;
    tg.status = "failed";
    tg.detail = e.what();
    return;
  }
  SwapOne(inv, a, true, stamp, n, tg);
  if (tg.status != "done") return;
  std::string why;
  try {
    tg.t->run(kRebootCmd);
  } catch (const std::exception&) {
  }
  tg.t.reset();
  std::unique_ptr<Transport> t;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(a.reboot_timeout);
  bool rebooted = false;
  while (std::chrono::steady_clock::now() < until) {
    if (a.stopped()) {
      tg.status = "failed";
      tg.detail += "; rebooting, interrupted while waiting for it to come back: check it with `labfleet image list " +
                   n.name + "` (roll back with `labfleet image rollback " + n.name + "` if it does not run " + a.name + ")";
      return;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    try {
      t = Connect(inv, n, a.copts);
      if (FirstLine(t->run(kBootId).out) != boot_before) {
        rebooted = true;
        break;
      }
    } catch (const std::exception&) {
      t.reset();
    }
  }
  if (!rebooted) {
    why = "it did not come back with a new boot id within " + std::to_string(a.reboot_timeout) + " s (--reboot-timeout)";
  } else {
    ImageSettings s = SettingsOf(inv, n);
    auto root = ParseSubvolumeShow(t->run("btrfs subvolume show " + ShellQuote(s.root) + " 2>/dev/null | head -c 8192").out);
    if (!root || image_uuid.empty() || root->parent_uuid != image_uuid)
      why = "it does not run " + a.name + " after the reboot (its root " + s.root + " was not made from the image)";
    else if (n.gpus >= 0) {
      RunResult g = t->run("nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true");
      if (FirstLine(g.out) != std::to_string(n.gpus))
        why = "health check: nvidia-smi lists " + FirstLine(g.out) + " GPUs, the inventory says " + std::to_string(n.gpus);
    }
    if (why.empty()) {
      RunResult dk = t->run("if command -v docker >/dev/null 2>&1; then timeout 30 docker info >/dev/null 2>&1 || echo failed; fi");
      if (FirstLine(dk.out) == "failed") why = "health check: `docker info` failed";
    }
  }
  if (why.empty()) {
    tg.detail += "; rebooted into " + a.name + ", healthy";
    return;
  }
  // Roll the node back: swap the previous root in and reboot into it.
  tg.status = "failed";
  tg.detail += "; " + why;
  try {
    if (!t) t = Connect(inv, n, a.copts);
    ImageSettings s = SettingsOf(inv, n);
    RunResult rb = t->run(RollbackScript(s, UtcStamp(false)));
    if (!rb.ok()) throw std::runtime_error("exit " + std::to_string(rb.exit_code) + ": " + FirstLine(rb.err));
    t->run(kRebootCmd);
    tg.detail += "; rolled back to the previous root (rebooting into it)";
  } catch (const std::exception& e) {
    tg.detail += std::string("; ROLLBACK FAILED: ") + e.what() + " (see docs/images.md, \"Recovering by hand\")";
  }
}

int Swap(CommandContext& ctx, Args& a, bool activate) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  if (activate && !ImageNameProblem(a.name).empty()) {
    ctx.reporter.error("image name: " + ImageNameProblem(a.name));
    return kExitUsage;
  }
  const std::string stamp = UtcStamp(false);
  std::vector<Target> targets(sel->size());
  if (!activate || !a.reboot) {
    ForEachNode(*sel, a.copts.parallel, [&](size_t i, const NodeDef& n) { SwapOne(l.inv, a, activate, stamp, n, targets[i]); });
    return ReportTargets(ctx, targets, activate ? "activate" : "rollback");
  }
  // --reboot: K nodes at a time; a failed node is rolled back and the rollout stops (later batches untouched).
  const size_t k = size_t(std::max(1, a.batch));
  bool stopped = false;
  for (size_t b = 0; b < sel->size(); b += k) {
    std::vector<const NodeDef*> batch(sel->begin() + long(b), sel->begin() + long(std::min(sel->size(), b + k)));
    if (stopped || a.stopped()) {
      for (size_t j = 0; j < batch.size(); ++j) {
        targets[b + j].node = batch[j];
        targets[b + j].status = "skipped";
        targets[b + j].detail = stopped ? "not started: the rollout stopped after a failed node"
                                        : "not started: labfleet was interrupted";
      }
      continue;
    }
    ForEachNode(batch, a.copts.parallel, [&](size_t j, const NodeDef& n) { ActivateRebootOne(l.inv, a, stamp, n, targets[b + j]); });
    for (size_t j = 0; j < batch.size(); ++j)
      if (targets[b + j].status == "failed") stopped = true;
  }
  return ReportTargets(ctx, targets, "activate");
}

int Prune(CommandContext& ctx, Args& a) {
  Loaded l = Load(ctx);
  if (!l.ok) return kExitErrors;
  auto sel = Select(ctx, l.inv, a.nodes);
  if (!sel) return kExitUsage;
  std::vector<Target> targets;
  ConnectTargets(l.inv, *sel, a.copts, targets);
  auto& arr = ctx.reporter.doc()["nodes"];
  arr = nlohmann::json::array();
  int failed = 0;
  for (Target& tg : targets) {
    nlohmann::json jn = {{"node", tg.node->name}, {"removed", nlohmann::json::array()}, {"kept", nlohmann::json::array()}};
    try {
      if (!tg.status.empty()) throw std::runtime_error(tg.detail);
      RunResult all = tg.t->run(ListAllSubvolumesProbe(tg.s));
      if (!all.ok()) throw std::runtime_error("btrfs subvolume list failed: " + FirstLine(all.err));
      PruneDecision d = PlanPrune(tg.held, ParseAllSubvolumes(all.out), a.keep);
      for (const auto& [name, why] : d.keep) {
        jn["kept"].push_back({{"name", name}, {"why", why}});
        ctx.reporter.line(tg.node->name + ": keep " + name + " (" + why + ")");
      }
      for (const auto& name : d.remove) {
        if (!a.dry_run) {
          RunResult r = tg.t->run(DeleteImageScript(tg.s, name));
          if (!r.ok()) throw std::runtime_error("deleting " + name + " failed: " + FirstLine(r.err));
        }
        jn["removed"].push_back(name);
        ctx.reporter.line(tg.node->name + ": " + (a.dry_run ? "would delete " : "deleted ") + name, LineStyle::Remove);
      }
    } catch (const std::exception& e) {
      ++failed;
      jn["error"] = e.what();
      ctx.reporter.line(tg.node->name + ": " + e.what(), LineStyle::Fail);
    }
    arr.push_back(jn);
  }
  return failed ? kExitNodesFailed : kExitOk;
}

CommandRegistrar image_cmd("image", "root images: btrfs snapshots of a golden node shipped to nodes with zstd",
                           [](CLI::App& sub) -> CommandRun {
  auto a = std::make_shared<Args>();
  sub.require_subcommand(1);
  auto* cap = sub.add_subcommand("capture", "read-only snapshot of a node's root as an image, with its manifest");
  cap->add_option("node", a->nodes, "the golden node")->required()->expected(1);
  cap->add_option("--name", a->name, "image name")->required();
  AddConnectOptions(*cap, a->copts);
  auto* ship = sub.add_subcommand("ship", "send an image to nodes: one compressed stream, fanned out, deltas where shared");
  ship->add_option("name", a->name, "image name")->required();
  ship->add_option("--from", a->from, "the node holding the image")->required();
  ship->add_option("--store", a->store, "NODE:PATH: also keep the (full) stream as PATH/NAME.zst on a storage node");
  ship->add_option("--to", a->nodes, "target nodes or groups (NODE,GROUP,...)")->required()->delimiter(',');
  AddConnectOptions(*ship, a->copts);
  auto* list = sub.add_subcommand("list", "images each node holds and the one it runs");
  list->add_option("nodes", a->nodes, "nodes or groups (default: all)");
  AddConnectOptions(*list, a->copts);
  auto* exp = sub.add_subcommand("export", "an image's compressed stream as a file (+ .sha256, .manifest.json)");
  exp->add_option("name", a->name, "image name")->required();
  exp->add_option("--from", a->from, "the node holding the image")->required();
  exp->add_option("--parent", a->parent, "an image the receivers hold: an incremental stream");
  exp->add_option("-o,--output", a->out, "FILE.zst")->required();
  AddConnectOptions(*exp, a->copts);
  auto* imp = sub.add_subcommand("import", "receive an exported file on nodes (hash and zstd checked first)");
  imp->add_option("file", a->file, "FILE.zst")->required();
  imp->add_option("--to", a->nodes, "target nodes or groups (NODE,GROUP,...)")->required()->delimiter(',');
  AddConnectOptions(*imp, a->copts);
  auto* act = sub.add_subcommand("activate", "make an image the nodes' next root (rename-swap of the root subvolume)");
  act->add_option("name", a->name, "image name")->required();
  act->add_flag("--reboot", a->reboot, "reboot the nodes, wait for each, check it runs the image and is healthy; roll a failed one back and stop");
  act->add_option("--batch", a->batch, "with --reboot: nodes rebooted at a time")->check(CLI::PositiveNumber)->capture_default_str();
  act->add_option("--reboot-timeout", a->reboot_timeout, "with --reboot: seconds a node may take to come back")
      ->check(CLI::PositiveNumber)->capture_default_str();
  act->add_flag("--force", a->force, "activate also on busy nodes (running jobs, containers, GPU use unknown)");
  act->add_option("--on", a->nodes, "nodes or groups (NODE,GROUP,...)")->required()->delimiter(',');
  AddConnectOptions(*act, a->copts);
  auto* rb = sub.add_subcommand("rollback", "swap the previous root back");
  rb->add_option("nodes", a->nodes, "nodes or groups")->required();
  AddConnectOptions(*rb, a->copts);
  auto* pr = sub.add_subcommand("prune", "delete old images; never one a root (running, aside for rollback) was made from");
  pr->add_option("nodes", a->nodes, "nodes or groups (default: all)");
  pr->add_option("--keep", a->keep, "how many of the newest images to keep")->check(CLI::PositiveNumber)->capture_default_str();
  pr->add_flag("--dry-run", a->dry_run, "only say what would be deleted");
  AddConnectOptions(*pr, a->copts);
  auto Dispatch = [=](CommandContext& ctx) -> int {
    try {
      if (pr->parsed()) return Prune(ctx, *a);
      if (cap->parsed()) return Capture(ctx, *a);
      if (ship->parsed()) return Ship(ctx, *a);
      if (list->parsed()) return List(ctx, *a);
      if (exp->parsed()) return Export(ctx, *a);
      if (imp->parsed()) return Import(ctx, *a);
      if (act->parsed()) return Swap(ctx, *a, true);
      if (rb->parsed()) return Swap(ctx, *a, false);
    } catch (const std::exception& e) {
      ctx.reporter.error(e.what());
      return kExitNodesFailed;
    }
    return kExitUsage;
  };
  return [=](CommandContext& ctx) -> int {
    StopSignals signals;
    a->stop = signals.flag();
    // Transfers and reads stop on an interrupt; a root swap on a node never does (see Args::stop).
    const bool swap = act->parsed() || rb->parsed();
    if (!swap) a->copts.cancel = signals.flag();
    int rc = Dispatch(ctx);
    if (signals.stopped()) {
      ctx.reporter.doc()["interrupted"] = signals.name();
      ctx.reporter.error("interrupted by " + signals.name() + ": " +
                         (swap ? "nodes not started are untouched; each started node finished its root swap (see above)"
                               : "stopped; nodes that did not finish keep nothing of it (no half image, no partial "
                                 "file); run the same command again to finish"));
      return signals.exit_code();
    }
    return rc;
  };
});

}  // namespace
}  // namespace labfleet
