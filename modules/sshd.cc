// sshd: the inventory's `sshd:` map as a drop-in (/etc/ssh/sshd_config.d/50-labfleet.conf by default,
// `sshd_dropin:` to rename). The new file is checked with `sshd -t` on the node before anything reads it
// (a failing check puts the old file back), sshd is reloaded once, and the executor then opens a FRESH
// connection: if labfleet cannot log in any more, the previous drop-in is restored and sshd reloaded again
// (Change::reconnect_check), so a bad setting never locks the admin out.
//
//   sshd: { ClientAliveInterval: 30, PasswordAuthentication: "no", AllowGroups: [root, gpu-users] }
//
// `Port`, when set, must include the port labfleet connects to (ssh.port): labfleet follows a Port change.
// The run that moves the port connects on ssh.fallback_ports (the old port) when the new one does not answer
// yet, and its fresh-connection check goes to the new ssh.port, trusting the host key verified on the old.
//
// A client of lab.directory (modules/directory_client.h) gets `AuthorizedKeysCommand
// /usr/bin/sss_ssh_authorizedkeys` and `AuthorizedKeysCommandUser nobody` in the same drop-in (with or without
// an `sshd:` map), under the same sshd -t check and lockout guard; the inventory may not set those two itself
// there (validate: sshd-keyword).
#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "modules/directory_client.h"

namespace labfleet {
namespace {

constexpr const char* kDefaultDropin = "/etc/ssh/sshd_config.d/50-labfleet.conf";

// Reload without systemd too (sandbox nodes, containers): SIGHUP to the listener from its pid file, never
// to session processes.
constexpr const char* kReload =
    "if [ -d /run/systemd/system ]; then systemctl reload ssh 2>/dev/null || systemctl reload sshd; "
    "elif [ -s /run/sshd.pid ]; then kill -HUP \"$(cat /run/sshd.pid)\"; "
    "else echo 'cannot reload sshd: no systemd and no /run/sshd.pid' >&2; exit 1; fi";

// Keywords of sshd_config(5) (OpenSSH 9.x), for typo checks.
const std::vector<std::string> kKeywords = {
    "AcceptEnv", "AddressFamily", "AllowAgentForwarding", "AllowGroups", "AllowStreamLocalForwarding",
    "AllowTcpForwarding", "AllowUsers", "AuthenticationMethods", "AuthorizedKeysCommand",
    "AuthorizedKeysCommandUser", "AuthorizedKeysFile", "AuthorizedPrincipalsCommand",
    "AuthorizedPrincipalsCommandUser", "AuthorizedPrincipalsFile", "Banner", "CASignatureAlgorithms",
    "ChannelTimeout", "ChrootDirectory", "Ciphers", "ClientAliveCountMax", "ClientAliveInterval", "Compression",
    "DenyGroups", "DenyUsers", "DisableForwarding", "ExposeAuthInfo", "FingerprintHash", "ForceCommand",
    "GSSAPIAuthentication", "GSSAPICleanupCredentials", "GatewayPorts", "HostCertificate", "HostKey",
    "HostKeyAlgorithms", "HostbasedAcceptedAlgorithms", "HostbasedAuthentication", "IgnoreRhosts",
    "IgnoreUserKnownHosts", "Include", "IPQoS", "KbdInteractiveAuthentication", "KerberosAuthentication",
    "KexAlgorithms", "ListenAddress", "LoginGraceTime", "LogLevel", "MACs", "Match", "MaxAuthTries",
    "MaxSessions", "MaxStartups", "ModuliFile", "PasswordAuthentication", "PermitEmptyPasswords",
    "PermitListen", "PermitOpen", "PermitRootLogin", "PermitTTY", "PermitTunnel", "PermitUserEnvironment",
    "PermitUserRC", "PerSourceMaxStartups", "PerSourceNetBlockSize", "PidFile", "Port", "PrintLastLog",
    "PrintMotd", "PubkeyAcceptedAlgorithms", "PubkeyAuthentication", "PubkeyAuthOptions", "RekeyLimit",
    "RequiredRSASize", "RevokedKeys", "SecurityKeyProvider", "SetEnv", "StreamLocalBindMask",
    "StreamLocalBindUnlink", "StrictModes", "Subsystem", "SyslogFacility", "TCPKeepAlive", "TrustedUserCAKeys",
    "UnusedConnectionTimeout", "UseDNS", "UsePAM", "VersionAddendum", "X11DisplayOffset", "X11Forwarding",
    "X11UseLocalhost", "XAuthLocation", "ChallengeResponseAuthentication"};
// Keywords that may appear several times: a list becomes several lines, not one space-separated line.
const std::set<std::string> kRepeatable = {"Port", "ListenAddress", "HostKey", "AcceptEnv", "HostCertificate",
                                           "Subsystem", "SetEnv"};

// Keywords whose value is several words (lists, commands, "limit time" pairs); every other keyword takes one.
const std::set<std::string> kMultiWord = {
    "AcceptEnv", "AllowGroups", "AllowUsers", "AuthenticationMethods", "AuthorizedKeysCommand",
    "AuthorizedKeysFile", "AuthorizedPrincipalsCommand", "ChannelTimeout", "DenyGroups", "DenyUsers",
    "ForceCommand", "IPQoS", "ListenAddress", "PermitListen", "PermitOpen", "PerSourcePenalties",
    "PerSourcePenaltyExemptList", "RekeyLimit", "SetEnv", "Subsystem", "VersionAddendum", "PubkeyAuthOptions",
    "LogVerbosity", "PerSourceMaxStartups", "MaxStartups"};

struct SshdWant {
  std::string path;
  std::string content;
};

std::string Render(const Value& map) {
  std::string out = "# Managed by labfleet from the inventory; edits here are overwritten.\n";
  for (const auto& e : map.entries()) {
    std::vector<std::string> values;
    if (e.value.is_seq())
      for (const auto& i : e.value.items()) values.push_back(i.str());
    else
      values.push_back(e.value.str());
    if (kRepeatable.count(e.key)) {
      for (const auto& v : values) out += e.key + " " + v + "\n";
    } else {
      std::string joined;
      for (size_t i = 0; i < values.size(); ++i) joined += (i ? " " : "") + values[i];
      out += e.key + " " + joined + "\n";
    }
  }
  return out;
}

// `sshd -t` on the new drop-in before it is moved into place: in a private mount namespace, a copy of its
// directory holding the new version is bind-mounted over the real one, so only that sshd -t sees it. A node
// where unshare(1) cannot make a mount namespace (an unprivileged container) skips this; the check after the
// move, before any reload, still guards it.
std::string Precheck(const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash), base = path.substr(slash + 1);
  Script s;
  s.raw("if command -v unshare >/dev/null 2>&1 && unshare -m true 2>/dev/null; then");
  s.raw("lf_d=$(mktemp -d /run/labfleet-sshd.XXXXXX)");
  s.add(Cmd("cp").arg("-a").arg(dir + "/.").raw("\"$lf_d\"/"));
  s.raw("cp -p \"$LF_NEW\" \"$lf_d\"/" + ShellQuote(base));
  s.add(Cmd("unshare").arg("-m").arg("--propagation").arg("private").arg("sh").arg("-c")
            .arg("mount --bind \"$1\" \"$2\" && sshd -t").arg("sh").raw("\"$lf_d\"").arg(dir));
  s.raw("lf_rc=$?; rm -rf \"$lf_d\"; [ \"$lf_rc\" = 0 ]");
  s.raw("fi");
  return s.str();
}

class SshdModule : public Module {
 public:
  std::string name() const override { return "sshd"; }
  int order() const override { return 70; }
  std::vector<std::string> settings_keys() const override { return {"sshd", "sshd_dropin"}; }
  nlohmann::json settings_schema(const std::string& key) const override {
    using namespace schema;
    if (key == "sshd_dropin") return Scalar("the drop-in's file name");
    nlohmann::json props = nlohmann::json::object();
    for (const auto& k : kKeywords) props[k] = OneOf({Scalar(), Strings()});
    return Closed(kKeywords, props, "sshd_config(5) directives for labfleet's drop-in");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    auto check_map = [&](const Value* v) {
      if (!v) return;
      if (!v->is_map()) {
        f.error(v->loc(), "sshd-type", "sshd must be a map of sshd_config keywords, like { ClientAliveInterval: 30 }");
        return;
      }
      for (const auto& e : v->entries()) {
        if (std::find(kKeywords.begin(), kKeywords.end(), e.key) == kKeywords.end()) {
          auto s = Suggest(e.key, kKeywords);
          f.error(e.key_loc, "sshd-keyword",
                  "'" + e.key + "' is not an sshd_config keyword" + (s ? "; did you mean '" + *s + "'?" : ""));
        }
        if (e.key == "Match" || e.key == "Include")
          f.error(e.key_loc, "sshd-keyword", e.key + " blocks are not supported in the sshd map; use a files: entry for a custom drop-in");
        // Each value becomes (part of) one line "Keyword value": no control character (a newline would add a
        // directive), no '#'; keywords that take one word get one word (a blank or a quote would add arguments).
        auto bad = [&](const Value& s) {
          if (!s.is_scalar() || s.str().empty() || s.str().find('#') != std::string::npos) {
            f.error(s.loc(), "sshd-value", "the value of " + e.key + " must be a non-empty single line without '#'");
            return;
          }
          if (Report(f, s.loc(), "the value of " + e.key + " " + Quoted(s.str()), CheckNoControl(s.str()))) return;
          if (!kMultiWord.count(e.key) && s.str().find_first_of(" \"") != std::string::npos)
            f.error(s.loc(), "sshd-value",
                    "the value of " + e.key + " " + Quoted(s.str()) +
                        " must be one word (no blank or quote); sshd would read the rest as more arguments");
        };
        if (e.value.is_seq())
          for (const auto& i : e.value.items()) bad(i);
        else
          bad(e.value);
      }
    };
    const Value* defaults = inv.lab.find("defaults");
    check_map(defaults ? defaults->find("sshd") : nullptr);
    auto check_dropin = [&](const Value* v) {
      if (!v || !v->is_scalar()) return;
      PathResult pr = NormalizeAbsolutePath(v->str());
      if (Report(f, v->loc(), "sshd_dropin " + Quoted(v->str()), pr.error)) return;
      if (pr.path.rfind("/etc/ssh/sshd_config.d/", 0) != 0 || pr.path.size() < 29 ||
          pr.path.compare(pr.path.size() - 5, 5, ".conf") != 0)
        f.error(v->loc(), "sshd-dropin",
                "sshd_dropin " + Quoted(v->str()) + " must be a file /etc/ssh/sshd_config.d/NAME.conf (the directory "
                "sshd_config includes)");
    };
    check_dropin(defaults ? defaults->find("sshd_dropin") : nullptr);
    for (const auto& g : inv.groups) check_dropin(g.raw.find("sshd_dropin"));
    for (const auto& n : inv.nodes) check_dropin(n.raw.find("sshd_dropin"));
    for (const auto& g : inv.groups) check_map(g.raw.find("sshd"));
    for (const auto& n : inv.nodes) check_map(n.raw.find("sshd"));
    // A directory client's drop-in carries the AuthorizedKeysCommand of SSSD: the map may not set another.
    for (const auto& n : inv.nodes) {
      Value s = inv.settings(n);
      const Value* sshd = s.find("sshd");
      if (!sshd || !sshd->is_map() || !DirectoryClientOf(inv, n, s)) continue;
      for (const char* k : {"AuthorizedKeysCommand", "AuthorizedKeysCommandUser"})
        if (const Value* x = sshd->find(k))
          f.error(x->loc(), "sshd-keyword",
                  std::string(k) + " is set by labfleet on directory clients like node '" + n.name +
                      "' (sss_ssh_authorizedkeys, keys from the directory); remove it from the sshd map");
    }
    // The port labfleet connects to must be one sshd listens on.
    for (const auto& n : inv.nodes) {
      Value s = inv.settings(n);
      const Value* sshd = s.find("sshd");
      const Value* port = sshd ? sshd->find("Port") : nullptr;
      if (!port) continue;
      std::vector<std::string> ports;
      if (port->is_seq())
        for (const auto& p : port->items()) ports.push_back(p.str());
      else
        ports.push_back(port->str());
      std::string want = std::to_string(inv.ssh(n).port);
      if (std::find(ports.begin(), ports.end(), want) == ports.end())
        f.error(port->loc(), "sshd-port",
                "sshd Port of node '" + n.name + "' does not include " + want + ", the ssh.port labfleet connects to; "
                "set ssh.port to the new port too, so labfleet follows it (and ssh.fallback_ports to the old port for "
                "the run that moves it)");
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("sshd");
    const bool client = DirectoryClientOf(ctx.inv, ctx.node, ctx.settings).has_value();
    if ((!v || !v->is_map()) && !client) return {};
    const Value* p = ctx.settings.find("sshd_dropin");
    PathResult pr = NormalizeAbsolutePath(p && p->is_scalar() ? p->str() : kDefaultDropin);
    if (pr.error) return {};
    return {{pr.path, "sshd:"}};
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("sshd");
    const bool map = v && v->is_map();
    const bool client = DirectoryClientOf(ctx.inv, ctx.node, ctx.settings).has_value();
    if (!map && !client) return {};
    const Value* p = ctx.settings.find("sshd_dropin");
    std::string path = p && p->is_scalar() ? p->str() : kDefaultDropin;
    std::string content = Render(map ? *v : Value::Map());
    if (client) content += DirectoryClientSshdLines();
    Location where = map ? v->loc() : ctx.inv.lab.find("directory")->loc();
    return {{name(), "sshd:" + path, where, std::make_shared<SshdWant>(SshdWant{path, content})}};
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) out.push_back(FileProbe(r.as<SshdWant>().path));
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const auto& w = r.as<SshdWant>();
    FileSpec want{w.path, w.content, 0644, "root", "root"};
    DiffResult d = DiffFile(want, ParseFileProbe(results, w.path), "sshd drop-in " + w.path);
    if (d.changes.empty()) return d;
    for (auto& c : d.changes) {
      if (c.kind == Change::Kind::PutFile) {
        c.precheck = Precheck(w.path);
        c.verify = "sshd -t";  // once more in place (and where the node cannot run the precheck)
      }
      c.reconnect_check = true;
      c.rollback = kReload;
    }
    Change reload = NotifyChange("reload sshd", kReload, "reload sshd", "its drop-in changed");
    reload.reconnect_check = true;
    reload.rollback = kReload;
    d.changes.push_back(std::move(reload));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<SshdModule>());

}  // namespace
}  // namespace labfleet
