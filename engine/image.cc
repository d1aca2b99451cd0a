#include "engine/image.h"

#include <algorithm>
#include <cctype>

#include "engine/inventory.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string ImageNameProblem(std::string_view n) {
  if (n.empty()) return "an image name cannot be empty";
  if (n.size() > 100) return "an image name has at most 100 characters";
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  };
  if (!std::isalnum(static_cast<unsigned char>(n[0])) || !ok(n[0]))
    return "an image name starts with a letter or digit";
  for (char c : n)
    if (!ok(c)) return "an image name holds only letters, digits, '.', '_' and '-'";
  auto ends = [&](std::string_view suf) { return n.size() >= suf.size() && n.substr(n.size() - suf.size()) == suf; };
  if (ends(".manifest.json") || ends(".part")) return "an image name cannot end in .manifest.json or .part";
  return "";
}

namespace {

std::string UuidOrEmpty(std::string_view v) {
  std::string s(TrimView(v));
  return IsUuid(s) ? s : "";
}

std::string Basename(std::string_view p) {
  size_t s = p.rfind('/');
  return std::string(s == std::string_view::npos ? p : p.substr(s + 1));
}

}  // namespace

std::optional<Subvolume> ParseSubvolumeShow(std::string_view text, std::vector<std::string>* skipped) {
  Subvolume sv;
  bool first = true, have_uuid = false, in_snapshots = false;
  for (std::string_view raw : LineViews(text)) {
    if (raw.empty()) continue;
    if (first && raw[0] != '\t' && raw[0] != ' ') {  // the path line
      sv.path = std::string(TrimView(raw));
      first = false;
      continue;
    }
    first = false;
    std::string_view line = TrimView(raw);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      if (in_snapshots) continue;  // the list of snapshots of this one
      if (skipped) skipped->emplace_back(raw);
      continue;
    }
    std::string key(TrimView(line.substr(0, colon)));
    std::string_view val = TrimView(line.substr(colon + 1));
    in_snapshots = false;
    auto num = [&](long long& into) {
      if (auto v = ParseInteger(val)) into = *v;
      else if (skipped) skipped->emplace_back(raw);
    };
    if (key == "Name") sv.name = std::string(val);
    else if (key == "UUID") {
      sv.uuid = UuidOrEmpty(val);
      have_uuid = !sv.uuid.empty();
    } else if (key == "Parent UUID") sv.parent_uuid = UuidOrEmpty(val);
    else if (key == "Received UUID") sv.received_uuid = UuidOrEmpty(val);
    else if (key == "Creation time") sv.created = std::string(val);
    else if (key == "Subvolume ID") num(sv.id);
    else if (key == "Generation") num(sv.generation);
    else if (key == "Top level ID") num(sv.top_level);
    else if (key == "Flags") sv.readonly = val.find("readonly") != std::string_view::npos;
    else if (key == "Snapshot(s)") in_snapshots = true;
    else if (key == "Gen at creation" || key == "Parent ID" || key == "Send transid" || key == "Send time" ||
             key == "Receive transid" || key == "Receive time" || key == "Quota group" || key == "Limit referenced" ||
             key == "Limit exclusive" || key == "Usage referenced" || key == "Usage exclusive") {
    } else if (skipped) {
      skipped->emplace_back(raw);
    }
  }
  if (!have_uuid) return std::nullopt;
  if (sv.name.empty()) sv.name = Basename(sv.path);
  return sv;
}

std::vector<Subvolume> ParseHeldImages(std::string_view text, std::vector<std::string>* skipped) {
  std::vector<Subvolume> out;
  std::string name;
  std::string body;
  bool open = false;
  auto flush = [&] {
    if (!open) return;
    if (auto sv = ParseSubvolumeShow(body, skipped)) {
      sv->name = name;  // the directory entry's name is what labfleet calls the image
      out.push_back(std::move(*sv));
    } else if (skipped) {
      skipped->push_back("@@sv " + name + ": not a subvolume");
    }
    body.clear();
  };
  for (std::string_view line : LineViews(text)) {
    if (line.substr(0, 5) == "@@sv ") {
      flush();
      name = std::string(line.substr(5));
      open = ImageNameProblem(name).empty();
      if (!open && skipped) skipped->emplace_back(line);
      continue;
    }
    if (open) body.append(line).push_back('\n');
    else if (skipped && !line.empty()) skipped->emplace_back(line);
  }
  flush();
  return out;
}

std::vector<Subvolume> ParseSubvolumeList(std::string_view text, std::vector<std::string>* skipped) {
  std::vector<Subvolume> out;
  for (std::string_view line : LineViews(text)) {
    if (TrimView(line).empty()) continue;
    // "ID 257 gen 7 top level 5 parent_uuid U received_uuid U uuid U path P" (the path may hold blanks: the rest)
    size_t at = line.find(" path ");
    std::vector<std::string> w = SplitWords(line.substr(0, at == std::string_view::npos ? 0 : at), " \t");
    bool ok = at != std::string_view::npos && w.size() == 13 && w[0] == "ID" && w[2] == "gen" && w[4] == "top" &&
              w[5] == "level" && w[7] == "parent_uuid" && w[9] == "received_uuid" && w[11] == "uuid";
    Subvolume sv;
    if (ok) {
      auto id = ParseInteger(w[1]), gen = ParseInteger(w[3]), top = ParseInteger(w[6]);
      sv.uuid = UuidOrEmpty(w[12]);
      ok = id && gen && top && !sv.uuid.empty();
      if (ok) {
        sv.id = *id;
        sv.generation = *gen;
        sv.top_level = *top;
        sv.parent_uuid = UuidOrEmpty(w[8]);
        sv.received_uuid = UuidOrEmpty(w[10]);
        sv.path = std::string(line.substr(at + 6));
        sv.name = Basename(sv.path);
      }
    }
    if (ok) out.push_back(std::move(sv));
    else if (skipped) skipped->emplace_back(line);
  }
  return out;
}

nlohmann::json ImageManifest::ToJson() const {
  return {{"version", 1},          {"name", name},     {"source_node", source_node}, {"uuid", uuid},
          {"parent", parent},      {"parent_uuid", parent_uuid}, {"generation", generation}, {"time", time}};
}

std::optional<ImageManifest> ImageManifest::FromJson(std::string_view text, std::string* why) {
  auto fail = [&](std::string w) -> std::optional<ImageManifest> {
    if (why) *why = std::move(w);
    return std::nullopt;
  };
  if (text.size() > 65536) return fail("larger than 64 KiB");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return fail("not a JSON object");
  auto str = [&](const char* k, std::string& into) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_string()) return false;
    into = it->get<std::string>();
    return true;
  };
  ImageManifest m;
  if (!j.contains("version") || j["version"] != 1) return fail("no \"version\": 1");
  if (!str("name", m.name) || !ImageNameProblem(m.name).empty()) return fail("\"name\" is not an image name");
  if (!str("uuid", m.uuid) || !IsUuid(m.uuid)) return fail("\"uuid\" is not a uuid");
  if (!str("source_node", m.source_node) || !str("time", m.time)) return fail("\"source_node\" or \"time\" missing");
  if (!str("parent", m.parent) || (!m.parent.empty() && !ImageNameProblem(m.parent).empty()))
    return fail("\"parent\" is not an image name");
  if (!str("parent_uuid", m.parent_uuid) || (!m.parent_uuid.empty() && !IsUuid(m.parent_uuid)))
    return fail("\"parent_uuid\" is not a uuid");
  if (!j.contains("generation") || !j["generation"].is_number_integer()) return fail("\"generation\" is not a number");
  m.generation = j["generation"].get<long long>();
  if (CheckNoControl(m.source_node) || CheckNoControl(m.time)) return fail("control characters");
  return m;
}

bool TargetHolds(const Subvolume& image, const std::vector<Subvolume>& target) {
  return std::any_of(target.begin(), target.end(), [&](const Subvolume& t) {
    return t.readonly && t.origin_uuid() == image.origin_uuid();
  });
}

std::optional<Subvolume> PickParent(const Subvolume& image, const std::vector<Subvolume>& source,
                                    const std::vector<Subvolume>& target) {
  std::optional<Subvolume> best;
  for (const Subvolume& s : source) {
    if (!s.readonly || s.origin_uuid() == image.origin_uuid()) continue;
    if (!TargetHolds(s, target)) continue;
    if (!best || s.generation > best->generation) best = s;
  }
  return best;
}

std::vector<Subvolume> ParseAllSubvolumes(std::string_view text, std::vector<std::string>* skipped) {
  size_t at = text.find("\n@@readonly\n");
  std::string_view all = at == std::string_view::npos ? text : text.substr(0, at + 1);
  std::vector<Subvolume> out = ParseSubvolumeList(all, skipped);
  if (at == std::string_view::npos) return out;
  std::vector<Subvolume> ro = ParseSubvolumeList(text.substr(at + 12), skipped);
  for (auto& sv : out)
    for (const auto& r : ro)
      if (r.uuid == sv.uuid) sv.readonly = true;
  return out;
}

PruneDecision PlanPrune(const std::vector<Subvolume>& held, const std::vector<Subvolume>& all, int keep) {
  PruneDecision d;
  std::vector<const Subvolume*> imgs;
  for (const auto& h : held)
    if (h.readonly) imgs.push_back(&h);
  std::sort(imgs.begin(), imgs.end(), [](const Subvolume* a, const Subvolume* b) { return a->generation > b->generation; });
  for (size_t i = 0; i < imgs.size(); ++i) {
    const Subvolume& im = *imgs[i];
    std::string why;
    if (keep < 1) why = "--keep is less than 1";
    else if (int(i) < keep) why = "one of the " + std::to_string(keep) + " newest";
    for (const auto& sv : all)
      if (!im.uuid.empty() && sv.parent_uuid == im.uuid && sv.uuid != im.uuid && !sv.readonly && why.empty())
        why = "the root subvolume " + sv.path + " was made from it";
    if (why.empty()) d.remove.push_back(im.name);
    else d.keep.emplace_back(im.name, why);
  }
  return d;
}

bool ParseReadonlyRoot(const Value* v, Findings* f) {
  if (!v || v->is_null()) return false;
  Findings scratch;
  MapReader r(*v, "root", v->loc(), f ? *f : scratch, {"readonly_btrfs"});
  return r.boolean("readonly_btrfs").value_or(false);
}

std::string ReadonlyRootOf(const Value& settings) {
  if (!settings.is_map() || !ParseReadonlyRoot(settings.find("root"), nullptr)) return "";
  return ParseImageSettings(settings.find("images"), nullptr).root;
}

ImageSettings ParseImageSettings(const Value* v, Findings* f) {
  ImageSettings s;
  if (!v || v->is_null()) return s;
  Findings scratch;
  Findings& fs = f ? *f : scratch;
  MapReader r(*v, "images", v->loc(), fs, {std::begin(kImageKeys), std::end(kImageKeys)});
  auto path = [&](const char* key, std::string& into) {
    auto p = r.str(key);
    if (!p) return;
    PathResult pr = NormalizeAbsolutePath(*p);
    if (pr.error) {
      fs.error(r.get(key)->loc(), "invalid-value",
               std::string("images.") + key + " must be an absolute path without '..' or control characters: " +
                   pr.error->what);
      return;
    }
    into = pr.path;
  };
  path("root", s.root);
  path("snapshot_dir", s.snapshot_dir);
  if (s.snapshot_dir == "/" || s.snapshot_dir == s.root)
    fs.error(r.where(), "invalid-value", "images.snapshot_dir must be a directory of its own, not / or the root itself");
  if (auto pres = r.strings("preserve")) {
    for (size_t i = 0; i < pres->size(); ++i) {
      PathResult pr = NormalizeAbsolutePath((*pres)[i]);
      if (pr.error || pr.path == "/") {
        fs.error(r.get("preserve")->loc(), "invalid-value",
                 "images.preserve: '" + (*pres)[i] + "' must be an absolute path below / without '..'");
        continue;
      }
      s.preserve.push_back(pr.path);
    }
  }
  return s;
}

}  // namespace labfleet

// ---- Node-side scripts
namespace labfleet {

namespace {

std::string Assign(const char* var, const std::string& value) { return std::string(var) + "=" + ShellQuote(value); }

// The snapshot directory: exists as a real directory (created 0700 when absent), never through a symlink.
// Root writes below $d: refused unless $d and every directory above it that exists are root's alone (no
// user can swap a component), checked before anything is created (what mkdir -p adds is root's).
const std::string kSnapDirCheck =
    std::string(kRootOnlyShellFunction) +
    "if [ -L \"$d\" ]; then echo \"labfleet: $d is a symlink; refusing to use it\" >&2; exit 3; fi\n"
    "lf_rootonly \"$d\" || { echo \"labfleet: a user can change ${LF_WHY}at or above $d (images.snapshot_dir); "
    "labfleet never writes as root through a path a user controls\" >&2; exit 3; }\n"
    "[ -d \"$d\" ] || { mkdir -p \"${d%/*}/\" && { btrfs subvolume create \"$d\" >/dev/null 2>&1 || mkdir \"$d\"; } && "
    "chmod 0700 \"$d\"; } || exit 3\n";

}  // namespace

std::string HeldImagesProbe(const ImageSettings& s) {
  return Assign("d", s.snapshot_dir) +
         "\n[ -d \"$d\" ] && [ ! -L \"$d\" ] || exit 0\n"
         "n=0\n"
         "for p in \"$d\"/*; do\n"
         "  [ -d \"$p\" ] && [ ! -L \"$p\" ] || continue\n"
         "  [ -e \"$d/.pending-${p##*/}\" ] && continue\n"
         "  n=$((n+1)); [ $n -le 500 ] || break\n"
         "  echo \"@@sv ${p##*/}\"\n"
         "  btrfs subvolume show \"$p\" 2>/dev/null | head -c 8192\n"
         "done\n";
}

std::string CaptureScript(const ImageSettings& s, const std::string& name) {
  return Assign("r", s.root) + "\n" + Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" + kSnapDirCheck +
         "[ \"$(stat -f -c %T \"$r\" 2>/dev/null)\" = btrfs ] || { echo \"labfleet: $r is not on btrfs\" >&2; exit 3; }\n"
         "btrfs subvolume show \"$r\" >/dev/null 2>&1 || { echo \"labfleet: $r is not a btrfs subvolume (images.root)\" >&2; exit 3; }\n"
         "if [ -e \"$d/$n\" ] || [ -L \"$d/$n\" ]; then echo \"labfleet: an image $n already exists in $d\" >&2; exit 3; fi\n"
         "btrfs subvolume snapshot -r \"$r\" \"$d/$n\" >/dev/null || exit 1\n"
         "btrfs subvolume show \"$d/$n\" | head -c 8192\n";
}

std::string WriteManifestScript(const ImageSettings& s, const std::string& name, const std::string& manifest_json) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" + Assign("m", manifest_json) + "\n" +
         kSnapDirCheck +
         "t=$(mktemp \"$d/.manifest.XXXXXX\") || exit 1\n"
         "printf '%s\\n' \"$m\" > \"$t\" && chmod 0644 \"$t\" && mv -f \"$t\" \"$d/$n.manifest.json\" || { rm -f \"$t\"; exit 1; }\n";
}

std::string ReadManifestScript(const ImageSettings& s, const std::string& name) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" +
         "f=\"$d/$n.manifest.json\"\n"
         "[ -L \"$d\" ] || [ -L \"$f\" ] && { echo \"labfleet: symlink refused\" >&2; exit 3; }\n"
         "head -c 65536 \"$f\"\n";
}

std::string SendScript(const ImageSettings& s, const std::string& name, const std::string& parent) {
  std::string p = parent.empty() ? "" : Assign("p", parent);
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" + (p.empty() ? "p=" : p) + "\n" +
         "[ -L \"$d\" ] && { echo \"labfleet: $d is a symlink\" >&2; exit 3; }\n"
         "exec 3>&1\n"
         "st=$( { { if [ -n \"$p\" ]; then btrfs send -q -p \"$d/$p\" \"$d/$n\"; else btrfs send -q \"$d/$n\"; fi; "
         "echo $? >&4; } | zstd -T0 -q -c >&3; } 4>&1 )\n"
         "z=$?\n"
         "[ \"$st\" = 0 ] || { echo \"labfleet: btrfs send failed (exit $st)\" >&2; exit 1; }\n"
         "[ $z = 0 ] || { echo \"labfleet: zstd failed (exit $z)\" >&2; exit 1; }\n";
}

namespace {
// $d, $n, $tag set. The marker directory .pending-NAME exists from before `btrfs receive` starts until the node
// verified the hash: an image with a marker is not held (HeldImagesProbe skips it) and is deleted by the next
// transfer of that name. lf_drop deletes the received subvolume and every file of this transfer.
const char* kPending =
    "pm=\"$d/.pending-$n\"; tf=\"/run/labfleet-recv-$tag/s\"\n"
    "lf_drop() { if [ -d \"$pm\" ] && [ -d \"$d/$n\" ] && [ ! -L \"$d/$n\" ]; then btrfs subvolume delete \"$d/$n\" >/dev/null 2>&1; fi; "
    "rm -f \"$tf.fifo\" \"$tf.sum\" \"$tf.err\"; rmdir \"${tf%/s}\" \"$pm\" 2>/dev/null; }\n";
}  // namespace

std::string ReceiveScript(const ImageSettings& s, const std::string& name, const std::string& tag) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" + Assign("tag", tag) + "\n" + kSnapDirCheck +
         kPending +
         // a transfer of this name that died before its hash was checked: its leftovers go first
         "[ -d \"$pm\" ] && [ ! -L \"$pm\" ] && lf_drop\n"
         "if [ -e \"$d/$n\" ] || [ -L \"$d/$n\" ]; then echo \"labfleet: $d/$n exists already\" >&2; exit 3; fi\n"
         "mkdir -m 0700 \"$pm\" || exit 1\n"
         "trap 'lf_drop; exit 1' TERM INT HUP\n"
         // the transfer's own files (fifo, hash, errors) on tmpfs: a full disk cannot hide a failure
         "mkdir -m 0700 \"${tf%/s}\" || { lf_drop; exit 1; }\n"
         "mkfifo -m 0600 \"$tf.fifo\" || { lf_drop; exit 1; }\n"
         "sha256sum < \"$tf.fifo\" > \"$tf.sum\" & hp=$!\n"
         "{ tee \"$tf.fifo\" || echo tee >> \"$tf.err\"; } | { zstd -d -q -c || echo zstd >> \"$tf.err\"; } | "
         "{ btrfs receive -q \"$d\" 2>&1 || echo receive >> \"$tf.err\"; } | head -c 4096 >&2\n"
         "wait $hp\n"
         "ok=1; [ -s \"$tf.err\" ] && ok=0\n"
         "[ $ok = 1 ] && [ \"$(btrfs property get -ts \"$d/$n\" ro 2>/dev/null)\" = ro=true ] || ok=0\n"
         // cleanup first: when labfleet is gone, stderr is too, and the message would end the script (SIGPIPE)
         "if [ $ok != 1 ]; then why=$(cat \"$tf.err\" 2>/dev/null | tr '\\n' ' '); lf_drop; "
         "echo \"labfleet: receive failed ($why); nothing kept\" >&2; exit 1; fi\n"
         "echo \"sha256 $(cut -c1-64 \"$tf.sum\")\"\n";
}

std::string FinalizeScript(const ImageSettings& s, const std::string& tag, const std::string& name,
                           const std::string& sha256, const std::string& manifest_json) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("tag", tag) + "\n" + Assign("n", name) + "\n" +
         Assign("h", sha256) + "\n" + Assign("m", manifest_json) + "\n" + kSnapDirCheck + kPending +
         "[ -d \"$pm\" ] || { echo \"labfleet: no transfer of $n pending in $d\" >&2; exit 3; }\n"
         "got=$(cut -c1-64 \"$tf.sum\" 2>/dev/null)\n"
         "if [ \"$got\" != \"$h\" ]; then lf_drop; echo \"labfleet: SHA-256 mismatch: received $got, sent $h; deleted\" >&2; "
         "exit 4; fi\n"
         "t=$(mktemp \"$d/.manifest.XXXXXX\") && printf '%s\\n' \"$m\" > \"$t\" && chmod 0644 \"$t\" && "
         "mv -f \"$t\" \"$d/$n.manifest.json\" || { rm -f \"$t\"; lf_drop; exit 1; }\n"
         "rm -f \"$tf.fifo\" \"$tf.sum\" \"$tf.err\"; rmdir \"${tf%/s}\" \"$pm\"\n"
         "btrfs subvolume show \"$d/$n\" | head -c 8192\n";
}

std::string AbortReceiveScript(const ImageSettings& s, const std::string& name, const std::string& tag) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" + Assign("tag", tag) + "\n" + kPending +
         "[ -L \"$d\" ] || lf_drop\nexit 0\n";
}

namespace {
std::string StoreVars(const std::string& path, const std::string& name, const std::string& tag) {
  return Assign("p", path) + "\n" + Assign("n", name) + "\n" + Assign("tag", tag) + "\n" +
         "[ -d \"$p\" ] && [ ! -L \"$p\" ] || { echo \"labfleet: $p is not a directory (--store)\" >&2; exit 3; }\n"
         "t=\"$p/.$n.zst.$tag.part\"\n";
}
}  // namespace

std::string DeleteImageScript(const ImageSettings& s, const std::string& name) {
  return Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" +
         "[ -L \"$d\" ] && { echo \"labfleet: $d is a symlink\" >&2; exit 3; }\n"
         "[ -d \"$d/$n\" ] && [ ! -L \"$d/$n\" ] || exit 0\n"
         "btrfs subvolume delete \"$d/$n\" >/dev/null && rm -f \"$d/$n.manifest.json\"\n";
}

std::string ListAllSubvolumesProbe(const ImageSettings& s) {
  return Assign("d", s.snapshot_dir) + "\nbtrfs subvolume list -a -u -q -R -g \"$d\" | head -c 1000000 || exit 1\n"
         "echo @@readonly\nbtrfs subvolume list -a -u -q -R -g -r \"$d\" | head -c 1000000\n";
}

std::string StoreReceiveScript(const std::string& path, const std::string& name, const std::string& tag) {
  return StoreVars(path, name, tag) +
         "umask 077\n"
         "cat > \"$t\" || { rm -f \"$t\"; exit 1; }\n"
         "echo \"sha256 $(sha256sum < \"$t\" | cut -c1-64)\"\n";
}

std::string StoreFinalizeScript(const std::string& path, const std::string& name, const std::string& tag,
                                const std::string& sha256, const std::string& manifest_json) {
  return StoreVars(path, name, tag) + Assign("h", sha256) + "\n" + Assign("m", manifest_json) + "\n" +
         "got=$(sha256sum < \"$t\" | cut -c1-64)\n"
         "[ \"$got\" = \"$h\" ] || { rm -f \"$t\"; echo \"labfleet: SHA-256 mismatch: stored $got, sent $h; deleted\" >&2; exit 4; }\n"
         "chmod 0644 \"$t\" && printf '%s  %s\\n' \"$h\" \"$n.zst\" > \"$t.sha256\" && printf '%s\\n' \"$m\" > \"$t.manifest\" && "
         "chmod 0644 \"$t.sha256\" \"$t.manifest\" && mv -f \"$t.sha256\" \"$p/$n.zst.sha256\" && "
         "mv -f \"$t.manifest\" \"$p/$n.zst.manifest.json\" && mv -f \"$t\" \"$p/$n.zst\" || "
         "{ rm -f \"$t\" \"$t.sha256\" \"$t.manifest\"; exit 1; }\n";
}

std::string StoreAbortScript(const std::string& path, const std::string& name, const std::string& tag) {
  return StoreVars(path, name, tag) + "rm -f \"$t\"\n";
}

namespace {
// Shared by activate and rollback: $r (root mount point), $d (snapshot dir), $stamp. Sets $top (the top level,
// mounted privately under /run and unmounted on exit), $sub (the root subvolume's path below the top level),
// $rel (the snapshot dir below the root, "" when it is elsewhere).
const char* kTopLevel =
    "line=$(findmnt -n -r -o FSTYPE,SOURCE,OPTIONS --mountpoint \"$r\" | head -n 1)\n"
    "set -- $line\n"
    "[ \"$1\" = btrfs ] || { echo \"labfleet: $r is not a btrfs mount point (images.root)\" >&2; exit 3; }\n"
    "dev=${2%%[*}; opts=$3; sub=\n"
    "case \",$opts,\" in *,subvol=*) sub=${opts#*subvol=}; sub=${sub%%,*};; esac\n"
    "sub=${sub#/}\n"
    "[ -n \"$sub\" ] || { echo \"labfleet: $r is the filesystem's top level, not a subvolume mounted by subvol=; the rename-swap needs one (see docs/images.md)\" >&2; exit 3; }\n"
    "case \"$sub\" in *[!A-Za-z0-9@._/-]*) echo \"labfleet: unusual root subvolume name $sub\" >&2; exit 3;; esac\n"
    "if [ \"$r\" = / ]; then\n"
    "  if grep -Eq '^[^#]*[[:space:]]/[[:space:]]+btrfs[[:space:]].*subvolid=' /etc/fstab 2>/dev/null; then\n"
    "    echo \"labfleet: /etc/fstab mounts / by subvolid=; after a rename-swap it would boot the old root. Change it to subvol=/$sub first\" >&2; exit 3; fi\n"
    "  if grep -q 'rootflags=[^ ]*subvolid=' /proc/cmdline; then\n"
    "    echo \"labfleet: the kernel command line mounts / by subvolid= (rootflags); change it to subvol=$sub first\" >&2; exit 3; fi\n"
    "  if ! grep -Eq '^[^#]*[[:space:]]/[[:space:]]+btrfs[[:space:]].*subvol=' /etc/fstab 2>/dev/null && ! grep -q 'rootflags=[^ ]*subvol=' /proc/cmdline; then\n"
    "    echo \"labfleet: neither /etc/fstab nor the kernel command line names the root subvolume (subvol=$sub): the node boots the default subvolume (btrfs subvolume set-default); set subvol=$sub in fstab and rootflags first\" >&2; exit 3; fi\n"
    "fi\n"
    "rel=\n"
    "case \"$d/\" in \"${r%/}\"/*) rel=${d#\"${r%/}\"/};; esac\n"
    "top=$(mktemp -d /run/labfleet-top.XXXXXX) || exit 1\n"
    "trap 'umount \"$top\" 2>/dev/null; rmdir \"$top\" 2>/dev/null' EXIT\n"
    "mount -o subvolid=5 \"$dev\" \"$top\" || { echo \"labfleet: cannot mount the top level of $dev\" >&2; exit 1; }\n"
    "mount --make-private \"$top\" 2>/dev/null\n"
    "[ -d \"$top/$sub\" ] && [ ! -L \"$top/$sub\" ] || { echo \"labfleet: $sub not found at the top level of $dev\" >&2; exit 3; }\n";
}  // namespace

std::string ActivateScript(const ImageSettings& s, const std::string& name, const std::string& stamp) {
  std::string pres;
  for (const auto& p : s.preserve) pres += " " + ShellQuote(p);
  return Assign("r", s.root) + "\n" + Assign("d", s.snapshot_dir) + "\n" + Assign("n", name) + "\n" +
         Assign("stamp", stamp) + "\n" + "set -- /etc/hostname /etc/machine-id /etc/ssh/KEYS /etc/network/interfaces "
         "/etc/netplan /etc/systemd/network" + pres + "\npreserve=$(for x in \"$@\"; do printf '%s\\n' \"$x\"; done)\n" +
         "[ -L \"$d\" ] && { echo \"labfleet: $d is a symlink\" >&2; exit 3; }\n"
         "[ -d \"$d/$n\" ] && [ \"$(btrfs property get -ts \"$d/$n\" ro 2>/dev/null)\" = ro=true ] || "
         "{ echo \"labfleet: no complete image $n in $d\" >&2; exit 3; }\n" +
         kTopLevel +
         "case \"$sub\" in *.prev-*) echo \"labfleet: the running root is already $sub (activated, not rebooted yet): reboot or roll back first\" >&2; exit 3;; esac\n"
         "new=\"$top/$sub.new-$stamp\"; prev=\"$top/$sub.prev-$stamp\"\n"
         "[ ! -e \"$new\" ] && [ ! -e \"$prev\" ] || { echo \"labfleet: $sub.new-$stamp or $sub.prev-$stamp exists\" >&2; exit 3; }\n"
         "btrfs subvolume snapshot \"$d/$n\" \"$new\" >/dev/null || exit 1\n"
         "fail() { echo \"labfleet: $1; the running root is untouched\" >&2; btrfs subvolume delete \"$new\" >/dev/null 2>&1; exit 1; }\n"
         // identity: from the running root (through the top level, so nothing of the running mount tree is followed)
         "lf_copy() { src=\"$top/$sub$1\"; dst=\"$new$1\"; [ -e \"$src\" ] || [ -L \"$src\" ] || return 0; "
         "pd=${dst%/*}; { [ -d \"$pd\" ] && [ ! -L \"$pd\" ]; } || mkdir -p \"$pd\" || return 1; "
         "rm -rf \"$dst\" && cp -a \"$src\" \"$dst\"; }\n"
         "printf '%s\\n' \"$preserve\" | while IFS= read -r p; do\n"
         "  [ -n \"$p\" ] || continue\n"
         "  if [ \"$p\" = /etc/ssh/KEYS ]; then\n"
         "    for k in \"$top/$sub\"/etc/ssh/ssh_host_*; do [ -e \"$k\" ] && { lf_copy \"/etc/ssh/${k##*/}\" || exit 1; }; done\n"
         "  else lf_copy \"$p\" || exit 1; fi\n"
         "done || fail \"cannot carry the node's identity into the new root\"\n"
         // The images move with the root only when the snapshot directory is a subvolume of its own (a subvolume
         // is renamed across subvolumes; anything else would make mv copy): else they stay in the previous root.
         "moved=0\n"
         "if [ -n \"$rel\" ] && [ -d \"$top/$sub/$rel\" ] && [ ! -L \"$top/$sub/$rel\" ]; then\n"
         "  if [ \"$(stat -c %i \"$top/$sub/$rel\")\" = 256 ]; then\n"
         // the image holds the golden node's snapshot directory as a placeholder (an empty directory)
         "    if [ -e \"$new/$rel\" ] || [ -L \"$new/$rel\" ]; then rm -rf -- \"$new/$rel\" 2>/dev/null; "
         "[ ! -e \"$new/$rel\" ] || fail \"cannot clear $rel in the new root\"; fi\n"
         "    mkdir -p \"$(dirname \"$new/$rel\")\" && mv -T \"$top/$sub/$rel\" \"$new/$rel\" || fail \"cannot move $rel into the new root\"\n"
         "    moved=1\n"
         "  else echo \"note $rel is not a subvolume: the images stay in $sub.prev-$stamp/$rel\"; fi\n"
         "fi\n"
         "mv -T \"$top/$sub\" \"$prev\" || { [ $moved = 1 ] && mv -T \"$new/$rel\" \"$top/$sub/$rel\"; fail \"cannot rename $sub aside\"; }\n"
         "mv -T \"$new\" \"$top/$sub\" || { mv -T \"$prev\" \"$top/$sub\"; exit 1; }\n"
         "sync\n"
         "echo \"root $sub\"; echo \"prev $sub.prev-$stamp\"\n"
         "btrfs subvolume show \"$top/$sub\" | head -c 8192\n";
}

std::string RollbackScript(const ImageSettings& s, const std::string& stamp) {
  return Assign("r", s.root) + "\n" + Assign("d", s.snapshot_dir) + "\n" + Assign("stamp", stamp) + "\n" + kTopLevel +
         "sub=${sub%%.prev-*}\n"
         "base=${sub##*/}; dir=${sub%\"$base\"}\n"
         "last=; for p in \"$top/$dir$base\".prev-*; do [ -d \"$p\" ] && [ ! -L \"$p\" ] && last=$p; done\n"
         "[ -n \"$last\" ] || { echo \"labfleet: no $sub.prev-* to roll back to\" >&2; exit 3; }\n"
         "aside=\"$top/$sub.rolledback-$stamp\"\n"
         "mv -T \"$top/$sub\" \"$aside\" || exit 1\n"
         "mv -T \"$last\" \"$top/$sub\" || { mv -T \"$aside\" \"$top/$sub\"; exit 1; }\n"
         "if [ -n \"$rel\" ] && [ -d \"$aside/$rel\" ] && [ ! -L \"$aside/$rel\" ] && [ \"$(stat -c %i \"$aside/$rel\")\" = 256 ]; then\n"
         "  if [ -e \"$top/$sub/$rel\" ]; then rmdir \"$top/$sub/$rel\" 2>/dev/null || echo \"note the images stay in ${aside##*/}/$rel\"; fi\n"
         "  [ -e \"$top/$sub/$rel\" ] || mv -T \"$aside/$rel\" \"$top/$sub/$rel\"\n"
         "fi\n"
         "sync\n"
         "echo \"root $sub\"; echo \"restored ${last##*/}\"\n";
}

}  // namespace labfleet
