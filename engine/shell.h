// The only place shell text is built. Every inventory value enters a command as a quoted word, by
// construction: Cmd("useradd").arg("-c").arg(full_name) can carry quotes, $(), backticks and newlines
// literally. Raw() exists for fixed operators written in C++ source (pipes, redirections), never for data.
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace labfleet {

// POSIX single-quote quoting: the result is one shell word whose value is exactly `s`.
std::string ShellQuote(std::string_view s);

class Cmd {
 public:
  explicit Cmd(std::string_view program) { arg(program); }
  Cmd& arg(std::string_view a) {
    words_.push_back(ShellQuote(a));
    return *this;
  }
  Cmd& args(const std::vector<std::string>& as) {
    for (const auto& a : as) arg(a);
    return *this;
  }
  // A fixed piece of shell syntax from C++ source ("|", "2>/dev/null", "||", ">"), not data.
  Cmd& raw(std::string_view syntax) {
    words_.emplace_back(syntax);
    return *this;
  }
  // Appends another command (already safe) as-is, e.g. after raw("|").
  Cmd& then(const Cmd& other) {
    words_.push_back(other.str());
    return *this;
  }
  std::string str() const;

 private:
  std::vector<std::string> words_;
};

// A script: a sequence of commands, joined by newlines. Built from Cmds and fixed syntax only.
class Script {
 public:
  Script& add(const Cmd& c) {
    lines_.push_back(c.str());
    return *this;
  }
  Script& raw(std::string_view fixed_line) {
    lines_.emplace_back(fixed_line);
    return *this;
  }
  Script& append(const Script& other) {
    lines_.insert(lines_.end(), other.lines_.begin(), other.lines_.end());
    return *this;
  }
  bool empty() const { return lines_.empty(); }
  std::string str() const;

 private:
  std::vector<std::string> lines_;
};

// Base64 (RFC 4648) of arbitrary bytes: file contents travel as `printf %s B64 | base64 -d`.
std::string Base64Encode(std::string_view bytes);
std::string Base64Decode(std::string_view b64, bool* ok = nullptr);

// Shell text defining `lf_rootonly DIR`: true when DIR and every directory above it that exists is a real
// directory owned by root and not writable by group or others (then no user can swap any component, so root may
// write below DIR); else false with LF_WHY naming the offending components. Used by apply scripts (executor.cc)
// and the image scripts (image.cc).
inline constexpr const char* kRootOnlyShellFunction = R"SH(lf_rootonly() {
  lf_d=$1; set --
  while :; do [ -n "$lf_d" ] || lf_d=/; set -- "$@" "$lf_d"; [ "$lf_d" = / ] && break; lf_d=${lf_d%/*}; done
  LF_WHY=$(find "$@" -maxdepth 0 ! \( -type d -user 0 ! -perm /022 \) -printf '%p (%y, owner %u, mode %m) ' 2>/dev/null)
  [ -z "$LF_WHY" ]
}
)SH";

// `cat PATH` by shell builtins alone (no program started: a probe runs in every plan, and each program is a
// fork/exec on the node): the file's lines, a last line without a newline as it is; fails (non-zero, the shell's
// error on stderr) when it cannot be opened. Text files only (sh's read drops NUL bytes); unbounded like cat:
// only for small files labfleet itself writes under root's /var/lib/labfleet.
inline std::string CatBuiltin(std::string_view path) {
  return "{ while IFS= read -r lf_l; do printf '%s\\n' \"$lf_l\"; done; [ -z \"$lf_l\" ] || printf '%s' \"$lf_l\"; } < " +
         ShellQuote(path);
}

}  // namespace labfleet
