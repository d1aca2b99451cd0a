// The shared fact "a file on the node": mode, owner, group and content in one probe, and the shared
// operation "make this file so" (PutFile when content differs, chmod/chown when only metadata differs).
// Used by every module that manages a file (files, hosts, subids, ssh keys, docker, sshd, ...).
#pragma once
#include <string>
#include <vector>

#include "engine/module.h"

namespace labfleet {

struct FileState {
  bool exists = false;
  bool regular = true;  // false for a directory, symlink, device...
  unsigned mode = 0;
  std::string owner, group;
  std::string content;
};

Probe FileProbe(const std::string& path);  // key "file:<path>"
// Pure parser of the probe's output. A missing probe result counts as "absent".
FileState ParseFileProbe(const ProbeResults& results, const std::string& path);

// The planner does not run FileProbe commands one by one (2-3 processes per path): it reads every file a
// node's modules asked for with ONE command of three processes (stat, cat, stat again; GNU coreutils), then
// splits its output back into "file:<path>" results in FileProbe's own format, so ParseFileProbe and the
// modules see no difference.
bool IsFileProbe(const Probe& p, std::string* path = nullptr);  // made by FileProbe (key and command)
Probe BatchedFileProbe(const std::vector<std::string>& paths);  // key "labfleet:files"; paths non-empty
// Pure. Returns false when the files changed while they were read (the second stat differs from the first,
// or the contents are not the sizes the first stat printed): probe again. Throws std::runtime_error on output
// the batched command cannot have printed.
bool SplitBatchedFileProbe(const std::string& out, const std::vector<std::string>& paths, ProbeResults& into);

// Compares desired with live. `what` names the resource in the summary ("file /etc/motd").
// `show_diff` false for secrets. Returns a noop note "nothing to do because ... is up to date" when equal.
DiffResult DiffFile(const FileSpec& desired, const FileState& live, const std::string& what, bool show_diff = true);

std::string Octal(unsigned mode);  // 0644 -> "0644"

}  // namespace labfleet
