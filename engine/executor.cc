#include "engine/executor.h"

#include <algorithm>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <set>
#include <thread>

#include "engine/image.h"
#include "engine/plan_report.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {

static const char* kLock = "/run/labfleet.lock";
static const char* kStateDir = "/var/lib/labfleet";

std::string SettingsHash(const Inventory& inv, const NodeDef& node) {
  // FNV-1a over the effective settings and the accounts that land on the node: stable across runs.
  std::string text = inv.settings(node).flow();
  for (const auto& u : inv.users)
    if (inv.user_on_node(u, node)) text += "\n" + u.name + ":" + u.raw.flow();
  for (const auto& g : inv.user_groups) text += "\n" + g.name + ":" + std::to_string(g.gid);
  return Fnv1a64Hex(text);
}

bool StateRecordCurrent(const std::string& recorded, const Inventory& inv, const NodeDef& node,
                        const ApplyOptions& opts) {
  auto j = nlohmann::json::parse(recorded, nullptr, false);
  if (!j.is_object()) return false;
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string("\x01"); };
  nlohmann::json only = opts.plan.only.empty() ? nlohmann::json() : nlohmann::json(opts.plan.only);
  return str("commit") == opts.commit && j.contains("dirty") && j["dirty"] == !opts.dirty.empty() &&
         str("settings_hash") == SettingsHash(inv, node) && str("node") == node.name &&
         (j.contains("only_modules") ? j["only_modules"] : nlohmann::json()) == only;
}

std::string StateJson(const Inventory& inv, const NodeDef& node, const ApplyOptions& opts) {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  nlohmann::json j = {{"commit", opts.commit},
                      {"dirty", !opts.dirty.empty()},
                      {"settings_hash", SettingsHash(inv, node)},
                      {"applied_by", opts.who},
                      {"applied_at", when},
                      {"run_id", opts.run_id},
                      {"node", node.name},
                      {"labfleet_version", LABFLEET_VERSION}};
  if (!opts.plan.only.empty()) j["only_modules"] = opts.plan.only;  // a partial apply says so
  return j.dump(2) + "\n";
}

static std::string Dir(const std::string& path) {
  auto p = path.rfind('/');
  return p == 0 || p == std::string::npos ? "/" : path.substr(0, p);
}

static std::string ModeString(unsigned mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

// Shell functions every apply script defines (fixed text; paths reach them as quoted arguments). The contract
// (docs/security.md): nothing is written, chmod-ed, chown-ed, backed up or removed as root through a directory a
// user can change.
// lf_rootonly DIR: kRootOnlyShellFunction (engine/shell.h).
// lf_where PATH OWNER GROUP: decides who writes PATH: root (LF_AS empty) below root-only directories; else the
//   file's owner itself (LF_AS=OWNER, LF_AG=GROUP), who can only create what that user could anyway; a file
//   root is to own below a directory a user controls is refused.
// lf_run CMD...: runs CMD as LF_AS (setpriv, the user's uid, GROUP and the user's groups) or as root.
// lf_backup PATH: keeps the first pre-run version of PATH in $LF_BACKUP (0700, files 0600): a regular file up to
//   64 MiB, read as lf_run (so never through a planted link as root), with its mode and owner; a link, a
//   directory or a larger file is not copied, only noted; an absent one gets a marker.
// lf_restore PATH: puts that version back (through lf_where), or removes PATH if it was absent.
// lf_fixmeta PATH MODE OWNER GROUP: chmod and chown without following a final link (chown -h; as the owner below
//   a user's directory, where chown is not needed).
// lf_mkdir DIR MODE OWNER GROUP: a directory (never through a link at DIR), its mode and owner.
static const std::string kShellFunctions = std::string(kRootOnlyShellFunction) + R"SH(lf_where() {
  LF_AS= LF_AG=
  lf_p=${1%/*}; [ -n "$lf_p" ] || lf_p=/
  lf_rootonly "$lf_p" && return 0
  if [ "$2" != root ] && [ "$2" != 0 ]; then LF_AS=$2 LF_AG=$3; return 0; fi
  echo "refused: $1 is to be root's, but a user can change ${LF_WHY}above it; labfleet never writes as root through a path a user controls" >&2
  return 1
}
lf_run() { if [ -n "$LF_AS" ]; then setpriv --reuid="$LF_AS" --regid="$LF_AG" --init-groups -- "$@"; else "$@"; fi; }
lf_backup() (
  umask 077
  lf_b=$LF_BACKUP$1
  if [ -e "$lf_b" ] || [ -e "$lf_b.labfleet-absent" ] || [ -e "$lf_b.labfleet-notkept" ]; then return 0; fi
  mkdir -p -- "${lf_b%/*}" && chmod 0700 -- "${LF_BACKUP%/*}" "$LF_BACKUP"
  if [ -L "$1" ]; then echo "a symbolic link, not followed" > "$lf_b.labfleet-notkept"
  elif [ -f "$1" ]; then
    lf_run head -c 67108865 -- "$1" > "$lf_b.labfleet-part" || return 1
    if [ "$(wc -c < "$lf_b.labfleet-part")" -gt 67108864 ]; then
      rm -f -- "$lf_b.labfleet-part"; echo "larger than 64 MiB, not kept" > "$lf_b.labfleet-notkept"
    else
      stat -c '%a %u %g' -- "$1" > "$lf_b.labfleet-meta" && mv -f -- "$lf_b.labfleet-part" "$lf_b"
    fi
  elif [ -e "$1" ]; then echo "not a regular file, not kept" > "$lf_b.labfleet-notkept"
  else : > "$lf_b.labfleet-absent"; fi
)
lf_restore() {
  lf_b=$LF_BACKUP$1
  if [ -f "$lf_b" ] && [ -f "$lf_b.labfleet-meta" ]; then
    read -r lf_m lf_o lf_g < "$lf_b.labfleet-meta"
    lf_where "$1" "$lf_o" "$lf_g" || return 1
    lf_t=$(lf_run mktemp "$1.labfleet-restore.XXXXXX") || return 1
    lf_run sh -c 'cat > "$1"' lf "$lf_t" < "$lf_b" && lf_run chmod "$lf_m" -- "$lf_t" &&
      { [ -n "$LF_AS" ] || chown -h "$lf_o:$lf_g" -- "$lf_t"; } && lf_run mv -f -- "$lf_t" "$1"
  elif [ -e "$lf_b.labfleet-absent" ]; then
    lf_where "$1" root root && rm -f -- "$1"
  fi
}
lf_fixmeta() {
  lf_where "$1" "$3" "$4" || return 1
  if [ -L "$1" ]; then echo "$1 is a symbolic link: not changed (replace it with a file)" >&2; return 1; fi
  lf_run chmod "$2" -- "$1"
  [ -n "$LF_AS" ] || chown -h "$3:$4" -- "$1"
}
lf_mkdir() {
  lf_where "$1" "$3" "$4" || return 1
  if [ -L "$1" ]; then echo "$1 is a symbolic link: not followed (replace it with a directory)" >&2; return 1; fi
  lf_run mkdir -p -- "$1"
  lf_run chmod "$2" -- "$1"
  [ -n "$LF_AS" ] || chown -h "$3:$4" -- "$1"
}
)SH";

// Shell for one change, run inside `( set -e ... )`. $LF_BACKUP is the run's backup directory.
static Script ChangeScript(const Change& c, bool keep_backup = true) {
  Script s;
  switch (c.kind) {
    case Change::Kind::PutFile: {
      const FileSpec& f = c.file;
      s.add(Cmd("lf_where").arg(f.path).arg(f.owner).arg(f.group));
      s.add(Cmd("lf_run").arg("mkdir").arg("-p").arg("--").arg(Dir(f.path)));
      if (keep_backup) s.add(Cmd("lf_backup").arg(f.path));
      s.raw("t=$(lf_run mktemp " + ShellQuote(f.path + ".labfleet.XXXXXX") + ")");
      s.raw("trap 'lf_run rm -f -- \"$t\"' EXIT");
      s.add(Cmd("printf").arg("%s").arg(Base64Encode(f.bytes)).raw("| base64 -d | lf_run sh -c 'cat > \"$1\"' lf \"$t\""));
      s.add(Cmd("lf_run").arg("chmod").arg(ModeString(f.mode)).arg("--").raw("\"$t\""));
      s.raw("[ -n \"$LF_AS\" ] || " + Cmd("chown").arg("-h").arg(f.owner + ":" + f.group).arg("--").raw("\"$t\"").str());
      s.raw("sync \"$t\" 2>/dev/null || true");
      if (!c.precheck.empty()) {
        // The check reads the temporary file as root: only below root-only directories.
        s.raw("[ -z \"$LF_AS\" ] || { echo 'a checked file must be below directories only root can change' >&2; exit 1; }");
        s.raw("if ! { LF_NEW=$t\n" + c.precheck + "\n} 2>&1; then");
        s.add(Cmd("echo").arg("check of the new " + f.path + " failed; it was not put in place").raw(">&2"));
        s.raw("exit 1");
        s.raw("fi");
      }
      s.add(Cmd("lf_run").arg("mv").arg("-f").arg("--").raw("\"$t\"").arg(f.path));
      s.raw("trap - EXIT");
      if (!c.verify.empty()) {
        // The new file is in place but nothing has read it yet: check it, and put the old one back if bad.
        s.raw("if ! { " + c.verify + "\n} 2>&1; then");
        s.add(Cmd("lf_restore").arg(f.path));
        s.add(Cmd("echo").arg("verification of " + f.path + " failed; the previous version was restored").raw(">&2"));
        s.raw("exit 1");
        s.raw("fi");
      }
      break;
    }
    case Change::Kind::Remove:
      s.add(Cmd("lf_where").arg(c.path).arg("root").arg("root"));
      s.add(Cmd("lf_backup").arg(c.path));
      s.add(Cmd("rm").arg("-rf").arg("--").arg(c.path));
      break;
    case Change::Kind::Exec:
      for (const auto& p : c.backup_paths) {
        s.add(Cmd("lf_where").arg(p).arg("root").arg("root"));
        s.add(Cmd("lf_backup").arg(p));
      }
      s.raw(c.command);
      break;
    case Change::Kind::Notify:
      break;  // handlers run after all changes
  }
  return s;
}

// The lock's shell functions (fixed text).
// lf_start PID: the start time of process PID (field 22 of /proc/PID/stat; field 2, the name, may hold spaces
//   and parentheses, so the fields are counted after its last ") ").
// lf_holder: judges the holder of /run/labfleet.lock on this node: "alive", "gone: <why>" (its node-side
//   process no longer exists, or that pid now is a process started at another time), or "unknown" (a lock
//   without node_pid, written by an older labfleet).
static const char* kLockFunctions = R"SH(lf_start() {
  lf_s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  lf_s=${lf_s##*) }
  set -- $lf_s
  shift 19 2>/dev/null || return 1
  [ -n "$1" ] && printf '%s\n' "$1"
}
lf_holder() {
  # The holder creates the lock file, then writes it: a lock just taken may not name its process yet (two applies
  # started together). Wait for that up to about a second; an older lock that never names one reads "unknown".
  lf_w=0
  while :; do
    lf_p=$(sed -n 's/^node_pid=\([0-9][0-9]*\)$/\1/p' /run/labfleet.lock 2>/dev/null | head -n 1)
    [ -z "$lf_p" ] && [ $lf_w -lt 10 ] && [ -e /run/labfleet.lock ] || break
    sleep 0.1; lf_w=$((lf_w + 1))
  done
  lf_t=$(sed -n 's/^node_start=\([0-9][0-9]*\)$/\1/p' /run/labfleet.lock 2>/dev/null | head -n 1)
  if [ -z "$lf_p" ]; then echo unknown; return 0; fi
  if ! kill -0 "$lf_p" 2>/dev/null && [ ! -d "/proc/$lf_p" ]; then
    echo "gone: its node-side process $lf_p no longer runs"; return 0
  fi
  lf_n=$(lf_start "$lf_p") || lf_n=
  if [ -n "$lf_t" ] && [ -n "$lf_n" ] && [ "$lf_n" != "$lf_t" ]; then
    echo "gone: its node-side process $lf_p ended; that pid is now another process (started at tick $lf_n, the holder at $lf_t)"
    return 0
  fi
  echo "alive: node-side process $lf_p still runs"
}
)SH";

Script NodeLockScript(const ApplyOptions& opts, const std::string& nonce) {
  Script s;
  auto marker = [&](const std::string& what) { return "printf '@@lf-%s:" + what + "\\n' " + ShellQuote(nonce); };
  std::string lock_info = "run=" + opts.run_id + "\nwho=" + opts.who + "\nhost=" + opts.client_host +
                          "\npid=" + std::to_string(opts.client_pid) + "\nsince=" +
                          std::to_string((long long)time(nullptr)) + "\ncommit=" + opts.commit + "\n";
  s.add(Cmd("mkdir").arg("-p").arg("/run").arg(std::string(kStateDir) + "/backup"));
  // The lock names this script's own shell on the node (node_pid, and its start time: pids are reused), so
  // whether the holder still runs is judged on the node, whoever started it.
  s.raw(kLockFunctions);
  s.raw("lf_lock_write() { " + Cmd("printf").arg("%s").arg(lock_info).str() +
        "; printf 'node_pid=%s\\nnode_start=%s\\n' \"$$\" \"$(lf_start $$)\"; }");
  // Atomic create (noclobber): exactly one concurrent apply gets the lock.
  s.raw("if ! ( set -C; lf_lock_write > " + std::string(kLock) + " ) 2>/dev/null; then");
  if (opts.break_lock) {
    s.raw("  " + marker("lock-broken"));
    s.raw("  lf_holder; cat " + ShellQuote(kLock) + " 2>/dev/null");
    s.raw("  lf_lock_write > " + std::string(kLock));
  } else {
    // A holder that is provably gone (its node-side process no longer exists, or its pid is another process
    // now) is taken over, under a takeover directory so that two runs never both take it; anything else stops.
    s.raw("  lf_h=$(lf_holder); lf_ok=");
    s.raw("  case $lf_h in gone*)");
    s.raw("    if mkdir " + std::string(kLock) + ".takeover 2>/dev/null; then");
    s.raw("      lf_h=$(lf_holder)");
    s.raw("      case $lf_h in gone*) " + marker("lock-stale") + "; printf '%s\\n' \"$lf_h\"; cat " +
          std::string(kLock) + " 2>/dev/null; rm -f " + std::string(kLock) + ";; esac");
    s.raw("      ( set -C; lf_lock_write > " + std::string(kLock) + " ) 2>/dev/null && lf_ok=1");
    s.raw("      rmdir " + std::string(kLock) + ".takeover");
    s.raw("    else lf_h=\"$lf_h; another run is taking it over now\"; fi;;");
    s.raw("  esac");
    s.raw("  if [ \"$lf_ok\" != 1 ]; then");
    s.raw("    " + marker("locked"));
    s.raw("    printf '%s\\n' \"$lf_h\"; cat " + ShellQuote(kLock) + " 2>/dev/null");
    s.raw("    exit 75");
    s.raw("  fi");
  }
  s.raw("fi");
  // Released on every exit, also when stopped by a signal (labfleet's timeout or interrupt sends TERM to the
  // script's process group); only while it is still this run's lock (--break-lock may have replaced it).
  // The release ignores further signals and forks nothing before it decides (a process it started could be
  // caught by the same stop), reading the lock with the shell's own `read`.
  s.raw("lf_unlock() { trap '' HUP INT TERM; while IFS= read -r lf_l; do [ \"$lf_l\" = \"node_pid=$$\" ] && { rm -f " +
        std::string(kLock) + "; break; }; done < " + std::string(kLock) + "; } 2>/dev/null");
  if (opts.readonly_root.empty()) {
    s.raw("trap lf_unlock EXIT");
  } else {
    // A read-only root (root.readonly_btrfs): writable for this script's changes only; read-only again on every
    // exit, before the lock is released, also after a failed change or a stop by signal.
    s.raw("lf_ro=" + ShellQuote(opts.readonly_root));
    s.raw("lf_ro_back() { btrfs property set -ts \"$lf_ro\" ro true 2>/dev/null; }");
    s.raw("trap 'lf_ro_back; lf_unlock' EXIT");
    s.raw("if [ \"$(btrfs property get -ts \"$lf_ro\" ro 2>/dev/null)\" != ro=false ]; then");
    s.raw("  btrfs property set -ts \"$lf_ro\" ro false || { echo \"labfleet: cannot make the read-only root $lf_ro "
          "writable (btrfs property set -ts $lf_ro ro false)\" >&2; exit 1; }");
    s.raw("fi");
  }
  s.raw("trap 'trap \"\" HUP INT TERM; exit 129' HUP; trap 'trap \"\" HUP INT TERM; exit 130' INT; "
        "trap 'trap \"\" HUP INT TERM; exit 143' TERM");
  return s;
}

std::string BuildApplyScript(const NodePlan& plan, const ApplyOptions& opts, const std::string& state_json,
                             const std::string& nonce) {
  Script s;
  auto marker = [&](const std::string& what) { return "printf '@@lf-%s:" + what + "\\n' " + ShellQuote(nonce); };
  s.raw("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  s.raw("umask 022");
  s.append(NodeLockScript(opts, nonce));
  s.raw("LF_BACKUP=" + ShellQuote(std::string(kStateDir) + "/backup/" + opts.run_id));
  s.raw(kShellFunctions);
  // Pending handlers: every handler this run owes is recorded first, so that a run that dies halfway still
  // owes them next time; at the end only the deferred ones stay.
  std::vector<PendingHandler> owed, still_deferred;
  std::set<std::string> owed_names;
  for (const auto* list : {&plan.changes, &plan.deferred})
    for (const auto& c : *list)
      if (c.kind == Change::Kind::Notify && owed_names.insert(c.handler).second) {
        owed.push_back({c.handler, c.command, c.disruptive});
        if (list == &plan.deferred) still_deferred.push_back(owed.back());
      }
  auto write_pending = [&](const std::vector<PendingHandler>& hs) {
    s.raw("( set -e");
    if (hs.empty()) {
      s.add(Cmd("rm").arg("-f").arg(kPendingHandlersFile));
    } else {
      Change rec;
      rec.kind = Change::Kind::PutFile;
      rec.file = FileSpec{kPendingHandlersFile, PendingHandlersFile(hs), 0600, "root", "root"};
      s.append(ChangeScript(rec, /*keep_backup=*/false));
    }
    s.raw(") </dev/null 2>&1 || exit 1");
  };
  if (!owed.empty()) write_pending(owed);
  std::vector<std::pair<std::string, std::string>> handlers;  // name, command
  std::set<std::string> seen;
  for (size_t i = 0; i < plan.changes.size(); ++i) {
    const Change& c = plan.changes[i];
    if (c.kind == Change::Kind::Notify) {
      if (seen.insert(c.handler).second) handlers.emplace_back(c.handler, c.command);
      continue;
    }
    s.raw(marker("change:" + std::to_string(i)));
    s.raw("( set -e");
    s.append(ChangeScript(c));
    s.raw(") </dev/null 2>&1");
    s.raw("rc=$?; printf '\\n@@lf-%s:done:" + std::to_string(i) + ":%d\\n' " + ShellQuote(nonce) + " $rc");
    s.raw("[ $rc -eq 0 ] || exit 1");
  }
  for (size_t i = 0; i < handlers.size(); ++i) {
    s.raw(marker("handler:" + std::to_string(i)));
    s.raw("( set -e");
    s.raw(handlers[i].second);
    s.raw(") </dev/null 2>&1");
    s.raw("rc=$?; printf '\\n@@lf-%s:hdone:" + std::to_string(i) + ":%d\\n' " + ShellQuote(nonce) + " $rc");
    s.raw("[ $rc -eq 0 ] || exit 1");
  }
  if (!owed.empty()) write_pending(still_deferred);
  for (const auto& rec : plan.records) {
    s.raw("( set -e");
    s.raw(rec.command);
    s.raw(") </dev/null 2>&1 || exit 1");
  }
  FileSpec state{std::string(kStateDir) + "/state.json", state_json, 0644, "root", "root"};
  Change record;
  record.kind = Change::Kind::PutFile;
  record.file = state;
  s.raw("( set -e");
  s.append(ChangeScript(record, /*keep_backup=*/false));
  s.raw(") </dev/null 2>&1 || exit 1");
  // Keep the backups of the last 20 runs that changed something.
  s.raw("ls -1dt " + std::string(kStateDir) + "/backup/*/ 2>/dev/null | tail -n +21 | while read -r d; do rm -rf \"$d\"; done");
  s.raw(marker("complete"));
  return s.str();
}

LockInfo ParseLockInfo(const std::string& text) {
  LockInfo li;
  for (const auto& line : SplitLines(text)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    try {
      if (k == "run") li.run_id = v;
      else if (k == "who") li.who = v;
      else if (k == "host") li.host = v;
      else if (k == "commit") li.commit = v;
      else if (k == "pid") li.pid = std::stol(v);
      else if (k == "since") li.since = std::stoll(v);
      else if (k == "node_pid") li.node_pid = std::stol(v);
      else if (k == "node_start") li.node_start = std::stoll(v);
    } catch (const std::exception&) {
    }
  }
  return li;
}

// The holder, as a person reads it: "alice@laptop (run R, labfleet pid P on HOST, node-side pid Q, 12 s ago)".
static std::string HolderText(const LockInfo& li) {
  long long age = (long long)time(nullptr) - li.since;
  std::string who = li.who.empty() ? "an unknown run" : li.who;
  return who + " (run " + li.run_id + ", labfleet pid " + std::to_string(li.pid) + " on " + li.host +
         (li.node_pid > 0 ? ", node-side pid " + std::to_string(li.node_pid) : std::string()) + ", " +
         std::to_string(age) + " s ago)";
}

// The text after a lock marker: the node's judgement (lf_holder) on the first line, the lock file after it, up
// to the next marker.
static std::pair<std::string, LockInfo> LockSection(const std::string& out, size_t from, const std::string& pfx) {
  size_t end = out.find(pfx, from);
  std::string text = out.substr(from, end == std::string::npos ? std::string::npos : end - from);
  size_t nl = text.find('\n');
  std::string verdict = text.substr(0, nl);
  return {verdict, ParseLockInfo(nl == std::string::npos ? "" : text.substr(nl + 1))};
}

std::optional<std::string> LockRefusal(const std::string& out, const std::string& nonce, const std::string& node,
                                       const std::string& client_host) {
  const std::string pfx = "@@lf-" + nonce + ":";
  size_t at = out.find(pfx + "locked\n");
  if (at == std::string::npos) return std::nullopt;
  auto [verdict, li] = LockSection(out, at + pfx.size() + 7, pfx);
  return LockMessage(node, verdict, li, client_host);
}

std::string LockMessage(const std::string& node, const std::string& verdict, const LockInfo& li,
                        const std::string& client_host) {
  std::string msg = "node " + node + " is locked by " + HolderText(li);
  if (verdict.rfind("alive", 0) == 0)
    return msg + ": another apply is running (its " + verdict.substr(7) +
           "); wait for it to finish. Only if you know it is stuck, stop it on the node or rerun with --break-lock";
  if (verdict.rfind("gone", 0) == 0)
    return msg + ": the lock is stale (" + verdict.substr(6) + "); apply again to take it over";
  // An older lock without the node-side pid: only a holder on this client can be judged.
  bool dead = li.host == client_host && li.pid > 0 && kill(li.pid, 0) != 0 && errno == ESRCH;
  if (dead) return msg + ": that run is dead (no such process on this host); break the stale lock with --break-lock";
  return msg + ": another apply is running; wait for it, or if it is gone, rerun with --break-lock";
}

// How far an apply script got, from its markers in `out` (also the output of a script that was stopped):
// "applied 'a', 'b'; 'c' was running when it stopped (it may be partly applied); 2 later changes not attempted".
static std::string ApplyProgress(const NodePlan& plan, const std::string& out, const std::string& pfx) {
  std::vector<std::string> done;
  std::string running;
  size_t not_started = 0;
  for (size_t i = 0; i < plan.changes.size(); ++i) {
    const Change& c = plan.changes[i];
    if (c.kind == Change::Kind::Notify) continue;
    bool started = out.find(pfx + "change:" + std::to_string(i) + "\n") != std::string::npos;
    bool finished = out.find("\n" + pfx + "done:" + std::to_string(i) + ":0\n") != std::string::npos;
    if (finished) done.push_back("'" + ChangeLine(c) + "'");
    else if (started) running = "'" + ChangeLine(c) + "'";
    else ++not_started;
  }
  bool in_handlers = out.find(pfx + "handler:") != std::string::npos;
  std::string text = done.empty() ? "no change was completed" : "applied " + Join(done, ", ");
  if (!running.empty()) text += "; " + running + " was running when it stopped (it may be partly applied)";
  if (in_handlers) text += "; it stopped while running handlers (they stay pending for the next apply)";
  if (not_started) text += "; " + Counted(not_started, "later change", "later changes") + " not attempted";
  return text;
}

std::string ProveFreshLogin(const std::function<std::unique_ptr<Transport>()>& reconnect, int tries,
                            std::chrono::milliseconds first_wait) {
  std::string failure;
  for (int attempt = 1;; ++attempt) {
    bool again = false;
    failure.clear();
    try {
      auto fresh = reconnect();
      RunResult t = fresh->run("true");
      if (!t.ok()) failure = "`true` exited " + std::to_string(t.exit_code) + " over a fresh connection";
    } catch (const TransportError& e) {
      failure = e.what();
      again = e.kind() == TransportError::Kind::Connect || e.kind() == TransportError::Kind::Lost;
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!again || attempt >= tries) return failure;
    std::this_thread::sleep_for(first_wait * (1 << (attempt - 1)));
  }
}

bool ShadowLockContention(const std::string& output) {
  return output.find("cannot lock ") != std::string::npos && output.find("try again later") != std::string::npos;
}

NodeApplyResult ApplyNode(const Inventory& inv, const NodeDef& node, const NodePlan& plan, Transport& transport,
                          const ApplyOptions& opts) {
  NodeApplyResult res;
  res.node = node.name;
  // Nothing to change, nothing held back, and the node's record already says this commit and these settings:
  // no second session (the plan's was the only one), no lock, no rewrite of state.json.
  if (plan.changes.empty() && plan.deferred.empty() && plan.records.empty() &&
      StateRecordCurrent(plan.recorded_state, inv, node, opts))
    return res;
  // `part`: what this round trip runs. The first has every change; after a change failed on shadow-utils' lock,
  // the next has that change and the ones after it (and every handler: none ran yet).
  NodePlan part = plan;
  for (size_t attempt = 0;; ++attempt) {
    std::string nonce = NewNonce();
    ApplyOptions node_opts = opts;
    node_opts.readonly_root = ReadonlyRootOf(inv.settings(node));
    std::string script = BuildApplyScript(part, node_opts, StateJson(inv, node, opts), nonce);
    const std::string pfx = "@@lf-" + nonce + ":";
    RunResult r;
    try {
      r = transport.run_script(script);
    } catch (const TransportError& e) {
      using K = TransportError::Kind;
      if (e.kind() != K::Timeout && e.kind() != K::Interrupted && e.kind() != K::OutputLimit) throw;
      // The script was stopped on the node (its traps release the lock); say how far it got.
      res.status = NodeApplyResult::Status::Failed;
      res.interrupted = e.kind() == K::Interrupted;
      res.error = std::string(e.kind() == K::Interrupted ? "left mid-apply" : "apply stopped") + ": " +
                  ApplyProgress(part, e.partial_out(), pfx) + ". " + e.what() +
                  " Earlier changes stay applied; apply again to finish this node.";
      return res;
    }
    if (auto refusal = LockRefusal(r.out, nonce, node.name, opts.client_host)) {
      res.status = NodeApplyResult::Status::Failed;
      res.error = *refusal;
      return res;
    }
    if (size_t at = r.out.find(pfx + "lock-stale\n"); at != std::string::npos) {
      auto [verdict, li] = LockSection(r.out, at + pfx.size() + 11, pfx);
      res.notes.push_back("took over the stale lock of " + HolderText(li) + ": " + verdict.substr(std::min<size_t>(6, verdict.size())));
    }
    if (size_t at = r.out.find(pfx + "lock-broken\n"); at != std::string::npos) {
      auto [verdict, li] = LockSection(r.out, at + pfx.size() + 12, pfx);
      res.notes.push_back("--break-lock replaced the lock of " + HolderText(li) + " (" + verdict + ")");
    }
    // Walk the change markers to see how far the node got.
    bool retry = false;
    for (size_t i = 0; i < part.changes.size(); ++i) {
      const Change& c = part.changes[i];
      if (c.kind == Change::Kind::Notify) continue;
      std::string start = pfx + "change:" + std::to_string(i) + "\n";
      std::string done = "\n" + pfx + "done:" + std::to_string(i) + ":";
      size_t b = r.out.find(start);
      size_t e = b == std::string::npos ? std::string::npos : r.out.find(done, b);
      if (e == std::string::npos) {
        res.status = NodeApplyResult::Status::Failed;
        res.error = "apply stopped before '" + ChangeLine(c) + "' (exit " + std::to_string(r.exit_code) +
                    (r.err.empty() ? "" : ": " + r.err) + ")";
        return res;
      }
      int rc = std::atoi(r.out.c_str() + e + done.size());
      if (rc != 0) {
        std::string output = r.out.substr(b + start.size(), e - b - start.size());
        for (const auto& secret : c.redact) {
          for (size_t p; !secret.empty() && (p = output.find(secret)) != std::string::npos;)
            output.replace(p, secret.size(), "(secret)");
        }
        while (!output.empty() && output.back() == '\n') output.pop_back();
        const bool contention = ShadowLockContention(output);
        if (contention && attempt < opts.lock_retry_waits.size()) {
          // Transient: nothing of this change happened (shadow-utils takes its lock first). Run it again, and the
          // changes after it, after a wait.
          const auto wait = opts.lock_retry_waits[attempt];
          res.notes.push_back("'" + ChangeLine(c) + "': " + output.substr(0, output.find('\n')) + "; tried again after " +
                              (wait.count() % 1000 ? std::to_string(wait.count()) + " ms"
                                                   : std::to_string(wait.count() / 1000) + " s"));
          NodePlan next = part;
          next.changes.clear();
          for (size_t k = 0; k < part.changes.size(); ++k)
            if (k >= i || part.changes[k].kind == Change::Kind::Notify) next.changes.push_back(part.changes[k]);
          part = std::move(next);
          if (opts.sleep)
            opts.sleep(wait);
          else
            std::this_thread::sleep_for(wait);
          retry = true;
          break;
        }
        res.status = NodeApplyResult::Status::Failed;
        res.error = "'" + ChangeLine(c) + "' failed (exit " + std::to_string(rc) + ")" +
                    (output.empty() ? "" : ": " + output) +
                    (contention ? "; the account files stayed locked by another program through " +
                                      std::to_string(opts.lock_retry_waits.size()) + " retries"
                                : std::string()) +
                    "; earlier changes stay applied, later ones were not attempted; fix the cause and apply again";
        return res;
      }
      ++res.applied;
    }
    if (retry) continue;
    if (r.out.find(pfx + "complete\n") == std::string::npos) {
      res.status = NodeApplyResult::Status::Failed;
      // A failed handler: name it and show its output.
      size_t hd = r.out.rfind(pfx + "hdone:");
      size_t hs = hd == std::string::npos ? hd : r.out.rfind(pfx + "handler:", hd);
      if (hs != std::string::npos) {
        size_t idx = std::strtoul(r.out.c_str() + hs + pfx.size() + 8, nullptr, 10);
        size_t body = r.out.find('\n', hs) + 1;
        std::string output = r.out.substr(body, hd - body);
        while (!output.empty() && output.back() == '\n') output.pop_back();
        std::vector<std::string> names;
        for (const auto& c : plan.changes)
          if (c.kind == Change::Kind::Notify && std::find(names.begin(), names.end(), c.handler) == names.end())
            names.push_back(c.handler);
        res.error = "handler '" + (idx < names.size() ? names[idx] : std::string("?")) + "' failed" +
                    (output.empty() ? "" : ": " + output) + "; it stays pending and runs on the next apply";
        return res;
      }
      res.error = "a handler or the state record failed (exit " + std::to_string(r.exit_code) + "): " +
                  r.out.substr(r.out.rfind(pfx) == std::string::npos ? 0 : r.out.rfind(pfx)) + r.err;
      return res;
    }
    for (const auto& c : plan.changes)
      if (c.kind == Change::Kind::Notify &&
          std::find(res.handlers_run.begin(), res.handlers_run.end(), c.handler) == res.handlers_run.end())
        res.handlers_run.push_back(c.handler);
    for (const auto& c : plan.deferred) res.deferred.push_back(DeferredLine(plan, c));
    size_t non_notify = 0;
    for (const auto& c : plan.changes) non_notify += c.kind != Change::Kind::Notify;
    for (const auto& rec : plan.records) res.notes.push_back("recorded " + rec.what);
    if (non_notify == 0 && res.handlers_run.empty()) {
      res.status = NodeApplyResult::Status::Unchanged;
      return res;
    }
    // Never lock the admin out: a change that asks for it is proven over a fresh connection, and undone if
    // that fails (the current session survives an sshd reload).
    bool check = false;
    for (const auto& c : plan.changes) check |= c.reconnect_check;
    if (check && opts.reconnect) {
      std::string failure = ProveFreshLogin(opts.reconnect);
      if (!failure.empty()) {
        Script undo;
        undo.raw("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        undo.raw("LF_BACKUP=" + ShellQuote(std::string(kStateDir) + "/backup/" + opts.run_id));
        undo.raw(kShellFunctions);
        std::set<std::string> rollbacks;
        std::string what;
        for (const auto& c : plan.changes) {
          if (!c.reconnect_check) continue;
          std::vector<std::string> paths = c.backup_paths;
          if (c.kind == Change::Kind::PutFile) paths.push_back(c.file.path);
          if (c.kind == Change::Kind::Remove) paths.push_back(c.path);
          for (const auto& p : paths) {
            undo.add(Cmd("lf_restore").arg(p));
            what += (what.empty() ? "" : ", ") + p;
          }
          if (paths.empty()) what += (what.empty() ? "" : ", ") + c.summary;
          if (!c.rollback.empty() && rollbacks.insert(c.rollback).second) undo.raw(c.rollback);
        }
        RunResult u = transport.run_script(undo.str());
        res.status = NodeApplyResult::Status::Failed;
        res.error = "could not log in over a fresh connection after changing " + what + " (" + failure + "); " +
                    (u.ok() ? "restored the previous version and reloaded" : "RESTORE FAILED (" + u.err + "), fix it over the open session or the console") +
                    "; check the setting before applying again";
        return res;
      }
    }
    // Prove convergence.
    res.remaining = PlanNode(inv, node, transport, opts.plan);
    if (res.remaining.error.empty() && !res.remaining.changes.empty() && !opts.second_pass &&
        std::any_of(part.changes.begin(), part.changes.end(), [](const Change& c) { return c.reprobe; })) {
      // What this pass made visible (a directory user who resolves now): applied once more, then judged.
      ApplyOptions again = opts;
      again.second_pass = true;
      std::string lines;
      for (const auto& c : res.remaining.changes) lines += (lines.empty() ? "" : "; ") + ChangeLine(c);
      const size_t more = res.remaining.changes.size();
      NodeApplyResult r2 = ApplyNode(inv, node, res.remaining, transport, again);
      r2.applied += res.applied;
      r2.handlers_run.insert(r2.handlers_run.begin(), res.handlers_run.begin(), res.handlers_run.end());
      r2.deferred.insert(r2.deferred.begin(), res.deferred.begin(), res.deferred.end());
      r2.notes.insert(r2.notes.begin(), res.notes.begin(), res.notes.end());
      r2.notes.push_back("a second pass applied " + std::to_string(more) +
                         " change(s) that the first one made visible to the probe: " + lines);
      if (r2.status == NodeApplyResult::Status::Unchanged) r2.status = NodeApplyResult::Status::Changed;
      return r2;
    }
    if (!res.remaining.error.empty() || !res.remaining.empty()) {
      res.status = NodeApplyResult::Status::Failed;
      res.error = !res.remaining.error.empty()
                      ? "re-probe failed: " + res.remaining.error
                      : "not converged: " + std::to_string(res.remaining.changes.size()) +
                            " change(s) still pending after apply, first: " + ChangeLine(res.remaining.changes[0]);
      return res;
    }
    res.status = NodeApplyResult::Status::Changed;
    return res;
  }
}

}  // namespace labfleet
