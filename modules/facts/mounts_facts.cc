#include "modules/facts/mounts_facts.h"

#include "engine/text.h"

namespace labfleet {



// fstab(5) writes blanks in a field as octal escapes: space \040, tab \011, newline \012, backslash \134.
std::string FstabEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case ' ': out += "\\040"; break;
      case '\t': out += "\\011"; break;
      case '\n': out += "\\012"; break;
      case '\\': out += "\\134"; break;
      default: out += c;
    }
  }
  return out;
}

static bool IsOctal(char c) { return c >= '0' && c <= '7'; }

std::string FstabUnescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) && IsOctal(s[i + 3])) {
      out += char(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string FstabLine(const FstabEntry& e) {
  return FstabEscape(e.source) + " " + FstabEscape(e.target) + " " + FstabEscape(e.type) + " " +
         FstabEscape(e.options) + " " + e.dump + " " + e.pass;
}

// A line of fstab as an entry; nullopt for blank lines, comments and lines that are not entries (fewer than 3
// or more than 6 fields). Missing fields take fstab(5)'s defaults.
std::optional<FstabEntry> ParseFstabLine(std::string_view line) {
  std::vector<std::string> f;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    if (i >= line.size()) break;
    if (f.empty() && line[i] == '#') return std::nullopt;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    f.emplace_back(line.substr(i, j - i));
    i = j;
  }
  if (f.size() < 3 || f.size() > 6) return std::nullopt;
  FstabEntry e;
  e.source = FstabUnescape(f[0]);
  e.target = FstabUnescape(f[1]);
  e.type = FstabUnescape(f[2]);
  e.options = f.size() > 3 ? FstabUnescape(f[3]) : "defaults";
  if (f.size() > 4) e.dump = f[4];
  if (f.size() > 5) e.pass = f[5];
  return e;
}

constexpr const char* kBegin = "# BEGIN labfleet mounts: edits inside are overwritten";
constexpr const char* kEnd = "# END labfleet mounts";
constexpr const char* kBeginPrefix = "# BEGIN labfleet mounts";


static std::string Trimmed(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

FstabView ParseFstab(std::string_view text) {
  FstabView v;
  bool inside = false, done = false;
  size_t pos = 0, lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view raw = text.substr(pos, (nl == std::string_view::npos ? text.size() : nl) - pos);
    ++lineno;
    std::string t = Trimmed(raw);
    if (t.rfind(kBeginPrefix, 0) == 0) {
      if (inside || done) {
        v.error = "/etc/fstab has a second \"" + std::string(kBeginPrefix) + "\" marker at line " +
                  std::to_string(lineno) + " (the first is at line " + std::to_string(v.begin_line) +
                  "); leave one labfleet block in the file";
        return v;
      }
      inside = true;
      v.has_block = true;
      v.begin_line = lineno;
      v.block_from = pos;
    } else if (t.rfind(kEnd, 0) == 0) {
      if (!inside) {
        v.error = "/etc/fstab has \"" + std::string(kEnd) + "\" at line " + std::to_string(lineno) +
                  " without a BEGIN marker before it; remove the stray marker";
        return v;
      }
      inside = false;
      done = true;
      v.block_to = next;
    } else if (inside) {
      if (auto e = ParseFstabLine(raw))
        v.block.push_back(*e);
      else if (!t.empty() && t[0] != '#')
        ++v.block_garbage;
    } else if (auto e = ParseFstabLine(raw)) {
      v.outside.push_back({lineno, std::string(raw), *e});
    }
    pos = next;
  }
  if (inside)
    v.error = "/etc/fstab has \"" + std::string(kBeginPrefix) + "\" at line " + std::to_string(v.begin_line) +
              " but no \"" + kEnd + "\" after it; labfleet will not guess where its block ends: restore the END "
              "line (or remove the block) by hand";
  return v;
}

// The block for `entries` ("" for none).
std::string FstabBlock(const std::vector<FstabEntry>& entries) {
  if (entries.empty()) return "";
  std::string b = std::string(kBegin) + "\n";
  for (const auto& e : entries) b += FstabLine(e) + "\n";
  return b + kEnd + "\n";
}

// `text` with labfleet's block replaced by (or, when it has none, followed by) the block for `entries`; an
// empty list removes the block. Every byte outside the block stays as it was.
std::string FstabWithBlock(std::string_view text, const FstabView& v, const std::vector<FstabEntry>& entries) {
  std::string block = FstabBlock(entries);
  if (v.has_block)
    return std::string(text.substr(0, v.block_from)) + block + std::string(text.substr(v.block_to));
  if (block.empty()) return std::string(text);
  std::string out(text);
  if (!out.empty() && out.back() != '\n') out += "\n";
  return out + block;
}


const LiveMount* FindmntTable::at(const std::string& target) const {
  const LiveMount* found = nullptr;
  for (const auto& m : mounts)
    if (m.target == target) found = &m;
  return found;
}

static int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string FindmntUnescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x' && HexDigit(s[i + 2]) >= 0 && HexDigit(s[i + 3]) >= 0) {
      out += char(HexDigit(s[i + 2]) * 16 + HexDigit(s[i + 3]));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

FindmntTable ParseFindmnt(std::string_view text) {
  FindmntTable t;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, (nl == std::string_view::npos ? text.size() : nl) - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (line.empty()) continue;
    std::vector<std::string_view> f;
    size_t s = 0;
    while (true) {
      size_t sp = line.find(' ', s);
      f.push_back(line.substr(s, sp == std::string_view::npos ? std::string_view::npos : sp - s));
      if (sp == std::string_view::npos) break;
      s = sp + 1;
    }
    if (f.size() != 4 || f[0].empty() || f[0][0] != '/' || f[2].empty()) {
      ++t.skipped;
      continue;
    }
    t.mounts.push_back({FindmntUnescape(f[0]), FindmntUnescape(f[1]), FindmntUnescape(f[2]), FindmntUnescape(f[3])});
  }
  return t;
}


MountPoints ParseMountPoints(std::string_view text) {
  MountPoints p;
  for (const std::string& line : SplitLines(text)) {
    if (line.empty()) continue;
    if (line == "systemd") {
      p.systemd = true;
      continue;
    }
    size_t sp = line.find(' ');
    size_t digits = 0;
    while (digits < line.size() && isdigit((unsigned char)line[digits])) ++digits;
    if (sp == std::string::npos || digits == 0 || digits != sp || digits > 9) {
      ++p.skipped;
      continue;
    }
    size_t idx = std::stoul(line.substr(0, sp));
    std::string rest = line.substr(sp + 1);
    if (rest == "dir" || rest == "missing")
      p.state[idx] = rest;
    else if (rest.rfind("other", 0) == 0)
      p.state[idx] = "other: " + Trimmed(rest.substr(5));
    else
      ++p.skipped;
  }
  return p;
}


MountNowRecords ParseMountNowRecords(std::string_view text) {
  MountNowRecords r;
  for (const std::string& line : SplitLines(text)) {
    if (line.empty()) continue;
    size_t a = line.find(' ');
    size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
    size_t c = b == std::string::npos ? b : line.find(' ', b + 1);
    auto hex16 = [](const std::string& s) {
      if (s.size() != 16) return false;
      for (char ch : s)
        if (HexDigit(ch) < 0) return false;
      return true;
    };
    if (c == std::string::npos || !hex16(line.substr(0, a)) || !hex16(line.substr(a + 1, b - a - 1))) {
      ++r.skipped;
      continue;
    }
    std::string at = line.substr(b + 1, c - b - 1);
    if (at.empty() || at.size() > 18 || at.find_first_not_of("0123456789") != std::string::npos) {
      ++r.skipped;
      continue;
    }
    MountNowRecord rec;
    rec.entry_hash = line.substr(a + 1, b - a - 1);
    rec.at = std::stoll(at);
    rec.message = Trimmed(line.substr(c + 1));
    r.by_target_hash[line.substr(0, a)] = rec;
  }
  return r;
}

// /etc/default/cachefilesd with RUN=yes (Debian's init script and unit start the daemon only then). The last
// uncommented RUN= wins; when it is not yes it becomes RUN=yes, else the first commented "#RUN=..." line is
// uncommented, else RUN=yes is appended. Unchanged (byte for byte) when RUN=yes is already in effect.
std::string CachefilesdRunYes(std::string_view content) {
  std::vector<std::string> lines = SplitLines(content);
  auto value_of = [](const std::string& t) {  // t starts with RUN
    std::string v = Trimmed(t.substr(t.find('=') + 1));
    if (v.size() >= 2 && (v[0] == '"' || v[0] == '\'') && v.back() == v[0]) v = v.substr(1, v.size() - 2);
    return v;
  };
  auto is_run = [](const std::string& t) {
    if (t.rfind("RUN", 0) != 0) return false;
    size_t i = 3;
    while (i < t.size() && (t[i] == ' ' || t[i] == '\t')) ++i;
    return i < t.size() && t[i] == '=';
  };
  int last = -1, commented = -1;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string t = Trimmed(lines[i]);
    if (is_run(t)) last = int(i);
    if (commented < 0 && !t.empty() && t[0] == '#' && is_run(Trimmed(t.substr(1)))) commented = int(i);
  }
  if (last >= 0 && value_of(Trimmed(lines[last])) == "yes") return std::string(content);
  if (last >= 0)
    lines[last] = "RUN=yes";
  else if (commented >= 0)
    lines[commented] = "RUN=yes";
  else
    lines.push_back("RUN=yes");
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Checks labfleet's block as written (not the admin's lines) with findmnt; the executor restores the previous
// /etc/fstab when this fails. Fixed text: the only inputs are the markers and the path above.
std::string FstabVerifyCommand() {
  return std::string("lf_t=$(mktemp) && sed -n '/^") + kBeginPrefix + "/,/^" + kEnd + "/p' " + kFstab +
         " >\"$lf_t\" && findmnt --verify --tab-file \"$lf_t\"; lf_rc=$?; rm -f \"$lf_t\"; [ \"$lf_rc\" -eq 0 ]";
}

}  // namespace labfleet
