// The dashboard's one page: served by the binary itself (no CDN: lab networks are often offline). Every value
// from a node goes into the DOM through textContent, never innerHTML.
#include "modules/facts/dashboard.h"

namespace labfleet {

namespace {
const char* kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>labfleet: GPUs</title>
<style>
:root { --free:#1a7f37; --used:#9a6700; --down:#cf222e; --fg:#1f2328; --muted:#656d76; --card:#f6f8fa; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: var(--fg); background: #fff; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #d0d7de; padding: 10px 16px;
         display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
#free { font-size: 22px; font-weight: 700; color: var(--free); }
#stamp, .muted { color: var(--muted); }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 12px; padding: 12px 16px; }
.node { background: var(--card); border: 1px solid #d0d7de; border-radius: 8px; padding: 10px; }
.node.down { border-color: var(--down); }
.node h2 { font-size: 16px; margin: 0 0 4px; display: flex; justify-content: space-between; }
.badge { font-size: 12px; border-radius: 10px; padding: 1px 8px; color: #fff; background: var(--muted); }
.badge.down { background: var(--down); } .badge.reboot { background: var(--used); }
.meta { font-size: 12px; color: var(--muted); margin-bottom: 6px; }
.gpus { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 6px; }
.gpu { border-radius: 6px; padding: 6px; background: #fff; border-left: 6px solid var(--free); font-size: 12px; }
.gpu.used { border-left-color: var(--used); }
.gpu b { font-size: 13px; }
.bar { height: 4px; background: #d0d7de; border-radius: 2px; margin: 3px 0; }
.bar > div { height: 4px; background: var(--used); border-radius: 2px; }
</style></head>
<body>
<header>
  <span id="free">…</span>
  <label>group <select id="group"><option value="">all</option></select></label>
  <span id="stamp"></span>
</header>
<main id="nodes"></main>
<script>
"use strict";
const INTERVAL = __INTERVAL__ * 1000;
let latest = null;
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function dur(s) {
  if (s === null || s === undefined || s < 0) return "";
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
function gib(kib) { return kib === null || kib === undefined ? "?" : (kib / 1048576).toFixed(1) + " GiB"; }
function ago(t, now) { return t ? dur(now - t) + " ago" : "never"; }
function render() {
  if (!latest) return;
  const d = latest, g = document.getElementById("group").value;
  const sel = document.getElementById("group");
  const groups = new Set();
  d.nodes.forEach(n => n.groups.forEach(x => groups.add(x)));
  groups.forEach(x => { if (![...sel.options].some(o => o.value === x)) sel.appendChild(new Option(x, x)); });
  const shown = d.nodes.filter(n => !g || n.groups.includes(g));
  let free = 0, total = 0;
  shown.forEach(n => { free += n.gpus.free; total += n.gpus.total; });
  document.getElementById("free").textContent = free + " of " + total + " GPUs free";
  document.getElementById("free").dataset.free = free;
  document.getElementById("stamp").textContent =
    d.summary.reachable + "/" + d.summary.nodes + " nodes up · updated " + new Date(d.generated * 1000).toLocaleTimeString();
  const main = document.getElementById("nodes");
  main.replaceChildren();
  for (const n of shown) {
    const f = n.facts || {};
    const card = el("section", "node" + (n.reachable ? "" : " down"));
    card.dataset.node = n.node;
    const h = el("h2", "", n.node);
    if (!n.reachable) h.appendChild(el("span", "badge down", n.polled ? "unreachable" : "waiting"));
    else if (f.reboot_required) h.appendChild(el("span", "badge reboot", "reboot pending"));
    card.appendChild(h);
    if (!n.reachable) {
      card.appendChild(el("div", "meta", "last answered " + ago(n.last_ok, d.generated) + (f.error ? " · " + f.error : "")));
      main.appendChild(card);
      continue;
    }
    const st = f.labfleet_state || {};
    const load = f.load ? f.load.load1.toFixed(2) : "?";
    const root = f.root_fs && f.root_fs.avail_kib !== undefined ? gib(f.root_fs.avail_kib) : "?";
    card.appendChild(el("div", "meta",
      "load " + load + " · mem free " + gib(f.memory ? f.memory.available_kib : null) + " · / free " + root +
      (st.commit ? " · applied " + String(st.commit).slice(0, 10) : " · never applied")));
    if (f.busy && f.busy.state && f.busy.state !== "idle")
      card.appendChild(el("div", "meta", f.busy.state === "busy"
        ? "busy: " + [[(f.busy.gpu_jobs || []).length, "GPU job"], [(f.busy.containers || []).length, "container"],
                      [(f.busy.cpu_jobs || []).length, "CPU job"]].filter(x => x[0]).map(x => x[0] + " " + x[1] + (x[0] > 1 ? "s" : "")).join(", ")
            + (f.busy.command_output ? " busy.command: " + f.busy.command_output : "")
        : "busy state unknown: " + (f.busy.unknown || []).join("; ")));
    const grid = el("div", "gpus");
    const devs = (f.gpus && f.gpus.devices) || [];
    for (const t of (n.gpu_tiles || [])) {
      const dev = devs.find(x => x.index === t.index) || {};
      const tile = el("div", "gpu" + (t.free ? " free" : " used"));
      tile.dataset.gpu = t.index;
      tile.appendChild(el("b", "", "GPU " + t.index + (t.free ? " · free" : "")));
      tile.appendChild(el("div", "muted", dev.name || ""));
      if (dev.memory_total_mib) {
        const bar = el("div", "bar"), fill = el("div");
        fill.style.width = Math.min(100, 100 * (dev.memory_used_mib || 0) / dev.memory_total_mib) + "%";
        bar.appendChild(fill);
        tile.appendChild(bar);
        tile.appendChild(el("div", "", Math.round((dev.memory_used_mib || 0) / 1024) + "/" +
          Math.round(dev.memory_total_mib / 1024) + " GiB · " + (dev.utilization_pct ?? "?") + "%" +
          (dev.temperature_c !== null && dev.temperature_c !== undefined ? " · " + dev.temperature_c + "°C" : "")));
      }
      for (const p of t.processes)
        tile.appendChild(el("div", "user", (p.user || "?") + " · " + p.process + (p.elapsed_s ? " · " + dur(p.elapsed_s) : "")));
      grid.appendChild(tile);
    }
    if (!devs.length) grid.appendChild(el("div", "muted", f.gpus && f.gpus.nvidia_smi_error ? "nvidia-smi: " + f.gpus.nvidia_smi_error : "no NVIDIA GPU seen"));
    card.appendChild(grid);
    main.appendChild(card);
  }
}
async function poll() {
  try {
    const r = await fetch("api/facts", { cache: "no-store" });
    if (r.ok) { latest = await r.json(); render(); }
  } catch (e) {
    document.getElementById("stamp").textContent = "dashboard not answering: " + e;
  }
}
document.getElementById("group").addEventListener("change", render);
poll();
setInterval(poll, Math.max(2000, INTERVAL / 2));
</script>
</body></html>
)HTML";
}  // namespace

std::string DashboardPage(int interval_s) {
  std::string page = kPage;
  const std::string mark = "__INTERVAL__";
  page.replace(page.find(mark), mark.size(), std::to_string(interval_s));
  return page;
}

}  // namespace labfleet
