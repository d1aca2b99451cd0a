// ssh_keys: ~user/.ssh/authorized_keys managed exclusively (exactly the inventory's keys), ~/.ssh 0700 and
// the file 0600, both owned by the user. Only for users whose inventory entry has `ssh_keys:`, and never for
// `accounts: directory` users (their keys live in the directory).
#include "modules/facts/accounts_probe.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {
namespace {

class SshKeysModule : public Module {
 public:
  std::string name() const override { return "ssh_keys"; }
  int order() const override { return 30; }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    for (const UserDef* u : UsersOnNode(ctx)) {
      if (u->remove || !u->raw.find("ssh_keys")) continue;
      // A directory user's keys are sshPublicKey values in the directory (lab.directory.ssh_keys), served to
      // sshd by sss_ssh_authorizedkeys on clients (modules/directory_client.cc), never a file on the nodes.
      if (u->accounts == "directory") continue;
      out.push_back({name(), "ssh_keys:" + u->name, u->where, std::shared_ptr<const UserDef>(u, [](const UserDef*) {})});
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) {
      const auto& u = r.as<UserDef>();
      out.push_back(FileProbe(HomeOf(u) + "/.ssh"));
      out.push_back(FileProbe(HomeOf(u) + "/.ssh/authorized_keys"));
    }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const auto& u = r.as<UserDef>();
    const std::string dir = HomeOf(u) + "/.ssh";
    const std::string group = PrimaryGroupOf(u);
    std::string content;
    for (const auto& k : u.ssh_keys) content += k + "\n";
    FileSpec want{dir + "/authorized_keys", content, 0600, u.name, group};
    DiffResult d = DiffFile(want, ParseFileProbe(results, want.path),
                            "authorized_keys of " + u.name + " (" + Counted(u.ssh_keys.size(), "key", "keys") + ")");
    FileState ds = ParseFileProbe(results, dir);
    if (!d.warnings.empty()) return d;  // a directory above is a link or another user's: refused, said why
    // ~/.ssh itself: never followed when it is a link; fixed as its user, who can only change what it owns.
    std::string refuse;
    if (ds.exists && ds.regular) refuse = dir + " is a file, not a directory";
    else if (ds.exists && ds.mode == 0 && ds.owner.empty()) refuse = dir + " could not be read";
    else if (ds.exists && !ds.unsafe_dirs.empty() && ds.owner != u.name)
      refuse = dir + " belongs to " + ds.owner + ", and labfleet does not chown inside a user's home (chown it to " +
               u.name + " by hand)";
    if (!refuse.empty()) {
      d.changes.clear();
      d.warnings.push_back("refused: authorized_keys of " + u.name + ": " + refuse);
      d.noop = "nothing done to authorized_keys of " + u.name + ": refused, " + refuse;
      return d;
    }
    if (!ds.exists || ds.mode != 0700 || ds.owner != u.name || ds.group != group) {
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = ds.exists ? '~' : '+';
      c.summary = "directory " + dir + " (0700 " + u.name + ":" + group + ")";
      c.reason = ds.exists ? "mode or owner differs" : "absent";
      c.command = Cmd("lf_mkdir").arg(dir).arg("0700").arg(u.name).arg(group).str();
      d.changes.insert(d.changes.begin(), std::move(c));
    }
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<SshKeysModule>());

}  // namespace
}  // namespace labfleet
