// `images:` (issue 12, docs/images.md): where a node's root images live. A node setting (lab.defaults, groups,
// nodes) read by `labfleet image ...`; it manages no resources, so plan and apply never touch images.
//
//   images:
//     root: /                          # mount point of the root subvolume that `image capture` snapshots
//     snapshot_dir: /.labfleet-images  # on the same btrfs filesystem; images and their manifests
//     preserve: [/etc/netplan]         # carried from the running root into an activated one (besides identity)
#include "engine/image.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/settings_layers.h"

namespace labfleet {
namespace {

class ImagesSettingsModule : public Module {
 public:
  std::string name() const override { return "images"; }
  int order() const override { return 2; }
  std::vector<std::string> settings_keys() const override { return {"images", "root"}; }
  nlohmann::json settings_schema(const std::string& key) const override {
    using namespace schema;
    if (key == "root")
      return Closed({"readonly_btrfs"}, {{"readonly_btrfs", Scalar("true: the root subvolume is read-only; apply makes it writable around its changes")}},
                    "the root filesystem");
    return Closed({std::begin(kImageKeys), std::end(kImageKeys)},
                  {{"root", Scalar("mount point of the root subvolume to capture")},
                   {"snapshot_dir", Scalar("directory of images on the root's btrfs filesystem")},
                   {"preserve", Strings("paths carried into an activated root")}},
                  "root images (labfleet image)");
  }
  void validate(const Inventory& inv, Findings& f) const override {
    ForEachSettingsLayer(inv, [&](const Value& layer) {
      if (!layer.is_map()) return;
      if (const Value* v = layer.find("images"); v && !v->is_null()) ParseImageSettings(v, &f);
      if (const Value* v = layer.find("root"); v && !v->is_null()) ParseReadonlyRoot(v, &f);
    });
  }
  // root.readonly_btrfs: one resource, so that plan says what apply will do around its changes.
  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::string path = ReadonlyRootOf(ctx.settings);
    if (path.empty()) return {};
    Resource r;
    r.module = name();
    r.id = "read-only root " + path;
    r.data = std::make_shared<const std::string>(path);
    return {r};
  }
  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override { return {}; }
  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults&) const override {
    return Noop("the root " + r.as<std::string>() +
                " is a read-only btrfs subvolume (root.readonly_btrfs): apply makes it writable for its changes and "
                "read-only again afterwards, also when a change fails or the apply is interrupted");
  }
};

const ModuleRegistrar kImagesModule(std::make_unique<ImagesSettingsModule>());

}  // namespace
}  // namespace labfleet
