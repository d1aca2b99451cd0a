#include "engine/file_probe.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>

#include "engine/sha256.h"
#include "engine/shell.h"
#include "engine/text.h"
#include "engine/textdiff.h"

namespace labfleet {

std::string Octal(unsigned mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

Probe FileProbe(const std::string& path) { return {"file:" + path, BatchedFileProbe({path}).command}; }

// The header line of a "file:<path>" result: "present MODE OWNER GROUP TYPE" or "absent", then, after a tab,
// tab-separated "key=value" facts of the batched probe (size, unread, sha256, unsafe=KIND:OWNER:PATH).
FileState ParseFileProbe(const ProbeResults& results, const std::string& path) {
  FileState st;
  auto it = results.find("file:" + path);
  if (it == results.end()) return st;
  const std::string& out = it->second.out;
  size_t nl = out.find('\n');
  std::string head = out.substr(0, nl);
  std::string extra;
  if (size_t tab = head.find('\t'); tab != std::string::npos) {
    extra = head.substr(tab + 1);
    head.resize(tab);
  }
  for (size_t b = 0; !extra.empty() && b <= extra.size();) {
    size_t e = extra.find('\t', b);
    if (e == std::string::npos) e = extra.size();
    std::string kv = extra.substr(b, e - b);
    b = e + 1;
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (k == "size") {
      st.size = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "unread") {
      st.content_read = false;
      st.unread_reason = v;
    } else if (k == "sha256") {
      st.sha256 = v;
    } else if (k == "unsafe") {
      size_t c1 = v.find(':'), c2 = c1 == std::string::npos ? c1 : v.find(':', c1 + 1);
      if (c2 != std::string::npos) st.unsafe_dirs.push_back({v.substr(0, c1), v.substr(c1 + 1, c2 - c1 - 1), v.substr(c2 + 1)});
    }
  }
  if (head.rfind("present ", 0) != 0) return st;
  st.exists = true;
  char owner[256] = {0}, group[256] = {0}, type[64] = {0};
  unsigned mode = 0;
  if (sscanf(head.c_str() + 8, "%o %255s %255s %63[^\n]", &mode, owner, group, type) >= 3) {
    st.mode = mode;
    st.owner = owner;
    st.group = group;
    st.regular = std::string(type) == "regular file" || std::string(type) == "regular empty file";
  }
  if (nl != std::string::npos) st.content = out.substr(nl + 1);
  if (st.size == 0 && st.content_read) st.size = st.content.size();
  return st;
}

bool IsFileProbe(const Probe& p, std::string* path) {
  if (p.key.rfind("file:", 0) != 0) return false;
  std::string pa = p.key.substr(5);
  if (p.command != FileProbe(pa).command) return false;
  if (path) *path = std::move(pa);
  return true;
}

// stat(1) prints, per path it can lstat: NAME NUL "MODE UID GID INODE SIZE MTIME OWNER GROUP TYPE" NUL; a path
// it cannot stat prints nothing (and an error on stderr, dropped). An empty name (a lone NUL) ends the list. The
// second stat (of the files read as root only, after their read) prints NAME NUL "MODE UID GID INODE SIZE MTIME"
// NUL: the part of the first that says whether a file changed, without the owner names (a name is a passwd
// lookup per file; the first stat's names are what the plan shows).
static const char kBatchStatFormat[] = "%n\\0%a %u %g %i %s %.9Y %U %G %F\\0";
static const char kRecheckStatFormat[] = "%n\\0%a %u %g %i %s %.9Y\\0";

static bool HasControl(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

static std::string ParentOf(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

// Every directory above each path ("/", "/home", "/home/ann" for "/home/ann/.ssh"), each once.
static std::vector<std::string> Ancestors(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& p : paths) {
    if (p.empty() || p[0] != '/') continue;
    std::vector<std::string> chain;
    for (std::string d = ParentOf(p);; d = ParentOf(d)) {
      chain.push_back(d);
      if (d == "/") break;
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it)
      if (seen.insert(*it).second) out.push_back(*it);
  }
  return out;
}

// One pass over $lf_R, the lines "NAME<TAB>TUPLE" of a `stat --printf "$lf_sf"` of the paths of the indexes in
// $lf_y (stat prints in the order of its arguments and skips a path it cannot lstat), matched to those indexes in
// order: sets lf_<VAR><I> to path I's tuple ("" when malformed; unset when it has no line). Linear: each line is
// cut at its tab (names have no tab or newline: such paths never reach the probe), never searched by pattern.
static std::string TuplePass(const std::string& var) {
  return "set -f; IFS=$lf_n; for lf_l in $lf_R; do lf_nm=${lf_l%%\"$lf_t\"*}; lf_m=${lf_l#*\"$lf_t\"}; "
         "case $lf_m in ''|*[!0-9a-f:.]*) lf_m=;; esac; while [ -n \"$lf_y\" ]; do lf_pop; "
         "eval \"f=\\${$((lf_i+1))}\"; "
         "if [ \"$f\" = \"$lf_nm\" ]; then eval \"lf_" + var + "$lf_i=\\$lf_m\"; break; fi; done; done; IFS=$lf_ifs; set +f";
}

// The probe, in sections:
//   stat of each path, NUL                                  (lstat; as in FileProbe's "present" line)
//   the directories above them, one line each, NUL          "DIR\tR" root-only, or "DIR\tU\tTYPE\tOWNER\tUID\tGID\tMODE"
//   the indexes read as root, space-separated, NUL
//   `head -q -c LIMIT` of those files, concatenated         (each min(size, LIMIT) bytes)
//   sha256sum of those larger than LIMIT, NUL
//   stat of the files read as root again, NUL                ("MODE UID GID INODE SIZE MTIME": changed while read?)
//   one line per file below a user's directory: "INDEX\tHEX of at most LIMIT+1 bytes\t" ("INDEX\t+\tSHA256 NAME"
//   when larger) or "INDEX\t!\tREASON" when it cannot be read safely; a later line for an index replaces an
//   earlier one. Those files are read with one setpriv per owner (uid:gid of the nearest directory above that is
//   not root-only), each file still checked as that user (regular, not a link) and bounded by od -N.
Probe BatchedFileProbe(const std::vector<std::string>& all_paths, const std::string& cache_dir_in) {
  // The cache directory is labfleet's own constant (or a unit test's): used only when it is a plain absolute path.
  const std::string cache_dir =
      !cache_dir_in.empty() && cache_dir_in[0] == '/' && !HasControl(cache_dir_in) ? cache_dir_in : "";
  std::vector<std::string> paths;
  for (const auto& p : all_paths)
    if (!HasControl(p) && !p.empty() && p[0] == '/') paths.push_back(p);
  const std::string limit = std::to_string(kMaxProbedFileBytes);
  const std::string b64_limit = std::to_string((kMaxProbedFileBytes + 2) / 3 * 4);
  Script s;
  if (paths.empty()) {
    s.raw("printf '\\0\\0\\0\\0\\0'");
    return {"labfleet:files", s.str()};
  }
  Cmd set("set");
  set.arg("--").args(paths);
  Cmd stat = Cmd("stat").arg("--printf").arg(kBatchStatFormat).arg("--").raw("\"$@\"").raw("2>/dev/null");
  s.add(set).add(stat).raw("printf '\\0'");
  const std::vector<std::string> anc = Ancestors(paths);
  std::vector<std::string> find_args = anc;
  if (!cache_dir.empty()) find_args.push_back(cache_dir);  // its line says whether it is root-only ("\tR")
  s.raw("lf_a=$(" + Cmd("find").args(find_args).raw(
      "-maxdepth 0 \\( -type d -user 0 ! -perm /022 -printf '%p\\tR\\n' \\) -o -printf "
      "'%p\\tU\\t%y\\t%u\\t%U\\t%G\\t%m\\n' 2>/dev/null").str() + ")");
  s.raw("printf '%s\\0' \"$lf_a\"");
  s.raw("lf_n='\n'; lf_t='\t'; lf_u=");
  // The directories that are not root-only, by their index in `anc`: lf_A<J> holds "TYPE\tOWNER\tUID\tGID\tMODE"
  // of anc[J] ("" when root-only or absent); lf_c<I> lists the indexes of the directories above path I, nearest
  // first. Looked up with short strings only: searching the whole find output per path and level (as this did)
  // costs the node's shell more than all the reads as users together.
  {
    std::map<std::string, size_t> at;
    std::string init, cases;
    for (size_t j = 0; j < anc.size(); ++j) {
      at[anc[j]] = j;
      init += " lf_A" + std::to_string(j) + "=";
      cases += ShellQuote(anc[j]) + ") lf_j=" + std::to_string(j) + ";; ";
    }
    for (size_t i = 0; i < paths.size(); ++i) {
      std::string chain;
      for (std::string d = ParentOf(paths[i]);; d = ParentOf(d)) {
        chain += (chain.empty() ? "" : " ") + std::to_string(at.at(d));
        if (d == "/") break;
      }
      init += " lf_c" + std::to_string(i) + "='" + chain + "'";
      // The cache entry's name: the path's SHA-256, so no path text reaches a file name.
      if (!cache_dir.empty()) init += " lf_K" + std::to_string(i) + "=" + Sha256Hex(paths[i]).substr(0, 40);
    }
    s.raw(init.substr(1));
    s.raw("lf_r=$lf_a; while [ -n \"$lf_r\" ]; do lf_l=${lf_r%%\"$lf_n\"*}; case $lf_r in *\"$lf_n\"*) lf_r=${lf_r#*\"$lf_n\"};; "
          "*) lf_r=;; esac; case $lf_l in *\"${lf_t}U$lf_t\"*) lf_d=${lf_l%%\"$lf_t\"*}; lf_j=; case $lf_d in " + cases +
          "esac; [ -z \"$lf_j\" ] || eval \"lf_A$lf_j=\\${lf_l#*\\\"\\${lf_t}U\\$lf_t\\\"}\";; esac; done");
  }
  // lf_up INDEX: sets lf_l to the line of the nearest directory above path INDEX that is not root-only ("" if none).
  s.raw("lf_up() { eval \"lf_ch=\\$lf_c$1\"; lf_l=; for lf_j in $lf_ch; do eval \"lf_l=\\$lf_A$lf_j\"; [ -z \"$lf_l\" ] || return 0; done; }");
  s.raw("lf_i=0; for f in \"$@\"; do lf_up $lf_i; if [ -z \"$lf_l\" ]; then if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then "
        "set -- \"$@\" \"$f\"; printf '%s ' $lf_i; fi; else lf_u=\"$lf_u $lf_i\"; fi; lf_i=$((lf_i+1)); done; printf '\\0'");
  s.raw("shift " + std::to_string(paths.size()));
  s.raw("if [ $# -gt 0 ]; then head -q -c " + limit + " -- \"$@\" 2>/dev/null; find \"$@\" -maxdepth 0 -type f -size +" +
        limit + "c -exec sha256sum -- {} + 2>/dev/null; fi; printf '\\0'");
  // The files read as root ("$@" now), stat-ed again: SplitBatchedFileProbe compares with the first stat.
  s.raw("[ $# -eq 0 ] || " + Cmd("stat").arg("--printf").arg(kRecheckStatFormat).arg("--").raw("\"$@\"").raw("2>/dev/null").str() +
        "; printf '\\0'");
  s.add(set);
  // Files below a user's directory: read as that directory's owner, never as root; ONE setpriv per owner
  // (uid:gid), which reads all of that owner's files (lf_q_UID_GID holds their indexes, lf_g the owners).
  s.raw("lf_s=; command -v setpriv >/dev/null 2>&1 && lf_s=1; lf_g=; lf_C=; lf_W=; lf_hi=; lf_hv=; lf_ifs=\" $lf_t$lf_n\"");
  // lf_qa INDEX UID_GID: queues the file for the read as that owner. lf_pop: lf_i = the first index of the
  // space-separated list lf_y, taken off it ("" when it is empty).
  s.raw("lf_pop() { lf_y=${lf_y# }; lf_i=${lf_y%% *}; case $lf_y in *' '*) lf_y=${lf_y#* };; *) lf_y=;; esac; }");
  s.raw("lf_qa() { case \" $lf_g \" in *\" $2 \"*) ;; *) lf_g=\"$lf_g $2\"; eval \"lf_q_$2=\";; esac; "
        "eval \"lf_q_$2=\\\"\\$lf_q_$2 $1\\\"\"; }");
  if (!cache_dir.empty()) {
    // The probe cache (file_probe.h): lf_C=1 when the directory is root-only (find's line above) and there is
    // something to read as a user. Then ONE stat (lstat of each path; lf_R) gives each path's tuple lf_T<I>
    // "DEV:INO:SIZE:CTIME:MTIME:LINKS:MODE:UID:GID:" (ctime and mtime with 9 decimals), and lf_now the probe's
    // start (the ctime of a file written now in the cache directory).
    // lf_ct TUPLE: lf_z = the tuple's ctime in whole seconds, "" when the tuple is malformed.
    s.raw("lf_D=" + ShellQuote(cache_dir) + R"SH(; lf_ct() { lf_z=; case $1 in *[!0-9a-f:.]*) return 0;; esac; )SH"
          R"SH(lf_z=${1#*:*:*:}; lf_z=${lf_z%%:*}; case $lf_z in *[!0-9.]*|*.*.*|.*) lf_z=;; )SH"
          R"SH(*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) lf_z=${lf_z%.*};; *) lf_z=;; esac; })SH");
    s.raw(R"SH(lf_sf='%n\t%d:%i:%s:%.9Z:%.9Y:%h:%f:%u:%g:\n')SH");
    s.raw(R"SH(if [ -n "$lf_u" ] && [ -n "$lf_s" ]; then case "$lf_n$lf_a$lf_n" in *"$lf_n$lf_D${lf_t}R$lf_n"*) )SH"
          R"SH([ -d "$lf_D" ] && [ ! -L "$lf_D" ] && printf '' 2>/dev/null >"$lf_D/.now" && lf_C=1;; )SH"
          R"SH(*) [ -e "$lf_D" ] || [ -L "$lf_D" ] || mkdir -m 700 "$lf_D" 2>/dev/null;; esac; fi)SH");
    s.raw(R"SH(if [ -n "$lf_C" ]; then lf_v=; for lf_i in $lf_u; do lf_v="$lf_v \"\${$((lf_i+1))}\""; done; )SH"
          R"SH(eval "lf_R=\$(stat --printf \"\$lf_sf\" -- \"\$lf_D/.now\" $lf_v 2>/dev/null)"; )SH"
          R"SH(lf_l=${lf_R%%"$lf_n"*}; case $lf_R in *"$lf_n"*) lf_R=${lf_R#*"$lf_n"};; *) lf_R=;; esac; lf_now=; )SH"
          R"SH(if [ "${lf_l%%"$lf_t"*}" = "$lf_D/.now" ]; then lf_ct "${lf_l#*"$lf_t"}"; lf_now=$lf_z; fi; )SH"
          R"SH([ -n "$lf_now" ] || lf_C=; lf_y=$lf_u; )SH" + TuplePass("T") + "; fi");
  }
  s.raw("for lf_i in $lf_u; do eval \"f=\\${$((lf_i+1))}\"; lf_up $lf_i; lf_r=${lf_l#d$lf_t}; "
        "if [ \"$lf_r\" = \"$lf_l\" ]; then printf '%s\\t!\\tlink\\n' $lf_i; continue; fi; "
        "if [ -z \"$lf_s\" ]; then printf '%s\\t!\\tsetpriv\\n' $lf_i; continue; fi; "
        "lf_r=${lf_r#*$lf_t}; lf_uid=${lf_r%%$lf_t*}; lf_r=${lf_r#*$lf_t}; lf_gid=${lf_r%%$lf_t*}; "
        "case $lf_uid:$lf_gid in *[!0-9:]*|:*|*:) printf '%s\\t!\\towner\\n' $lf_i; continue;; esac; "
        "if [ \"$lf_uid\" = 0 ]; then printf '%s\\t!\\twritable\\n' $lf_i; continue; fi; "
        // Not a regular file as root sees it (the user's .ssh directory itself, a missing file, a link): nothing to
        // read, the same empty record the read as the user would give, without a setpriv.
        "if [ -L \"$f\" ] || [ ! -f \"$f\" ]; then printf '%s\\t\\t\\n' $lf_i; continue; fi; "
        "lf_k=${lf_uid}_$lf_gid; " +
        // A cache candidate: an entry exists for this path; whether it names this reader and this tuple is decided
        // below, for all candidates at once (lf_hi their indexes, lf_hv their entries' names, lf_Y<I> the reader).
        std::string(cache_dir.empty() ? "" :
        "if [ -n \"$lf_C\" ]; then eval \"lf_m=\\$lf_T$lf_i; lf_e=\\$lf_D/\\$lf_K$lf_i\"; "
        "if [ -n \"$lf_m\" ] && [ -f \"$lf_e\" ] && [ ! -L \"$lf_e\" ]; then "
        "lf_hv=\"$lf_hv \\\"\\$lf_D/\\$lf_K$lf_i\\\"\"; lf_hi=\"$lf_hi $lf_i\"; eval \"lf_Y$lf_i=$lf_k\"; continue; fi; fi; ") +
        "lf_qa $lf_i $lf_k; done");
  if (!cache_dir.empty()) {
    // The candidates' entries, ALL read by one `head` (the shell's `read` takes a byte per system call: reading
    // each entry with it cost more than the rest of the probe). An entry is two lines: "UID_GID:TUPLE", then "h"
    // and od's output (hex and spaces); written whole and renamed into place, so `head -q -n 2` gives each
    // entry's two lines in order, and a line never empty. A pair that is not the expected reader and tuple, or
    // not "h" + hex, is a miss: that file is read as its user. Anything out of step (a short or damaged entry)
    // can only turn later pairs into misses; indexes left without a pair are read as their users too.
    s.raw("if [ -n \"$lf_hi\" ]; then eval \"lf_H=\\$(head -q -n 2 -- $lf_hv 2>/dev/null)\"; lf_y=$lf_hi; lf_h1=; "
          "set -f; IFS=$lf_n; for lf_l in $lf_H; do if [ -z \"$lf_h1\" ]; then lf_h1=$lf_l; continue; fi; "
          "lf_pop; "
          "[ -n \"$lf_i\" ] || break; eval \"lf_k=\\$lf_Y$lf_i; lf_m=\\$lf_T$lf_i\"; lf_ok=; "
          "if [ \"$lf_h1\" = \"$lf_k:$lf_m\" ]; then case $lf_l in h*[!0-9a-f\\ ]*) ;; h*) lf_ok=1;; esac; fi; lf_h1=; "
          "IFS=$lf_ifs; if [ -n \"$lf_ok\" ]; then printf '%s\\t' $lf_i; printf '%s' ${lf_l#h}; printf '\\t\\n'; "
          "else lf_qa $lf_i $lf_k; fi; IFS=$lf_n; done; IFS=$lf_ifs; set +f; "
          "for lf_i in $lf_y; do eval \"lf_k=\\$lf_Y$lf_i\"; lf_qa $lf_i $lf_k; done; fi");
  }
  // As the user, for each file in turn: "x", then (if it is a regular file and not a link, checked as the user)
  // od's hex of at most LIMIT+1 bytes on one line; the last file's od is exec'd (no fork). The root shell keeps
  // that output in a variable, appends a final "x", accepts only "x", hex digits, spaces and newlines, and splits
  // it at the x's (field splitting: linear, whatever a file's size), one record per file in order. A user (who
  // can ptrace the process that runs as them) can therefore forge nothing but the records of the files read as
  // them, which they can rewrite anyway; anything malformed marks all of those unread ("garbled").
  const std::string lim1 = std::to_string(kMaxProbedFileBytes + 1);
  const std::string od = "od -An -v -tx1 -w" + lim1 + " -N " + lim1 + " -- \"$1\"";
  s.raw("lf_rd=" + ShellQuote("while [ $# -gt 1 ]; do printf x; [ -f \"$1\" ] && [ ! -L \"$1\" ] && " + od +
                             "; shift; done; printf x; [ -f \"$1\" ] && [ ! -L \"$1\" ] && exec " + od));
  s.raw("lf_ws=\" $lf_n\"; lf_big=" + std::to_string(3 * kMaxProbedFileBytes + 1));
  s.raw("for lf_k in $lf_g; do eval \"lf_x=\\$lf_q_$lf_k\"; lf_v=; for lf_i in $lf_x; do lf_v=\"$lf_v \\\"\\${$((lf_i+1))}\\\"\"; done; "
        "lf_p=\"setpriv --reuid=${lf_k%_*} --regid=${lf_k#*_} --clear-groups --\"; "
        "eval \"lf_b=\\$(\\$lf_p sh -c \\\"\\$lf_rd\\\" sh $lf_v 2>/dev/null)x\"; lf_bad=; lf_y=$lf_x; lf_o=; lf_w=; "
        "case $lf_b in x*) ;; *) lf_bad=1;; esac; case $lf_b in *[!0-9a-fx$lf_ws]*) lf_bad=1;; esac; "
        "if [ -z \"$lf_bad\" ]; then set -f; IFS=x; for lf_c in $lf_b; do IFS=$lf_ifs; "
        "if [ -z \"$lf_o\" ]; then lf_o=1; continue; fi; "
        "lf_pop; "
        "if [ -z \"$lf_i\" ]; then lf_bad=1; break; fi; lf_h=; "
        "if [ ${#lf_c} -gt $lf_big ]; then eval \"f=\\${$((lf_i+1))}\"; lf_h=$($lf_p sha256sum -- \"$f\" 2>/dev/null); lf_c=+; fi; "
        "printf '%s\\t' $lf_i; printf '%s' $lf_c; printf '\\t%.65s\\n' \"$lf_h\"; " +
        // To remember (probe cache): a small file's od line (one line: -w covers the whole file), with its reader.
        std::string(cache_dir.empty() ? "" :
        "if [ -n \"$lf_C\" ] && [ -z \"$lf_h\" ] && [ ${#lf_c} -le " + std::to_string(3 * kMaxCachedProbeBytes + 1) + " ]; then "
        "lf_c=${lf_c%\"$lf_n\"}; case $lf_c in *\"$lf_n\"*) ;; *) eval \"lf_V$lf_i=\\$lf_c; lf_O$lf_i=\\$lf_k\"; "
        "lf_w=\"$lf_w $lf_i\";; esac; fi; ") +
        "done; IFS=$lf_ifs; set +f; fi; "
        "[ -z \"${lf_y# }\" ] || lf_bad=1; [ -n \"$lf_bad\" ] || lf_W=\"$lf_W$lf_w\"; "
        // A later line for an index replaces an earlier one (SplitBatchedFileProbe).
        "if [ -n \"$lf_bad\" ]; then for lf_i in $lf_x; do printf '%s\\t!\\tgarbled\\n' $lf_i; done; fi; done");
  if (!cache_dir.empty()) {
    // Remember what was read as users: only when root's lstat after the reads equals the one before them and the
    // ctime is older than the probe's start by more than 2 s; written to a private directory first, then renamed
    // into place (an entry is never seen half written).
    s.raw("if [ -n \"$lf_W\" ]; then lf_v=; for lf_i in $lf_W; do lf_v=\"$lf_v \\\"\\${$((lf_i+1))}\\\"\"; done; "
          "eval \"lf_R=\\$(stat --printf \\\"\\$lf_sf\\\" -- $lf_v 2>/dev/null)\"; lf_y=$lf_W; " + TuplePass("S") + "; lf_P=; "
          "for lf_i in $lf_W; do eval \"lf_m=\\$lf_S$lf_i; lf_m1=\\$lf_T$lf_i\"; lf_ct \"$lf_m\"; "
          "if [ -n \"$lf_m\" ] && [ -n \"$lf_z\" ] && [ \"$lf_m\" = \"$lf_m1\" ] && [ \"$lf_z\" -lt $((lf_now-2)) ]; then "
          "if [ -z \"$lf_P\" ]; then lf_P=$lf_D/.w$$; mkdir -m 700 \"$lf_P\" 2>/dev/null || { lf_P=; break; }; fi; "
          "eval \"printf '%s\\\\nh%s\\\\n' \\\"\\$lf_O$lf_i:\\$lf_m\\\" \\\"\\$lf_V$lf_i\\\" >\\\"\\$lf_P/\\$lf_K$lf_i\\\"\"; fi; done; "
          "if [ -n \"$lf_P\" ]; then mv -f -- \"$lf_P\"/* \"$lf_D/\" 2>/dev/null; rm -rf -- \"$lf_P\"; fi; fi");
  }
  return {"labfleet:files", s.str()};
}

namespace {
struct StatRecord {
  std::string name, meta;
};
// Reads records up to the empty name that ends the list; false if the text ends first.
bool ReadStatRecords(const std::string& out, size_t& pos, std::vector<StatRecord>& recs) {
  for (;;) {
    size_t z = out.find('\0', pos);
    if (z == std::string::npos) return false;
    std::string name = out.substr(pos, z - pos);
    pos = z + 1;
    if (name.empty()) return true;
    z = out.find('\0', pos);
    if (z == std::string::npos) return false;
    recs.push_back({std::move(name), out.substr(pos, z - pos)});
    pos = z + 1;
  }
}
// The text up to the next NUL (which is consumed).
std::string ReadSection(const std::string& out, size_t& pos, const char* what) {
  size_t z = out.find('\0', pos);
  if (z == std::string::npos) throw std::runtime_error(std::string("batched file probe: ") + what + " cut short");
  std::string s = out.substr(pos, z - pos);
  pos = z + 1;
  return s;
}
// sha256sum's "HASH  NAME" (a name with a backslash or newline: "\HASH  ESCAPED-NAME").
std::pair<std::string, std::string> ParseShaLine(std::string line) {
  bool escaped = !line.empty() && line[0] == '\\';
  if (escaped) line.erase(0, 1);
  if (line.size() < 66 || line.compare(64, 2, "  ") != 0) return {};
  std::string name = line.substr(66);
  if (escaped) {
    std::string un;
    for (size_t i = 0; i < name.size(); ++i) {
      if (name[i] == '\\' && i + 1 < name.size()) {
        ++i;
        un += name[i] == 'n' ? '\n' : name[i];
      } else {
        un += name[i];
      }
    }
    name = un;
  }
  return {line.substr(0, 64), name};
}
int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isxdigit((unsigned char)c)) return false;
  return true;
}
}  // namespace

bool SplitBatchedFileProbe(const std::string& out, const std::vector<std::string>& all_paths, ProbeResults& into) {
  std::vector<std::string> paths;
  for (const auto& p : all_paths)
    if (!HasControl(p) && !p.empty() && p[0] == '/') paths.push_back(p);
  size_t pos = 0;
  std::vector<StatRecord> first, second;
  if (!ReadStatRecords(out, pos, first)) throw std::runtime_error("batched file probe: stat output cut short");
  struct Meta {
    std::string head;     // "MODE OWNER GROUP TYPE", FileProbe's format
    std::string recheck;  // "MODE UID GID INODE SIZE MTIME": what the second stat must print again
    unsigned long long size = 0;
    bool regular = false;
  };
  std::map<std::string, Meta> metas;
  size_t next = 0;  // stat prints in argument order, skipping what it cannot stat
  for (const auto& r : first) {
    while (next < paths.size() && paths[next] != r.name) ++next;
    if (next == paths.size()) throw std::runtime_error("batched file probe: stat printed an unexpected name '" + r.name + "'");
    ++next;
    char mode[16] = {0}, uid[24] = {0}, gid[24] = {0}, mtime[64] = {0}, owner[256] = {0}, group[256] = {0};
    unsigned long long inode = 0, size = 0;
    int changed_at = 0, used = 0;
    if (sscanf(r.meta.c_str(), "%15s %23s %23s %llu %llu %63s%n %255s %255s %n", mode, uid, gid, &inode, &size, mtime,
               &changed_at, owner, group, &used) < 8 ||
        used == 0)
      throw std::runtime_error("batched file probe: unexpected stat line '" + r.meta + "'");
    Meta m;
    std::string type = r.meta.substr(used);
    m.head = std::string(mode) + " " + owner + " " + group + " " + type;
    m.regular = type == "regular file" || type == "regular empty file";
    m.size = size;
    m.recheck = r.meta.substr(0, size_t(changed_at));
    metas[r.name] = std::move(m);
  }
  // The directories above: those that are not root-only.
  std::map<std::string, UnsafeDir> dirs;
  for (const auto& line : SplitLines(ReadSection(out, pos, "directory list"))) {
    std::vector<std::string> f;
    for (size_t b = 0;;) {
      size_t e = line.find('\t', b);
      f.push_back(line.substr(b, e == std::string::npos ? e : e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
    if (f.size() == 2 && f[1] == "R") continue;
    if (f.size() != 7 || f[1] != "U") throw std::runtime_error("batched file probe: unexpected directory line '" + line + "'");
    std::string kind = f[2] == "l" ? "link" : f[2] != "d" ? "notdir" : f[3] != "root" ? "user" : "writable";
    dirs[f[0]] = {kind, f[3], f[0]};
  }
  std::set<size_t> root_read;
  for (const auto& w : SplitWords(ReadSection(out, pos, "index list"), " ")) {
    size_t i = std::strtoul(w.c_str(), nullptr, 10);
    if (i >= paths.size()) throw std::runtime_error("batched file probe: index out of range");
    root_read.insert(i);
  }
  unsigned long long total = 0;
  for (size_t i : root_read) {
    auto it = metas.find(paths[i]);
    if (it == metas.end() || !it->second.regular) return false;  // vanished or changed type since the stat
    total += std::min(it->second.size, kMaxProbedFileBytes);
  }
  if (out.size() - pos < total) return false;
  std::string contents = out.substr(pos, total);
  pos += total;
  std::map<std::string, std::string> hashes;
  for (const auto& line : SplitLines(ReadSection(out, pos, "hash list"))) {
    auto [h, name] = ParseShaLine(line);
    if (!IsHex64(h)) return false;  // contents shorter than the stat said: a file changed while it was read
    hashes[name] = h;
  }
  // The contents of the files read as root were cut by the sizes of the first stat: they must not have changed.
  // Files below a user's directory were read whole, as that user: the user changing them proves nothing, and
  // must not make the node unplannable.
  if (!ReadStatRecords(out, pos, second)) return false;
  std::map<std::string, std::string> second_meta;
  for (const auto& r : second) second_meta[r.name] = r.meta;
  for (size_t i : root_read) {
    auto it = second_meta.find(paths[i]);
    if (it == second_meta.end() || it->second != metas.at(paths[i]).recheck) return false;
  }
  struct UserRead {
    std::string content, sha256, unread;
  };
  std::map<size_t, UserRead> user_reads;
  for (const auto& line : SplitLines(out.substr(pos))) {
    size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos) throw std::runtime_error("batched file probe: unexpected user-read line");
    size_t i = std::strtoul(line.substr(0, t1).c_str(), nullptr, 10);
    if (i >= paths.size()) throw std::runtime_error("batched file probe: index out of range");
    std::string data = line.substr(t1 + 1, t2 - t1 - 1), tail = line.substr(t2 + 1);
    UserRead u;
    if (data == "!") {
      u.unread = tail == "setpriv"    ? "not read: setpriv (util-linux) is not installed on the node, and labfleet "
                                          "reads files in a user's directory only as that user"
                 : tail == "writable" ? "not read: a directory above it is writable by others"
                 : tail == "owner"    ? "not read: the owner of the directory above it is not a plain uid:gid"
                 : tail == "garbled"  ? "not read: the read as the directory's owner printed something od cannot "
                                        "have printed (that user interfered with it)"
                                      : "not read: a directory above it is a symbolic link";
    } else if (data == "+") {
      u.unread = "too large to diff";
      std::string h = !tail.empty() && tail[0] == '\\' ? tail.substr(1, 64) : tail.substr(0, 64);
      if (IsHex64(h)) u.sha256 = h;
    } else {
      // od's bytes as hex digits, which the node's shell joined; written by a process running as the user, so
      // anything else is that user's doing: unread, never a failure of the whole node.
      bool ok = data.size() % 2 == 0;
      u.content.reserve(data.size() / 2);
      for (size_t k = 0; ok && k < data.size(); k += 2) {
        int hi = HexDigit(data[k]), lo = HexDigit(data[k + 1]);
        if (hi < 0 || lo < 0) ok = false;
        else u.content += char(hi * 16 + lo);
      }
      if (!ok)
        u.content.clear(), u.unread = "not read: the read as the directory's owner printed something od cannot "
                                      "have printed (that user interfered with it)";
      else if (u.content.size() > kMaxProbedFileBytes)
        u.content.clear(), u.unread = "too large to diff";
    }
    user_reads[i] = std::move(u);
  }
  size_t off = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string& p = paths[i];
    ProbeOutput po;
    std::string facts;
    auto it = metas.find(p);
    std::string body;
    if (it == metas.end()) {
      po.out = "absent";
    } else {
      po.out = "present " + it->second.head;
      facts += "\tsize=" + std::to_string(it->second.size);
      if (root_read.count(i)) {
        size_t n = std::min(it->second.size, kMaxProbedFileBytes);
        if (it->second.size > kMaxProbedFileBytes) {
          facts += "\tunread=too large to diff: " + std::to_string(it->second.size) + " bytes";
          if (auto h = hashes.find(p); h != hashes.end()) facts += "\tsha256=" + h->second;
        } else {
          body = contents.substr(off, n);
        }
        off += n;
      } else if (auto u = user_reads.find(i); u != user_reads.end() && it->second.regular) {
        if (!u->second.unread.empty()) {
          facts += "\tunread=" + (u->second.unread == "too large to diff"
                                      ? u->second.unread + ": " + std::to_string(it->second.size) + " bytes"
                                      : u->second.unread);
          if (!u->second.sha256.empty()) facts += "\tsha256=" + u->second.sha256;
        } else {
          body = u->second.content;
        }
      }
    }
    for (std::string d = ParentOf(p);; d = ParentOf(d)) {
      if (auto u = dirs.find(d); u != dirs.end())
        facts += "\tunsafe=" + u->second.kind + ":" + u->second.owner + ":" + u->second.path;
      if (d == "/") break;
    }
    po.out += facts + "\n" + body;
    into["file:" + p] = std::move(po);
  }
  for (const auto& p : all_paths)
    if (HasControl(p) || p.empty() || p[0] != '/')
      into["file:" + p] = {0, "absent\tunsafe=path::a path with control characters, or not absolute\n"};
  return true;
}

std::string UnsafeWriteReason(const FileSpec& desired, const FileState& live) {
  // Top down order is not needed for the verdict; name the first offending directory (closest to "/").
  std::vector<UnsafeDir> dirs = live.unsafe_dirs;
  std::sort(dirs.begin(), dirs.end(), [](const UnsafeDir& a, const UnsafeDir& b) { return a.path.size() < b.path.size(); });
  for (const auto& d : dirs) {
    if (d.kind == "path") return "the path has control characters or is not absolute";
    if (d.kind == "link") return d.path + " is a symbolic link (owned by " + d.owner + ")";
    if (d.kind == "notdir") return d.path + " is not a directory";
    if (d.kind == "writable") return d.path + " is writable by its group or by others";
    if (d.kind == "user" && desired.owner == "root")
      return d.path + " belongs to " + d.owner + ", and labfleet writes root's files only below directories that only root can change";
    if (d.kind == "user" && d.owner != desired.owner)
      return d.path + " belongs to " + d.owner + ", not to " + desired.owner + " who is to own the file";
  }
  return "";
}

static std::string Short(const std::string& hash) { return hash.empty() ? "unknown" : hash.substr(0, 12) + "..."; }

DiffResult DiffFile(const FileSpec& desired, const FileState& live, const std::string& what, bool show_diff) {
  DiffResult d;
  if (std::string why = UnsafeWriteReason(desired, live); !why.empty()) {
    d.warnings.push_back("refused: " + what + ": " + why + "; labfleet never writes as root through a path a user can "
                         "change (make the directories root's, or the file's owner's, then plan again)");
    d.noop = "nothing done to " + what + ": refused, " + why;
    return d;
  }
  // Below a user's directory the executor writes as that user (lf_where), who can only create files it owns.
  const bool as_user = !live.unsafe_dirs.empty();
  const std::string want_sha = live.content_read && show_diff ? "" : Sha256Hex(desired.bytes);
  const bool same_content = live.content_read ? live.content == desired.bytes : live.sha256 == want_sha;
  const bool owner_differs = live.owner != desired.owner || live.group != desired.group;
  if (!live.exists || !live.regular || !same_content || (as_user && owner_differs)) {
    Change c;
    c.kind = Change::Kind::PutFile;
    c.file = desired;
    c.sign = live.exists ? '~' : '+';
    c.summary = what;
    if (!live.exists)
      c.reason = "absent";
    else if (!live.regular)
      c.reason = "not a regular file; it is replaced (the old one is not followed, and not kept if it is not a file)";
    else if (same_content)
      c.reason = "owner " + live.owner + ":" + live.group + " -> " + desired.owner + ":" + desired.group +
                 " (rewritten as " + desired.owner + ", since labfleet does not chown inside a user's directory)";
    else if (!live.content_read)
      c.reason = "content differs (" + live.unread_reason + (live.sha256.empty() ? "" : ", sha256 " + Short(live.sha256)) +
                 " -> " + Short(want_sha) + ")";
    else if (!show_diff)
      c.reason = "content differs, secret: sha256 " + Short(Sha256Hex(live.content)) + " -> " + Short(want_sha);
    else
      c.reason = "content differs";
    if (show_diff && live.content_read)
      c.diff = UnifiedDiff(live.exists && live.regular ? live.content : "", desired.bytes,
                           live.exists ? desired.path : "/dev/null", desired.path + " (desired)");
    if (!show_diff) c.secret = true;
    d.changes.push_back(std::move(c));
    return d;
  }
  std::string meta;
  if (live.mode != (desired.mode & 07777)) meta += "mode " + Octal(live.mode) + " -> " + Octal(desired.mode);
  if (owner_differs)
    meta += std::string(meta.empty() ? "" : ", ") + "owner " + live.owner + ":" + live.group + " -> " +
            desired.owner + ":" + desired.group;
  if (!meta.empty()) {
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '~';
    c.summary = what + " (" + meta + ")";
    c.reason = meta;
    c.command = FixMetaCommand(desired);
    d.changes.push_back(std::move(c));
    return d;
  }
  d.noop = "nothing to do because " + what + " is up to date (" + Octal(desired.mode) + " " + desired.owner + ":" +
           desired.group + ")";
  return d;
}

bool LooksSecret(const std::string& path, const std::string& content) {
  auto ends = [&](const char* suf) {
    size_t n = strlen(suf);
    return path.size() >= n && path.compare(path.size() - n, n, suf) == 0;
  };
  std::string base = path.substr(path.rfind('/') + 1);
  if (path == "/etc/shadow" || path == "/etc/gshadow" || path == "/etc/shadow-" || path == "/etc/gshadow-") return true;
  if (ends(".key") || ends("_key") || ends(".pem") || ends(".p12") || ends(".pfx") || ends(".keytab")) return true;
  if (base.rfind("ssh_host_", 0) == 0 && !ends(".pub")) return true;
  if (path.rfind("/etc/wireguard/", 0) == 0 || path.find("/private/") != std::string::npos) return true;
  std::string lower;
  for (char c : content.substr(0, 1 << 20)) lower += char(std::tolower((unsigned char)c));
  for (const char* mark : {"private key-----", "privatekey", "password =", "password=", "token =", "token=",
                           "secret =", "secret="})
    if (lower.find(mark) != std::string::npos) return true;
  return false;
}

std::string FixMetaCommand(const FileSpec& f) {
  return Cmd("lf_fixmeta").arg(f.path).arg(Octal(f.mode)).arg(f.owner).arg(f.group).str();
}

std::optional<DiffResult> RefuseUnreadEdit(const FileState& live, const std::string& what) {
  if (!live.exists || live.content_read) return std::nullopt;
  return Failure(what + " could not be read whole (" + (live.unread_reason.empty() ? "not read" : live.unread_reason) +
                 "), so labfleet cannot edit part of it without losing the rest; nothing was changed. Shrink the "
                 "file or manage it whole with `files:`");
}

}  // namespace labfleet
