// Root images (issue 12): the model of a btrfs snapshot image and the pure parsers of what nodes say about their
// subvolumes. No I/O here: engine/cmd_image.cc runs the commands, engine/image_ship.h moves the bytes.
//
// An image is a read-only btrfs snapshot NAME in a node's snapshot directory (images.snapshot_dir, default
// /.labfleet-images) with a manifest NAME.manifest.json next to it. Its identity across nodes is the uuid of the
// snapshot on the node where it was captured: a received copy carries it as its "Received UUID".
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/finding.h"
#include "engine/value.h"

namespace labfleet {

// One subvolume as `btrfs subvolume show PATH` (or `btrfs subvolume list -a -u -q -R -g`) prints it.
// Uuids are "" when btrfs prints "-".
struct Subvolume {
  std::string name;  // the last path component (show's "Name:", list's path basename)
  std::string path;  // show: its first line (path relative to the filesystem's top level); list: "path"
  std::string uuid, parent_uuid, received_uuid;
  long long id = 0;
  long long generation = 0;
  long long top_level = 0;
  bool readonly = false;
  std::string created;  // "2026-12-05 16:27:08 +0000"
  // The image identity: the received uuid when it was received, else its own uuid.
  const std::string& origin_uuid() const { return received_uuid.empty() ? uuid : received_uuid; }
};

// `btrfs subvolume show` of one subvolume. Lines it does not understand are skipped (and noted in `skipped`);
// nullopt when no UUID line was found.
std::optional<Subvolume> ParseSubvolumeShow(std::string_view text, std::vector<std::string>* skipped = nullptr);

// Several `show` outputs, each preceded by a line "@@sv NAME" (the probe of a snapshot directory, see
// HeldImagesProbe): the subvolumes found; an entry whose show output does not parse is skipped (and noted).
std::vector<Subvolume> ParseHeldImages(std::string_view text, std::vector<std::string>* skipped = nullptr);

// `btrfs subvolume list -a -u -q -R -g MOUNT`: one subvolume per line ("ID 257 gen 7 top level 5 parent_uuid ...
// received_uuid ... uuid ... path P"); a line that is not one is skipped (and noted).
std::vector<Subvolume> ParseSubvolumeList(std::string_view text, std::vector<std::string>* skipped = nullptr);

// ListAllSubvolumesProbe's output.
std::vector<Subvolume> ParseAllSubvolumes(std::string_view text, std::vector<std::string>* skipped = nullptr);

// The manifest written next to an image at capture (NAME.manifest.json) and read back from nodes (bounded, checked:
// node text is untrusted).
struct ImageManifest {
  std::string name;
  std::string source_node;
  std::string uuid;         // the captured snapshot's uuid (= received uuid of every copy)
  std::string parent;       // the image captured before it on the same root, "" for the first
  std::string parent_uuid;  // its uuid
  long long generation = 0;
  std::string time;         // UTC, ISO 8601
  nlohmann::json ToJson() const;
  // nullopt (and *why) when `text` is not a manifest (not JSON, wrong types, a bad name or uuid).
  static std::optional<ImageManifest> FromJson(std::string_view text, std::string* why = nullptr);
};

// Image names become path components on nodes: [A-Za-z0-9][A-Za-z0-9._-]{0,99}, and not ending in ".manifest.json"
// or ".part". "" when valid, else why not.
std::string ImageNameProblem(std::string_view name);
// 8-4-4-4-12 lowercase hex.
bool IsUuid(std::string_view s);

// The parent for an incremental send of `image` (a subvolume on the source) to a target holding `target`:
// among the source's read-only subvolumes other than `image` whose image identity (origin_uuid) the target holds
// as a read-only subvolume (its received uuid or its own uuid), the newest (highest generation on the source).
// nullopt: no shared image, send it whole. A target already holding `image` itself gets nullopt too: check
// TargetHolds first.
std::optional<Subvolume> PickParent(const Subvolume& image, const std::vector<Subvolume>& source,
                                    const std::vector<Subvolume>& target);
// Whether the target holds `image` complete (a read-only subvolume with its identity).
bool TargetHolds(const Subvolume& image, const std::vector<Subvolume>& target);

// `image prune --keep K`: which of the images a node holds (`held`, from HeldImagesProbe) to delete. Kept: the
// K newest (by generation), and every image that a writable subvolume anywhere on the filesystem was made from
// (`all`, from `btrfs subvolume list -a -u -q -R -g`: the running root, a root renamed aside for rollback, a
// new root waiting for its reboot); the reason is recorded. Never deletes anything when keep < 1.
struct PruneDecision {
  std::vector<std::string> remove;
  std::vector<std::pair<std::string, std::string>> keep;  // name, why
};
PruneDecision PlanPrune(const std::vector<Subvolume>& held, const std::vector<Subvolume>& all, int keep);

// Settings of the `images:` key (modules/images.cc validates them; commands read them through this).
struct ImageSettings {
  std::string root = "/";                        // the mount point of the root subvolume to capture
  std::string snapshot_dir = "/.labfleet-images";  // on the same btrfs filesystem as root
  std::vector<std::string> preserve;             // extra paths carried into a new root at activation
};
inline constexpr const char* kImageKeys[] = {"root", "snapshot_dir", "preserve"};
// Reads (and with `f`, validates) one node's effective `images:` value; null = defaults.
ImageSettings ParseImageSettings(const Value* v, Findings* f);
// `root: { readonly_btrfs: true }`: the root subvolume is kept read-only and apply flips it writable around its
// changes (engine/executor.cc). Validates `root` (a map of readonly_btrfs: bool) with `f`.
bool ParseReadonlyRoot(const Value* root, Findings* f);
// The path apply flips for a node (its images.root, default /), or "" when root.readonly_btrfs is not set.
std::string ReadonlyRootOf(const Value& node_settings);

// ---- Node-side scripts (pure builders; every value enters as a quoted shell assignment, see engine/shell.h).
// Each checks that the snapshot directory is a real directory (never a symlink) before it writes below it.

// Lists the images a node holds: per entry of snapshot_dir that is a directory, "@@sv NAME" then its
// `btrfs subvolume show` (bounded); ParseHeldImages reads it. Exit 0 also when the directory does not exist.
std::string HeldImagesProbe(const ImageSettings& s);
// A read-only snapshot of s.root as snapshot_dir/NAME, then its `btrfs subvolume show` (ParseSubvolumeShow).
// Refuses (exit 3) an existing NAME and a root that is not a btrfs subvolume.
std::string CaptureScript(const ImageSettings& s, const std::string& name);
// Writes `manifest_json` as snapshot_dir/NAME.manifest.json (temp file + rename, 0644).
std::string WriteManifestScript(const ImageSettings& s, const std::string& name, const std::string& manifest_json);
// Prints snapshot_dir/NAME.manifest.json (at most 64 KiB).
std::string ReadManifestScript(const ImageSettings& s, const std::string& name);
// `btrfs send [-p snapshot_dir/PARENT] snapshot_dir/NAME | zstd -T0`: the compressed stream on stdout; exits
// non-zero when send failed (its status travels on a side descriptor: sh has no pipefail).
std::string SendScript(const ImageSettings& s, const std::string& name, const std::string& parent);
// Receives the compressed stream on stdin into snapshot_dir/NAME (btrfs cannot move a read-only received
// subvolume to another directory, so it lands in place), with the marker directory snapshot_dir/.pending-NAME
// from before the receive until FinalizeScript: a marked image is not held (HeldImagesProbe skips it) and the
// next transfer of NAME deletes it first. The compressed bytes are hashed as they come (sha256sum on a tee'd
// fifo). Prints "sha256 HEX" on success; on any failure (cut stream, corrupt frame, disk full) the subvolume
// it received is deleted and it exits 1. Refuses (exit 3) when NAME exists.
std::string ReceiveScript(const ImageSettings& s, const std::string& name, const std::string& tag);
// Keeps the received snapshot only when the hash the node computed equals `sha256` (what labfleet saw pass):
// writes the manifest and removes the marker; otherwise deletes the snapshot (exit 4).
std::string FinalizeScript(const ImageSettings& s, const std::string& tag, const std::string& name,
                           const std::string& sha256, const std::string& manifest_json);
// Deletes what a failed transfer of NAME left (only while its marker exists).
std::string AbortReceiveScript(const ImageSettings& s, const std::string& name, const std::string& tag);
// --store NODE:PATH: the compressed stream kept as a file PATH/NAME.zst (+ .sha256, .manifest.json, as `image
// export` writes them) on a storage node. Store receive: into PATH/.NAME.zst.TAG.part, prints "sha256 HEX";
// store finalize: keeps it only when that hash equals `sha256`; abort: removes the part file. PATH must exist
// and not be a symlink.
std::string StoreReceiveScript(const std::string& path, const std::string& name, const std::string& tag);
std::string StoreFinalizeScript(const std::string& path, const std::string& name, const std::string& tag,
                                const std::string& sha256, const std::string& manifest_json);
std::string StoreAbortScript(const std::string& path, const std::string& name, const std::string& tag);

// Deletes snapshot_dir/NAME (a read-only subvolume) and its manifest.
std::string DeleteImageScript(const ImageSettings& s, const std::string& name);
// `btrfs subvolume list -a -u -q -R -g` of the filesystem holding s.snapshot_dir, a line "@@readonly", and the
// same list with -r (the read-only ones): ParseAllSubvolumes reads it (readonly set from the second list).
std::string ListAllSubvolumesProbe(const ImageSettings& s);

// The rename-swap (docs/images.md "Activation"): reads how s.root is mounted (must be a btrfs subvolume mounted
// by subvol=; a root mounted by subvolid= in fstab or /proc/cmdline is refused with the reason), mounts the top
// level (subvolid=5) under /run, snapshots the image writable next to the running root subvolume, copies the
// node's identity (hostname, machine-id, ssh host keys, s.preserve) from the running root into it, moves the
// snapshot directory into it, renames the running root SUB to SUB.prev-STAMP and the new one to SUB. Prints
// "root SUB", "prev SUB.prev-STAMP" and the new root's `btrfs subvolume show`.
std::string ActivateScript(const ImageSettings& s, const std::string& name, const std::string& stamp);
// Swaps back to the newest SUB.prev-*: SUB becomes SUB.rolledback-STAMP, the snapshot directory moves back.
// Prints "root SUB" and "restored SUB.prev-...".
std::string RollbackScript(const ImageSettings& s, const std::string& stamp);

}  // namespace labfleet
