// What a node says about its mounts, as pure parsers and editors (unit tested on raw captured output,
// tests/fixtures/mounts): /etc/fstab and labfleet's block in it, `findmnt`, the mount-point probe, mount_now
// records, /etc/default/cachefilesd. Parsers never throw and skip lines they do not understand (counted in
// `skipped`). The mounts module (modules/mounts.cc) and its tests share these.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace labfleet {

inline constexpr const char* kFstab = "/etc/fstab";

// One line of fstab(5). Fields are stored decoded (octal escapes \040 etc. resolved).
struct FstabEntry {
  std::string source, target, type, options;
  std::string dump = "0", pass = "0";
  bool operator==(const FstabEntry&) const = default;
};

// /etc/fstab split into labfleet's block and everything else.
struct FstabView {
  bool has_block = false;
  size_t block_from = 0, block_to = 0;  // byte range of the block, markers and the END line's newline included
  size_t begin_line = 0;                // 1-based line number of the BEGIN marker
  std::vector<FstabEntry> block;        // entries between the markers, in order
  int block_garbage = 0;                // lines inside the block that are neither entries, comments nor blank
  struct Outside {
    size_t line;  // 1-based
    std::string text;
    FstabEntry entry;
  };
  std::vector<Outside> outside;  // the admin's own entries
  std::string error;             // markers that cannot be trusted (labfleet then writes nothing)
};

// `findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS`: one mount a line, four fields separated by one space, every
// unsafe character hex-escaped (\x20). Lines that do not have that shape are skipped (counted).
struct LiveMount {
  std::string target, source, fstype, options;
};

struct FindmntTable {
  std::vector<LiveMount> mounts;  // in findmnt's order
  int skipped = 0;
  // The mount on top at `target` (the last one listed there); nullptr when nothing is mounted there.
  const LiveMount* at(const std::string& target) const;
};

// The mount-point probe: "INDEX dir", "INDEX missing", "INDEX other TYPE" (stat's %F), and "systemd" when
// the node runs systemd (/run/systemd/system exists).
struct MountPoints {
  std::map<size_t, std::string> state;  // index -> "dir" | "missing" | "other: regular file" ...
  bool systemd = false;
  int skipped = 0;
};

// Records of failed mount_now attempts, /var/lib/labfleet/mount-now/<hash of target>, one line each:
// "<hash of the fstab line> <epoch seconds> <mount's output, newlines flattened>". The probe prints
// "<file name> <that line>".
struct MountNowRecord {
  std::string entry_hash;
  long long at = 0;
  std::string message;
};

struct MountNowRecords {
  std::map<std::string, MountNowRecord> by_target_hash;
  int skipped = 0;
};

// fstab(5) writes blanks in a field as octal escapes: space \040, tab \011, newline \012, backslash \134.
std::string FstabEscape(std::string_view s);
std::string FstabUnescape(std::string_view s);
std::string FstabLine(const FstabEntry& e);                  // one fstab line for `e`, fields escaped
std::optional<FstabEntry> ParseFstabLine(std::string_view line);  // nullopt for comments, blanks, garbage
FstabView ParseFstab(std::string_view text);
// The block for `entries` ("" for none).
std::string FstabBlock(const std::vector<FstabEntry>& entries);
// `text` with labfleet's block replaced by (or, when it has none, followed by) the block for `entries`; an
// empty list removes the block. Every byte outside the block stays as it was.
std::string FstabWithBlock(std::string_view text, const FstabView& v, const std::vector<FstabEntry>& entries);
std::string FindmntUnescape(std::string_view s);  // \x20 -> ' '
FindmntTable ParseFindmnt(std::string_view text);  // findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS
MountPoints ParseMountPoints(std::string_view text);
MountNowRecords ParseMountNowRecords(std::string_view text);
// /etc/default/cachefilesd with RUN=yes (see the definition for which line changes).
std::string CachefilesdRunYes(std::string_view content);
// Checks labfleet's block in /etc/fstab as written (not the admin's lines) with `findmnt --verify`.
std::string FstabVerifyCommand();

}  // namespace labfleet
