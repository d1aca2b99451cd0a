// docker: the Docker daemon's configuration (daemon.json: data-root, default-address-pools, bip, runtimes,
// proxy, registry certificates). This file holds, in order: the typed settings and their parser, the offline
// checks, and the Module with its apply side (daemon.json, proxy drop-in, registry certificates).
//
// Settings (node-level key `docker`, mergeable from lab.defaults and groups):
//   data_root: /local/.docker                          absolute path
//   address_pools: [{ base: 172.28.0.0/16, size: 24 }]    networks for user-defined bridges (private space)
//   bip: 172.29.0.1/24                                 address/prefix of the default bridge docker0
//   default_runtime: nvidia
//   proxy: { http: URL, https: URL, no_proxy: [names] }
//   registry_certs: { registry.host: path/to/ca.crt }  key: host or host:port; path relative to the inventory
//   registry_mirrors: [URL], insecure_registries: [host], dns: [IP], log_driver, log_opts: {k: v},
//   mtu: int, live_restore: bool, storage_driver
//   extra: { any-daemon-json-key: value }           written as is; a key labfleet types is refused here
//   remove_networks: [old-net]                      Docker networks to remove, each only while no container uses it
// Networks (on a node with docker settings): one probe reads `docker network inspect` of every network (at most
// 512, 4 MiB, parsed as untrusted JSON); a network whose subnet overlaps lab.reserved_networks is a plan warning
// naming network, subnet and reserved network; a network of remove_networks is removed with `docker network rm`
// when it exists and has no container attached, else the plan says "refused: ..." and names the containers.
// The nvidia runtime ("runtimes": {"nvidia": ...}) is registered when the node's nvidia.container_toolkit is
// true (the nvidia module installs the toolkit first) or default_runtime is nvidia; on a node with the toolkit
// and no `docker:` settings, only that key is added to the node's own daemon.json.
// Leftovers: on every node, the proxy drop-in (when its first line is labfleet's) and the registry certificates
// listed in /var/lib/labfleet/docker-registry-certs go when the inventory no longer gives them (docs/modules.md).
// Docker group membership is not a docker setting: the group is a `user_groups: docker: { system: true }`
// entry and users list it in `groups:` (the users module keeps membership exact for inventory users).
#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>

#include "modules/facts/accounts.h"
#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/cidr.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/node_vars.h"
#include "modules/facts/docker_networks.h"
#include "modules/docker_lab.h"
#include "modules/facts/nvidia_facts.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "engine/textdiff.h"
#include <nlohmann/json.hpp>

namespace labfleet {

struct DockerPool {
  std::string text;  // as written
  Cidr base;
  int size = 0;
  Location where;  // the pool item
};

struct DockerSettings {
  Location where;  // the `docker` value
  std::string data_root;
  std::vector<DockerPool> address_pools;
  bool has_address_pools = false;  // written (possibly empty)
  std::optional<Cidr> bip;
  std::string bip_text;
  Location bip_where;
  std::string default_runtime;
  std::string http_proxy, https_proxy;
  std::vector<std::string> no_proxy;
  std::vector<std::pair<std::string, std::string>> registry_certs;  // registry host -> file (inventory-relative)
  std::vector<Location> registry_cert_where;
  std::vector<std::string> registry_mirrors, insecure_registries, dns;
  std::string log_driver;
  std::map<std::string, std::string> log_opts;
  std::optional<long long> mtu;
  std::optional<bool> live_restore;
  std::string storage_driver;
  std::vector<std::string> remove_networks;  // Docker network names
  nlohmann::json extra = nlohmann::json::object();  // free daemon.json keys
  // Docker's own name for address_pools (default-address-pools) was written instead: "did you mean" says so,
  // and the "pools left to Docker's defaults" warning would only repeat it.
  bool pools_under_docker_name = false;
};

namespace {

const std::vector<std::string> kDockerKeys = {
    "data_root",        "address_pools",       "bip", "default_runtime", "proxy",      "registry_certs",
    "registry_mirrors", "insecure_registries", "dns", "log_driver",      "log_opts",   "mtu",
    "live_restore",     "storage_driver",      "extra", "remove_networks"};

// daemon.json keys the typed settings write; `extra:` may not set them.
const std::map<std::string, std::string> kTypedJsonKeys = {
    {"data-root", "data_root"},         {"default-address-pools", "address_pools"},
    {"bip", "bip"},                     {"default-runtime", "default_runtime"},
    {"runtimes", "default_runtime / nvidia.container_toolkit"},
    {"registry-mirrors", "registry_mirrors"}, {"insecure-registries", "insecure_registries"},
    {"dns", "dns"},                     {"log-driver", "log_driver"},
    {"log-opts", "log_opts"},           {"mtu", "mtu"},
    {"live-restore", "live_restore"},   {"storage-driver", "storage_driver"}};

// A registry as Docker names it in an image reference and in certs.d: a host name or IPv4 address (labels of
// letters, digits and inner hyphens, joined by dots), optionally :PORT (1-65535). Nothing else may become the
// directory /etc/docker/certs.d/REGISTRY/ (no '/', no "..", no blanks).
bool RegistryName(const std::string& r) {
  size_t colon = r.find(':');
  std::string host = r.substr(0, colon);
  if (colon != std::string::npos) {
    std::string port = r.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port[0] == '0') return false;
    for (char c : port)
      if (!std::isdigit((unsigned char)c)) return false;
    if (std::stoi(port) > 65535) return false;
  }
  return IsHostName(host);
}

}  // namespace

// Parses a `docker:` value (one layer or the merged settings). Findings go to `f` when given; invalid parts
// are left out of the result.
DockerSettings ParseDocker(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  DockerSettings d;
  d.where = v.loc();
  // Docker's own daemon.json names (data-root, default-address-pools, log-opts, ...), and the same with '_':
  // "did you mean" the typed setting, instead of a bare unknown key.
  std::vector<std::string> allowed = kDockerKeys;
  if (v.is_map()) {
    for (const auto& e : v.entries()) {
      if (std::find(kDockerKeys.begin(), kDockerKeys.end(), e.key) != kDockerKeys.end()) continue;
      std::string dashed = e.key;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      auto typed = kTypedJsonKeys.find(dashed);
      if (typed == kTypedJsonKeys.end()) {
        if (e.key.find('-') == std::string::npos || Suggest(e.key, kDockerKeys)) continue;  // MapReader reports it
        out.error(e.key_loc, "unknown-key",
                  "unknown key '" + e.key + "' in docker settings; a daemon.json key that labfleet has no setting "
                  "for goes under `extra:` (e.g. `extra: { " + e.key + ": ... }`), written as is");
      } else {
        out.error(e.key_loc, "unknown-key",
                  "unknown key '" + e.key + "' in docker settings: that is Docker's name in daemon.json; did you "
                  "mean '" + typed->second + "'? (labfleet's settings use '_' and write daemon.json's names)");
        if (dashed == "default-address-pools") d.pools_under_docker_name = true;
      }
      allowed.push_back(e.key);
    }
  }
  MapReader r(v, "docker settings", v.loc(), out, allowed);
  if (auto s = r.str("data_root")) {
    d.data_root = *s;
    PathResult pr = NormalizeAbsolutePath(*s);
    if (pr.error && pr.error->code == "path-not-absolute")
      out.error(r.get("data_root")->loc(), "docker-data-root-not-absolute",
                "docker data_root must be an absolute path (e.g. /local/.docker), got " + Quoted(*s));
    else
      Report(out, r.get("data_root")->loc(), "docker data_root " + Quoted(*s), pr.error);
  }
  if (const Value* pools = r.seq("address_pools")) {
    d.has_address_pools = true;
    for (const auto& item : pools->items()) {
      MapReader p(item, "a docker address pool", item.loc(), out, {"base", "size"});
      if (!p.is_map()) continue;
      bool have_base = p.require("base", "e.g. `{ base: 172.28.0.0/16, size: 24 }`");
      bool have_size = p.require("size", "the prefix length of each network carved out of the base, e.g. 24");
      if (!have_base) continue;
      auto base = p.str("base");
      if (!base) continue;
      std::string err;
      auto cidr = ParseCidr(*base, &err);
      const Location bloc = p.get("base")->loc();
      if (!cidr) {
        out.error(bloc, "invalid-cidr", "docker address pool base " + err);
        continue;
      }
      if (cidr->host_bits_set()) {
        out.error(bloc, "invalid-cidr",
                  "docker address pool base " + *base + " has host bits set; write " + cidr->network_str());
        continue;
      }
      if (!have_size) continue;
      const Value* sv = p.get("size");
      auto size = sv->as_int();
      int max = cidr->addr.family == 4 ? 31 : 127;
      if (!size || *size < cidr->prefix || *size > max) {
        out.error(sv->loc(), "docker-pool-size",
                  "size of docker address pool " + *base + " must be an integer between " +
                      std::to_string(cidr->prefix) + " (the base's prefix length) and " + std::to_string(max) +
                      ", got '" + sv->str() + "'");
        continue;
      }
      d.address_pools.push_back({*base, *cidr, int(*size), item.loc()});
    }
  }
  if (auto s = r.str("bip")) {
    std::string err;
    d.bip_where = r.get("bip")->loc();
    if (auto c = ParseCidr(*s, &err)) {
      if (!c->host_bits_set()) {
        IpAddr first = c->network();
        first.bytes[first.bits() / 8 - 1] |= 1;
        out.error(d.bip_where, "invalid-cidr",
                  "docker bip " + *s + " is a network address; bip is the bridge's own address with a prefix, "
                  "e.g. " + first.str() + "/" + std::to_string(c->prefix));
      } else {
        d.bip = c;
        d.bip_text = *s;
      }
    } else {
      out.error(d.bip_where, "invalid-cidr", "docker bip " + err);
    }
  }
  if (auto s = r.str("default_runtime")) d.default_runtime = *s;
  if (const Value* p = r.get("proxy")) {
    MapReader pr(*p, "docker proxy settings", r.key_loc("proxy"), out, {"http", "https", "no_proxy"});
    for (const char* k : {"http", "https"}) {
      auto s = pr.str(k);
      if (!s) continue;
      // Written into a systemd drop-in as Environment="HTTPS_PROXY=<url>": one URL, nothing else.
      SyntaxError e;
      if (!ParseUrl(*s, {"http", "https"}, &e))
        out.error(pr.get(k)->loc(), e.code == "control-character" ? e.code : "docker-proxy-url",
                  std::string("docker proxy ") + k + " " + Quoted(*s) + " " + e.what +
                      "; write a URL like http://10.0.1.68:8889");
      (std::string_view(k) == "http" ? d.http_proxy : d.https_proxy) = *s;
    }
    if (auto s = pr.strings("no_proxy")) {
      d.no_proxy = *s;
      const Value* list = pr.get("no_proxy");
      for (size_t i = 0; i < s->size(); ++i) {
        const std::string& n = (*s)[i];
        const Location& where = list->items()[i].loc();
        if (Report(out, where, "docker no_proxy entry " + Quoted(n), CheckOneWord(n))) continue;
        if (n.empty() || n.find_first_of(",\"\\%") != std::string::npos)
          out.error(where, "docker-no-proxy",
                    "docker no_proxy entry " + Quoted(n) +
                        " must be one host name, domain (.lab.example), address or CIDR without ',', quotes, '\\' "
                        "or '%' (the entries are joined with ',' into NO_PROXY)");
      }
    }
  }
  if (const Value* rc = r.map("registry_certs")) {
    for (const auto& e : rc->entries()) {
      if (!RegistryName(e.key)) {
        out.error(e.key_loc, "docker-registry-name",
                  "registry_certs key '" + e.key + "' is not a registry name: write the registry's host or "
                  "host:port, e.g. harbor.cvgl.lab or 10.0.1.68:5000 (it becomes the directory "
                  "/etc/docker/certs.d/<registry>/)");
        continue;
      }
      if (!e.value.is_scalar()) {
        out.error(e.value.loc().known() ? e.value.loc() : e.key_loc, "wrong-type",
                  "registry_certs maps a registry host to a certificate file, got " + DescribeValue(e.value) +
                      " for '" + e.key + "'");
        continue;
      }
      d.registry_certs.emplace_back(e.key, e.value.str());
      d.registry_cert_where.push_back(e.value.loc());
    }
  }
  if (auto s = r.strings("registry_mirrors")) d.registry_mirrors = *s;
  if (auto s = r.strings("insecure_registries")) d.insecure_registries = *s;
  if (auto s = r.strings("dns")) d.dns = *s;
  if (auto s = r.strings("remove_networks")) {
    for (const auto& n : *s) {
      bool ok = !n.empty() && n.size() <= 128 && std::isalnum((unsigned char)n[0]);
      for (char c : n)
        if (!std::isalnum((unsigned char)c) && c != '_' && c != '.' && c != '-') ok = false;
      if (!ok)
        out.error(r.get("remove_networks")->loc(), "docker-network-name",
                  "docker remove_networks entry " + Quoted(n) + " is not a Docker network name ([A-Za-z0-9][A-Za-z0-9_.-]*)");
      else if (n == "bridge" || n == "host" || n == "none")
        out.error(r.get("remove_networks")->loc(), "docker-network-name",
                  "docker remove_networks cannot remove Docker's predefined network '" + n + "'");
      else
        d.remove_networks.push_back(n);
    }
  }
  if (auto s = r.str("log_driver")) d.log_driver = *s;
  if (const Value* lo = r.map("log_opts"))
    for (const auto& e : lo->entries())
      if (e.value.is_scalar()) d.log_opts[e.key] = e.value.str();
  d.mtu = r.integer("mtu", 68, 65535);
  d.live_restore = r.boolean("live_restore");
  if (auto s = r.str("storage_driver")) d.storage_driver = *s;
  if (const Value* ex = r.map("extra")) {
    for (const auto& e : ex->entries()) {
      if (auto typed = kTypedJsonKeys.find(e.key); typed != kTypedJsonKeys.end()) {
        out.error(e.key_loc, "docker-extra-typed-key",
                  "docker extra key '" + e.key + "' is set by the typed setting `" + typed->second +
                      "`; write it there (labfleet checks it) instead of under extra");
        continue;
      }
      d.extra[e.key] = ValueToJson(e.value);
    }
  }
  return d;
}


namespace {

// Docker's own defaults when address_pools / bip are not set.
const char* const kDefaultPools[] = {"172.17.0.0/12", "192.168.0.0/16"};

struct Net {
  Cidr cidr;
  std::string text;
  Location where;
};

constexpr const char* kDaemonJson = "/etc/docker/daemon.json";
constexpr const char* kProxyDropin = "/etc/systemd/system/docker.service.d/proxy.conf";
// The first line of every proxy drop-in labfleet writes: how it knows the file is its own.
constexpr const char* kProxyHeader = "# Managed by labfleet from the inventory; edits here are overwritten.";
constexpr const char* kCertsDir = "/etc/docker/certs.d/";
// The registries whose certs.d/REGISTRY/ca.crt labfleet wrote on this node, one a line: what it may remove.
constexpr const char* kCertList = "/var/lib/labfleet/docker-registry-certs";
// daemon-reload first (a drop-in changed). Nothing to do where Docker is not installed (a toolkit-only node
// running podman): dockerd reads the new configuration when it is installed and first starts.
constexpr const char* kRestart =
    "if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then "
    "if systemctl show -p LoadState docker.service 2>/dev/null | grep -qx 'LoadState=not-found'; then "
    "echo 'docker.service is not installed: nothing to restart'; "
    "else systemctl daemon-reload && systemctl restart docker; fi; "
    "elif [ -e /etc/init.d/docker ]; then service docker restart; "
    "else echo 'docker is not installed: nothing to restart'; fi";

// One resource of the docker module.
struct DockerRes {
  enum class Kind {
    File,         // path gets bytes (daemon.json compared as JSON)
    RuntimeOnly,  // no `docker:` settings, only nvidia.container_toolkit: daemon.json is the admin's; labfleet
                  // only adds runtimes.nvidia to it (or writes a file holding just that), every other key kept
    ProxyGone,    // the node gets no proxy: a proxy drop-in labfleet wrote goes
    CertList,     // the registries the node gets certificates for: listed others go, the list is kept
    Networks,     // the node's Docker networks: overlaps with reserved networks warned, remove_networks removed
  };
  Kind kind = Kind::File;
  std::string path, bytes;
  bool json = false;
  std::vector<std::string> registries;  // CertList, sorted; Networks: remove_networks
};

// A registry name from the node's list that may name a directory under certs.d: a host, optionally :port.
bool PlainRegistry(const std::string& r) {
  if (r.empty() || r == "." || r == "..") return false;
  for (char c : r)
    if (!std::isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_' && c != ':') return false;
  return true;
}

// Lines "present REGISTRY" / "absent REGISTRY" (its ca.crt), after a first line "list"; "none" without a list.
Probe CertListProbe() {
  std::string list = ShellQuote(kCertList);
  return {"docker:registry-certs",
          "if [ -f " + list + " ]; then echo list; while IFS= read -r r || [ -n \"$r\" ]; do case $r in ''|'#'*) "
          "continue;; esac; if [ -e \"" + std::string(kCertsDir) + "$r/ca.crt\" ]; then echo \"present $r\"; else "
          "echo \"absent $r\"; fi; done < " + list + "; else echo none; fi"};
}

std::string CertListFile(const std::vector<std::string>& registries) {
  std::string out =
      "# Managed by labfleet: the registries whose /etc/docker/certs.d/REGISTRY/ca.crt it wrote (docker module).\n";
  for (const auto& r : registries) out += r + "\n";
  return out;
}

Change RestartDocker(std::string reason) {
  return NotifyChange("restart docker", kRestart, "restart docker", std::move(reason), /*disruptive=*/true);
}

// daemon.json from the typed settings; keys as dockerd(8) names them. `nvidia_runtime`: register the
// nvidia runtime (the node's nvidia.container_toolkit is on).
nlohmann::json DaemonJson(const DockerSettings& d, bool nvidia_runtime) {
  nlohmann::json j = d.extra;
  if (!d.data_root.empty()) j["data-root"] = d.data_root;
  if (d.has_address_pools) {
    j["default-address-pools"] = nlohmann::json::array();
    for (const auto& p : d.address_pools) j["default-address-pools"].push_back({{"base", p.text}, {"size", p.size}});
  }
  if (!d.bip_text.empty()) j["bip"] = d.bip_text;
  if (!d.default_runtime.empty()) j["default-runtime"] = d.default_runtime;
  if (nvidia_runtime || d.default_runtime == "nvidia") j["runtimes"] = NvidiaDockerRuntime();
  if (!d.registry_mirrors.empty()) j["registry-mirrors"] = d.registry_mirrors;
  if (!d.insecure_registries.empty()) j["insecure-registries"] = d.insecure_registries;
  if (!d.dns.empty()) j["dns"] = d.dns;
  if (!d.log_driver.empty()) j["log-driver"] = d.log_driver;
  if (!d.log_opts.empty()) j["log-opts"] = d.log_opts;
  if (d.mtu) j["mtu"] = *d.mtu;
  if (d.live_restore) j["live-restore"] = *d.live_restore;
  if (!d.storage_driver.empty()) j["storage-driver"] = d.storage_driver;
  return j;
}

// The systemd drop-in that gives dockerd its proxy; "" when no proxy is set.
std::string ProxyDropin(const DockerSettings& d) {
  if (d.http_proxy.empty() && d.https_proxy.empty() && d.no_proxy.empty()) return "";
  std::string out = "# Managed by labfleet from the inventory; edits here are overwritten.\n[Service]\n";
  auto env = [&](const char* k, const std::string& v) {
    if (!v.empty()) out += std::string("Environment=\"") + k + "=" + SystemdEscape(v) + "\"\n";
  };
  env("HTTP_PROXY", d.http_proxy);
  env("HTTPS_PROXY", d.https_proxy);
  std::string np;
  for (const auto& n : d.no_proxy) np += (np.empty() ? "" : ",") + n;
  env("NO_PROXY", np);
  return out;
}

class DockerModule : public Module {
 public:
  std::string name() const override { return "docker"; }
  int order() const override { return 70; }
  std::vector<std::string> settings_keys() const override { return {"docker"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return Closed(kDockerKeys,
                  {{"data_root", Scalar("Docker's data directory (absolute path)")},
                   {"address_pools", ListOf(Closed({"base", "size"}, {{"base", Scalar("network CIDR")},
                                                                     {"size", Integer(0, 127, "prefix length")}}))},
                   {"bip", Scalar("the default bridge's address/prefix, e.g. 172.29.0.1/24")},
                   {"default_runtime", Scalar()},
                   {"proxy", Closed({"http", "https", "no_proxy"},
                                    {{"http", Scalar("URL")}, {"https", Scalar("URL")},
                                     {"no_proxy", OneOf({Strings(), Scalar()})}})},
                   {"registry_certs", MapOf(Scalar("CA file, relative to the inventory"), "registry -> CA file")},
                   {"registry_mirrors", Strings()},
                   {"insecure_registries", Strings()},
                   {"dns", Strings()},
                   {"log_driver", Scalar()},
                   {"log_opts", MapOf(Any())},
                   {"mtu", Integer(68, 65535)},
                   {"live_restore", Boolean()},
                   {"storage_driver", Scalar()},
                   {"extra", MapOf(Any(), "other daemon.json keys, written as is")},
                   {"remove_networks", Strings("Docker networks to remove while no container uses them")}},
                  "Docker daemon settings (daemon.json)");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    // 1. Structure and formats, once per place `docker:` is written.
    std::vector<const Value*> layers;
    if (const Value* d = inv.lab.find("defaults"); d && d->is_map()) layers.push_back(d->find("docker"));
    for (const auto& g : inv.groups) layers.push_back(g.raw.find("docker"));
    for (const auto& n : inv.nodes) layers.push_back(n.raw.find("docker"));
    std::vector<DockerSettings> parsed;
    for (const Value* v : layers)
      if (v && !v->is_null()) parsed.push_back(ParseDocker(*v, &f));

    // What docker networks must never cover: reserved networks and every node's address.
    std::vector<Net> reserved;
    if (const Value* rn = inv.lab.find("reserved_networks"); rn && rn->is_seq())
      for (const auto& n : rn->items())
        if (n.is_scalar())
          if (auto c = ParseCidr(n.str())) reserved.push_back({*c, n.str(), n.loc()});
    struct NodeIp {
      IpAddr ip;
      const NodeDef* node;
    };
    std::vector<NodeIp> node_ips;
    for (const auto& n : inv.nodes)
      if (auto ip = ParseIp(n.address)) node_ips.push_back({*ip, &n});

    std::set<std::string> reported;
    auto report = [&](const Location& where, const char* code, const std::string& msg, bool warning = false) {
      if (!reported.insert(where.str() + "|" + code + "|" + msg).second) return;
      if (warning)
        f.warning(where, code, msg);
      else
        f.error(where, code, msg);
    };

    // 2. Every written pool and bip against reserved networks and node addresses.
    for (const auto& d : parsed) {
      std::vector<Net> nets;
      for (const auto& p : d.address_pools) nets.push_back({p.base, "docker address pool " + p.text, p.where});
      if (d.bip) nets.push_back({*d.bip, "docker bip " + d.bip_text, d.bip_where});
      for (const auto& n : nets) {
        for (const auto& r : reserved)
          if (Overlaps(n.cidr, r.cidr))
            report(n.where, "docker-overlaps-reserved",
                   n.text + " overlaps reserved network " + r.text + " (" + r.where.str() +
                       "); containers would lose the route to it. Pick a range outside every reserved network");
        for (const auto& ni : node_ips)
          if (Contains(n.cidr, ni.ip))
            report(n.where, "docker-overlaps-node",
                   n.text + " contains the address " + ni.node->address + " of node '" + ni.node->name + "' (" +
                       ni.node->where.str() + "); that node would become unreachable from containers");
      }
    }

    // 2b. Pools and bip in public IPv4 space: every real host in that range becomes unreachable from
    //     containers (their traffic to it goes to the bridge).
    static const Cidr kPrivate[] = {*ParseCidr("10.0.0.0/8"), *ParseCidr("172.16.0.0/12"), *ParseCidr("192.168.0.0/16")};
    for (const auto& d : parsed) {
      std::vector<Net> nets;
      for (const auto& p : d.address_pools) nets.push_back({p.base, "docker address pool " + p.text, p.where});
      if (d.bip) nets.push_back({*d.bip, "docker bip " + d.bip_text, d.bip_where});
      for (const auto& n : nets) {
        if (n.cidr.addr.family != 4) continue;
        bool priv = false;
        for (const auto& p : kPrivate) priv |= p.prefix <= n.cidr.prefix && Contains(p, n.cidr.network());
        if (!priv)
          report(n.where, "docker-public-range",
                 n.text + " is public address space (" + n.cidr.network_str() +
                     " is not inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16): containers could not reach the "
                     "real hosts in " + n.cidr.network_str() + ". Pick a private range, e.g. 172.28.0.0/16 for pools "
                     "and 172.29.0.1/24 for bip, clear of lab.reserved_networks",
                 true);
      }
    }

    // 3. Per node, with its effective settings: pools and bip overlapping each other; Docker's default
    //    pools when none are set.
    for (const auto& node : inv.nodes) {
      Value eff = inv.settings(node);
      const Value* dv = eff.find("docker");
      if (!dv || !dv->is_map()) continue;
      DockerSettings d = ParseDocker(*dv, nullptr);
      std::vector<Net> nets;
      for (const auto& p : d.address_pools) nets.push_back({p.base, "docker address pool " + p.text, p.where});
      if (d.bip) nets.push_back({*d.bip, "docker bip " + d.bip_text, d.bip_where});
      for (size_t i = 0; i < nets.size(); ++i)
        for (size_t j = 0; j < i; ++j)
          if (Overlaps(nets[i].cidr, nets[j].cidr))
            report(nets[i].where, "docker-pools-overlap",
                   nets[i].text + " overlaps " + nets[j].text + " (" + nets[j].where.str() + ") on node '" +
                       node.name + "'; Docker would hand out the same network twice");
      if (d.default_runtime == "nvidia") {
        auto nv = NodeNvidia(eff);
        if (!nv || !nv->container_toolkit)
          report(dv->find("default_runtime")->loc(), "docker-runtime-without-toolkit",
                 "docker default_runtime is nvidia on node '" + node.name +
                     "' but its nvidia.container_toolkit is not true: nvidia-container-runtime would be missing "
                     "and every container would fail to start; set nvidia: { container_toolkit: true }",
                 true);
      }
      if (!d.has_address_pools && !d.pools_under_docker_name) {
        for (const char* dp : kDefaultPools) {
          Cidr c = *ParseCidr(dp);
          for (const auto& r : reserved)
            if (Overlaps(c, r.cidr))
              report(KeyLoc(eff, "docker"), "docker-default-pools",
                     std::string("these docker settings leave address_pools to Docker's defaults (172.17.0.0/12, "
                                 "192.168.0.0/16), which overlap reserved network ") +
                         r.text + " (" + r.where.str() + "); set docker.address_pools",
                     true);
        }
      }
    }

    // 4. Certificate files exist in the inventory repository.
    for (const auto& d : parsed)
      for (size_t i = 0; i < d.registry_certs.size(); ++i)
        if (inv.read_file && !inv.read_file(d.registry_certs[i].second)) {
          std::string why = inv.refusal ? inv.refusal(d.registry_certs[i].second, "") : "";
          report(d.registry_cert_where[i], "docker-cert-missing",
                 "certificate file " + Quoted(d.registry_certs[i].second) + " for registry " + d.registry_certs[i].first +
                     (why.empty() ? " not found (paths are relative to the inventory directory)" : " is refused: " + why));
        }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    const Value* dv = ctx.settings.find("docker");
    bool have_docker = dv && dv->is_map();
    auto nv = NodeNvidia(ctx.settings);
    std::vector<OwnedFile> out;
    if (have_docker)
      out.push_back({kDaemonJson, "docker:"});
    else if (nv && nv->container_toolkit)
      out.push_back({kDaemonJson, "nvidia.container_toolkit (the nvidia runtime)"});
    if (!have_docker) return out;
    DockerSettings d = ParseDocker(*dv, nullptr);
    if (!ProxyDropin(d).empty()) out.push_back({kProxyDropin, "docker.proxy"});
    for (const auto& rc : d.registry_certs) out.push_back({kCertsDir + rc.first + "/ca.crt", "docker.registry_certs"});
    return out;
  }

  // Apply: daemon.json (compared as JSON: formatting and key order are not changes), the systemd proxy
  // drop-in, registry CA certificates; one disruptive "restart docker" handler when any of them was written or
  // removed. On every node, docker settings or not: a labfleet proxy drop-in and listed certificates the
  // inventory no longer gives the node are removed (so removing `proxy:`, or the whole `docker:` map, cleans up).
  std::vector<Resource> resources(const NodeContext& ctx) const override {
    using K = DockerRes::Kind;
    const Value* dv = ctx.settings.find("docker");
    bool have_docker = dv && dv->is_map();
    auto nv = NodeNvidia(ctx.settings);
    bool toolkit = nv && nv->container_toolkit;
    DockerSettings d = have_docker ? ParseDocker(*dv, nullptr) : DockerSettings{};
    const Value* nvv = ctx.settings.find("nvidia");
    Location where = have_docker ? d.where : nvv ? nvv->loc() : ctx.node.where;
    std::vector<Resource> out;
    auto add = [&](const std::string& id, DockerRes res) {
      out.push_back({name(), "docker:" + id, where, std::make_shared<DockerRes>(std::move(res))});
    };
    if (have_docker)
      add(kDaemonJson, {K::File, kDaemonJson, DaemonJson(d, toolkit).dump(2) + "\n", true, {}});
    else if (toolkit)
      add(kDaemonJson, {K::RuntimeOnly, kDaemonJson, "", true, {}});
    std::string proxy = ProxyDropin(d);
    add(kProxyDropin, {proxy.empty() ? K::ProxyGone : K::File, kProxyDropin, proxy, false, {}});
    std::set<std::string> registries;
    for (const auto& [registry, file] : d.registry_certs) {
      auto bytes = ctx.inv.read_file ? ctx.inv.read_file(file) : std::nullopt;
      std::string path = kCertsDir + registry + "/ca.crt";
      add(path, {K::File, path, bytes ? *bytes : std::string(), false, {}});
      registries.insert(registry);
    }
    add("registry-certs", {K::CertList, kCertList, "", false, {registries.begin(), registries.end()}});
    if (have_docker) add("networks", {K::Networks, "", "", false, d.remove_networks});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) {
      const auto& x = r.as<DockerRes>();
      out.push_back(x.kind == DockerRes::Kind::CertList   ? CertListProbe()
                    : x.kind == DockerRes::Kind::Networks ? DockerNetworksProbe()
                                                          : FileProbe(x.path));
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const auto& x = r.as<DockerRes>();
    switch (x.kind) {
      case DockerRes::Kind::Networks: return DiffNetworks(ctx, x.registries, results);
      case DockerRes::Kind::CertList: return DiffCertList(x.registries, results);
      case DockerRes::Kind::ProxyGone: return DiffProxyGone(results);
      case DockerRes::Kind::RuntimeOnly: return DiffRuntimeOnly(ParseFileProbe(results, kDaemonJson));
      case DockerRes::Kind::File: break;
    }
    FileState live = ParseFileProbe(results, x.path);
    FileSpec want{x.path, x.bytes, 0644, "root", "root"};
    if (x.json && live.exists && live.regular) {
      auto have = nlohmann::json::parse(live.content, nullptr, false);
      if (!have.is_discarded() && have == nlohmann::json::parse(x.bytes)) {
        // Same JSON: keep the node's formatting; only metadata may differ.
        want.bytes = live.content;
      }
    }
    DiffResult d = DiffFile(want, live, "docker " + x.path);
    // dockerd and systemd read these files as root when Docker starts: a mode or owner fixed with chmod/chown
    // changes nothing the running daemon uses, so only new content restarts it.
    bool content = false;
    for (const auto& c : d.changes) content |= c.kind == Change::Kind::PutFile;
    if (content) d.changes.push_back(RestartDocker("its configuration changed; running containers stop"));
    return d;
  }

 private:
  // Overlap warnings for every network; removal of the listed ones that exist and have no container.
  static DiffResult DiffNetworks(const NodeContext& ctx, const std::vector<std::string>& remove,
                                 const ProbeResults& results) {
    const ProbeOutput* p = FindProbe(results, "docker:networks");
    DockerNetworks nets = ParseDockerNetworks(p ? p->out : "no-docker");
    DiffResult d;
    if (nets.no_docker) {
      if (!remove.empty())
        d.noop = "nothing to do because docker is not installed (remove_networks " + Join(remove, ", ") + " not checked)";
      else
        d.noop = "nothing to do because docker is not installed (no networks to check)";
      return d;
    }
    if (nets.no_daemon) {
      // Nothing can be removed and no overlap seen: say so, as a warning only when the inventory asked for a removal.
      if (!remove.empty())
        d.warnings.push_back("docker.remove_networks (" + Join(remove, ", ") + ") not checked: no docker daemon "
                             "answers here (no /run/docker.sock, or `docker network ls` failed); start it and plan "
                             "again");
      d.noop = "nothing to do because no docker daemon answers here (no /run/docker.sock, or `docker network ls` "
               "failed): its networks were not checked";
      return d;
    }
    if (!nets.error.empty()) {
      d.warnings.push_back("docker networks not checked: " + nets.error);
      d.noop = "nothing to do because the docker networks could not be read";
      return d;
    }
    struct Reserved {
      Cidr cidr;
      std::string text;
    };
    std::vector<Reserved> reserved;
    if (const Value* rn = ctx.inv.lab.find("reserved_networks"); rn && rn->is_seq())
      for (const auto& n : rn->items())
        if (n.is_scalar())
          if (auto c = ParseCidr(n.str())) reserved.push_back({*c, n.str()});
    std::set<std::string> wanted_gone(remove.begin(), remove.end()), seen;
    for (const auto& n : nets.networks) {
      std::vector<std::string> overlapping;
      for (const auto& sub : n.subnets) {
        auto c = ParseCidr(sub);
        if (!c) continue;
        for (const auto& r : reserved)
          if (Overlaps(*c, r.cidr)) {
            overlapping.push_back(sub);
            d.warnings.push_back("docker network " + Quoted(n.name) + " (subnet " + Quoted(sub) +
                                 ") overlaps reserved network " + r.text + "; containers on it lose the route there" +
                                 (wanted_gone.count(n.name) ? "" : ". Remove it with docker.remove_networks: [" + n.name + "] once no container uses it"));
          }
      }
      if (!wanted_gone.count(n.name)) continue;
      seen.insert(n.name);
      std::string subnets = n.subnets.empty() ? std::string("no subnet") : Join(n.subnets, ", ");
      if (!n.containers.empty()) {
        std::vector<std::string> names;
        for (const auto& c : n.containers) names.push_back(Quoted(c));
        d.warnings.push_back("refused: docker network " + n.name + " (" + subnets + ") is used by container" +
                             (names.size() == 1 ? " " : "s ") + Join(names, ", ") +
                             "; it is removed once they are stopped and removed (docker rm)");
        continue;
      }
      Change c;
      c.sign = '-';
      c.summary = "docker network " + n.name + " (" + subnets + ")";
      c.reason = std::string("docker.remove_networks lists it and no container uses it") +
                 (overlapping.empty() ? "" : "; it overlaps lab.reserved_networks");
      c.command = Cmd("docker").arg("network").arg("rm").arg(n.name).str();
      d.changes.push_back(std::move(c));
    }
    std::vector<std::string> absent;
    for (const auto& n : remove)
      if (!seen.count(n)) absent.push_back(n);
    if (d.changes.empty())
      d.noop = "nothing to do because " +
               (absent.empty() ? std::to_string(nets.networks.size()) + " docker networks were checked and none is to be removed"
                               : "docker network " + Join(absent, ", ") + " does not exist");
    return d;
  }

  // Only the nvidia runtime in daemon.json; the rest of the file is not labfleet's. A runtime named nvidia that
  // is already there (nvidia-ctk runtime configure writes one too) counts as registered.
  static DiffResult DiffRuntimeOnly(const FileState& live) {
    nlohmann::json j = nlohmann::json::object();
    if (live.exists) {
      if (!live.regular)
        return Failure(std::string(kDaemonJson) + " is not a regular file; the nvidia runtime cannot be added to it");
      j = nlohmann::json::parse(live.content, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        return Failure(std::string(kDaemonJson) +
                       " is not a JSON object, so the nvidia runtime (nvidia.container_toolkit) cannot be added to "
                       "it; fix the file, or give the node docker: settings so that labfleet writes it whole");
      if (j.contains("runtimes") && !j["runtimes"].is_object())
        return Failure(std::string(kDaemonJson) + " has a \"runtimes\" value that is not a JSON object; fix it");
      if (j.contains("runtimes") && j["runtimes"].contains("nvidia") && j["runtimes"]["nvidia"].is_object() &&
          j["runtimes"]["nvidia"].contains("path") && j["runtimes"]["nvidia"]["path"].is_string() &&
          !j["runtimes"]["nvidia"]["path"].get<std::string>().empty())
        return Noop(std::string("nothing to do because the nvidia runtime is registered in ") + kDaemonJson +
                    " (no docker: settings, so its other keys are left as they are)");
    }
    j["runtimes"]["nvidia"] = NvidiaDockerRuntime()["nvidia"];
    FileSpec want{kDaemonJson, j.dump(2) + "\n", 0644, "root", "root"};
    DiffResult d = DiffFile(want, live, std::string("docker ") + kDaemonJson + " (nvidia runtime)");
    for (auto& c : d.changes)
      c.reason = live.exists ? "nvidia.container_toolkit is true and the nvidia runtime is not registered; the "
                               "file's other keys are kept"
                             : "nvidia.container_toolkit is true; the node has no docker: settings, so the file "
                               "holds only the nvidia runtime";
    d.changes.push_back(RestartDocker("the nvidia runtime was registered; running containers stop"));
    return d;
  }

  static DiffResult DiffProxyGone(const ProbeResults& results) {
    FileState live = ParseFileProbe(results, kProxyDropin);
    const std::string what = std::string("docker ") + kProxyDropin;
    if (!live.exists) return Noop("nothing to do because no docker proxy is set and " + std::string(kProxyDropin) + " is absent");
    if (!live.regular || live.content.substr(0, live.content.find('\n')) != kProxyHeader)
      return Noop("nothing to do because no docker proxy is set; " + std::string(kProxyDropin) +
                  " was not written by labfleet (its first line is not labfleet's), so it is left as it is");
    DiffResult d;
    Change c;
    c.kind = Change::Kind::Remove;
    c.sign = '-';
    c.path = kProxyDropin;
    c.summary = what;
    c.reason = "labfleet wrote it and the inventory sets no docker proxy any more";
    c.diff = UnifiedDiff(live.content, "", kProxyDropin, "/dev/null");
    d.changes.push_back(std::move(c));
    d.changes.push_back(RestartDocker("its proxy drop-in was removed; running containers stop"));
    return d;
  }

  static DiffResult DiffCertList(const std::vector<std::string>& want, const ProbeResults& results) {
    DiffResult d;
    const ProbeOutput* p = FindProbe(results, "docker:registry-certs");
    std::vector<std::string> lines = SplitLines(p ? p->out : "");
    bool have_list = !lines.empty() && lines[0] == "list";
    std::set<std::string> wanted(want.begin(), want.end()), listed;
    std::vector<std::string> removed;
    for (size_t i = 1; have_list && i < lines.size(); ++i) {
      size_t sp = lines[i].find(' ');
      if (sp == std::string::npos) continue;
      std::string state = lines[i].substr(0, sp), reg = lines[i].substr(sp + 1);
      if (!PlainRegistry(reg)) {
        d.warnings.push_back("docker: ignored '" + reg + "' in " + kCertList + ": not a registry host name");
        continue;
      }
      listed.insert(reg);
      if (wanted.count(reg) || state != "present") continue;
      Change c;
      c.kind = Change::Kind::Remove;
      c.sign = '-';
      c.path = kCertsDir + reg + "/ca.crt";
      c.summary = "docker registry certificate " + c.path;
      c.reason = "labfleet wrote it and registry_certs no longer has " + reg;
      d.changes.push_back(std::move(c));
      removed.push_back(reg);
    }
    // The list records what labfleet wrote; it is rewritten after the removals (a failed removal stays listed).
    if (listed != wanted) {
      Change c;
      if (wanted.empty()) {
        c.kind = Change::Kind::Remove;
        c.sign = '-';
        c.path = kCertList;
      } else {
        c.kind = Change::Kind::PutFile;
        c.sign = have_list ? '~' : '+';
        c.file = FileSpec{kCertList, CertListFile(want), 0644, "root", "root"};
      }
      c.summary = std::string("list of labfleet's docker registry certificates ") + kCertList;
      c.reason = wanted.empty() ? "no registry certificates any more"
                                : "records " + Join(want, ", ") + " (what labfleet may remove later)";
      d.changes.push_back(std::move(c));
    }
    if (!removed.empty())
      d.changes.push_back(RestartDocker("registry certificates were removed; running containers stop"));
    if (d.changes.empty())
      d.noop = wanted.empty() ? "nothing to do because labfleet wrote no docker registry certificate here"
                              : "nothing to do because " + std::string(kCertList) + " lists " + Join(want, ", ");
    return d;
  }
};

const ModuleRegistrar kDocker(std::make_unique<DockerModule>());

}  // namespace

DockerForUsers DockerSettingsForUsers(const Value& docker) {
  DockerForUsers out;
  if (!docker.is_map()) return out;
  DockerSettings d = ParseDocker(docker, nullptr);
  nlohmann::json all = DaemonJson(d, false);
  for (const char* k : {"default-address-pools", "registry-mirrors", "insecure-registries", "dns"})
    if (all.contains(k)) out.daemon_json[k] = all[k];
  out.http_proxy = d.http_proxy;
  out.https_proxy = d.https_proxy;
  out.no_proxy = Join(d.no_proxy, ",");
  return out;
}
}  // namespace labfleet
