// The shared fact "a file on the node": mode, owner, group and content in one probe, and the shared
// operation "make this file so" (PutFile when content differs, chmod/chown when only metadata differs).
// Used by every module that manages a file (files, hosts, subids, ssh keys, docker, sshd, ...).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "engine/module.h"

namespace labfleet {

// A directory above a probed path that a user could change (or that is a link): labfleet never writes as root
// through it. Kinds: "link" (a symbolic link), "notdir" (neither a directory nor a link), "user" (a directory
// owned by `owner`, not root), "writable" (owned by root, but writable by its group or by others).
struct UnsafeDir {
  std::string kind, owner, path;
};

struct FileState {
  bool exists = false;
  bool regular = true;  // false for a directory, symlink, device...
  unsigned mode = 0;
  std::string owner, group;
  std::string content;
  // What the batched probe adds (absent from hand-written "present ..." fixtures, which mean: read in full).
  unsigned long long size = 0;
  bool content_read = true;   // false: the content was not read (too large, or no safe way to read it)
  std::string unread_reason;  // why not, e.g. "too large to diff: 1073741824 bytes"
  std::string sha256;         // of the content, when it was too large to read but could be hashed
  std::vector<UnsafeDir> unsafe_dirs;  // directories above the path that are not root-only, top down
};

// The largest file the probe reads into the plan; a larger one is compared by SHA-256 and never diffed.
constexpr unsigned long long kMaxProbedFileBytes = 1 << 20;

// key "file:<path>". The command is the batched probe of that one path: the planner always reads files through
// BatchedFileProbe and SplitBatchedFileProbe, which turn the output into FileProbe's result format.
Probe FileProbe(const std::string& path);
// Pure parser of a "file:<path>" result. A missing probe result counts as "absent".
FileState ParseFileProbe(const ProbeResults& results, const std::string& path);

// The planner reads every file a node's modules asked for with ONE command (stat, find of the directories
// above them, one `head` for the files below root-only directories, stat again; GNU coreutils and findutils),
// then splits its output back into "file:<path>" results, so ParseFileProbe and the modules see no difference.
// Contract, for a node whose users are hostile:
// - a file is read as root only when every directory above it is root's and not writable by group or others
//   (nobody else can swap a component), and only if it is a regular file (not a link, fifo or device);
// - a file below a directory a user owns is read AS THAT USER (setpriv with the directory owner's uid and gid,
//   no groups): a planted link can only show what that user could read anyway. ONE setpriv per such owner reads
//   all of that owner's files (each checked as the user: a regular file, not a link); what that process prints
//   is kept by the root shell and accepted only as od's hex, so a user can at most falsify the records of the
//   files read as them (which they can rewrite anyway), never another path's;
// - at most kMaxProbedFileBytes of each file is read; a larger file is hashed (sha256sum), never held whole;
// - paths with control characters are never put in the command: they come back absent, with an UnsafeDir of
//   kind "path" saying so (validate refuses them first).
bool IsFileProbe(const Probe& p, std::string* path = nullptr);  // made by FileProbe (key and command)
// The probe cache (`cache_dir`, "" = none; the planner passes kProbeCacheDir): a root-only directory on the node
// that remembers, for a file read AS ITS USER, root's lstat of it (device, inode, size, ctime and mtime in ns,
// links, mode, uid, gid) with the reader's uid:gid and what the read gave. A later probe that finds the same
// tuple takes the remembered record instead of reading again (no setpriv): the content of an inode cannot change
// without its ctime changing, and nobody but root can set a ctime. Remembered only when root's lstat before and
// after the read agree and the ctime is at least 3 s older than the probe's start (a write in the same clock tick
// as the ctime would not move it), and only for a file of at most kMaxCachedProbeBytes. So a hit gives what a read
// as that user would give; the one thing a user can forge with it is what they can forge anyway: the records of
// files read as them. The directory is used only when root owns it and nobody else may write it (it sits in
// /run: lost at reboot); it is created (0700) by the first probe that reads as a user. Entries are never pruned
// (one per path ever probed, at most ~3 x kMaxCachedProbeBytes each).
constexpr const char kProbeCacheDir[] = "/run/labfleet-probe-cache";
constexpr unsigned long long kMaxCachedProbeBytes = 8192;
Probe BatchedFileProbe(const std::vector<std::string>& paths, const std::string& cache_dir = "");  // key "labfleet:files"; paths non-empty
// Pure. Returns false when the root-read files changed while they were read (the second stat differs from the
// first): probe again. Throws std::runtime_error on output the batched command cannot have printed.
bool SplitBatchedFileProbe(const std::string& out, const std::vector<std::string>& paths, ProbeResults& into);

// Why root must not write `desired.path` as `desired.owner` given what the probe saw above it, or "" when it is
// safe: every directory above is root-only (written as root), or every one that is not is a real directory of
// `desired.owner` itself, a user (written as that user, so a planted link gains nothing).
std::string UnsafeWriteReason(const FileSpec& desired, const FileState& live);

// Compares desired with live. `what` names the resource in the summary ("file /etc/motd").
// `show_diff` false for secrets: the plan shows only "(content differs, secret: sha256 a1b2... -> c3d4...)".
// Returns a noop note "nothing to do because ... is up to date" when equal. A path that UnsafeWriteReason
// refuses gets no change: a warning "refused: ..." and a noop note that say why.
DiffResult DiffFile(const FileSpec& desired, const FileState& live, const std::string& what, bool show_diff = true);

// A file whose content must never be printed (plan, apply, JSON): a sensitive path (/etc/shadow, /etc/gshadow,
// ssh host keys, *.key, *_key, *.pem, *.p12, anything under /etc/wireguard or a "private" directory) or content
// that holds a private key ("PRIVATE KEY-----", WireGuard "PrivateKey", "password =" / "token =" lines).
bool LooksSecret(const std::string& path, const std::string& content);

// The apply-script command that sets a file's mode and owner without following a link or a directory a user
// controls (the executor's lf_fixmeta: as root below root-only directories, else as the file's owner).
std::string FixMetaCommand(const FileSpec& f);

// A module that edits part of a live file (a managed block, a line) needs all of its current content: when the
// probe did not read it (larger than kMaxProbedFileBytes, or no safe way to read it), writing the edited text
// would drop the rest of the file. Returns the Failure that says so, naming `what`; nullopt when it can edit.
std::optional<DiffResult> RefuseUnreadEdit(const FileState& live, const std::string& what);

std::string Octal(unsigned mode);  // 0644 -> "0644"

}  // namespace labfleet
