#include "engine/ssh_driver.h"

#include <algorithm>

namespace labfleet {

// Notes on the loop:
// - `read -r` reads the header byte by byte (sh's read never consumes past the newline) and `head -c` the
//   script; lockstep (docs above) means nothing follows the script in the pipe, so head cannot over-read. The
//   request ends with the eos marker (never a newline), so `$(head -c ...)` loses nothing to the command
//   substitution's trailing-newline strip.
// - Programs per script, as few as sh allows (every one is a fork/exec on the node, docs/transport.md): the two
//   `head -c` (the script, its stderr); `cat` (drain past the bound) only when head read something, `wc` and `cat`
//   (the stderr into the frame) only when there is stderr. The result files are emptied with `: >`, not `rm`.
// - The script must end with "#lfd-eos-NONCE" (DriverRequest adds it): a request cut short (stdin closed
//   midway) is never run.
// - The script runs in a subshell, so its `exit`, traps (the apply script's lock release) and variables stay
//   its own; `$$` in it is this loop's pid, the pid the transport printed first and stops, and the node lock's
//   node_pid. Its stderr goes through `head -c` into a file in a private (0700, mktemp) directory under $TMPDIR or
//   else /run (root-only), else mktemp's default; the rest is drained, never buffered. That reader ignores
//   TERM/INT/HUP: when a stop signals the whole process group, it must outlive the script, whose TERM trap (the
//   apply script's lock release) may still write to stderr; it ends at EOF (or at the stop's SIGKILL).
// - TERM/INT/HUP end the loop through its EXIT trap, which removes the directory.
std::string DriverLoopScript() {
  return "umask 077\n"
         "lf_d=$(mktemp -d \"${TMPDIR:-/run}/labfleet-driver.XXXXXX\" 2>/dev/null || mktemp -d) || exit 97\n"
         "trap 'rm -rf \"$lf_d\"' EXIT\n"
         "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM\n"
         "while IFS= read -r lf_h; do\n"
         "  lf_len=${lf_h%% *}; lf_n=${lf_h#* }\n"
         "  case $lf_len in ''|*[!0-9]*) exit 98;; esac\n"
         "  case $lf_n in ''|*[!0-9a-f]*) exit 98;; esac\n"
         "  [ ${#lf_len} -le 10 ] || exit 98\n"
         "  lf_s=$(head -c \"$lf_len\")\n"
         "  case $lf_s in *\"#lfd-eos-$lf_n\") ;; *) exit 96;; esac\n"
         "  : >\"$lf_d/r\"; : >\"$lf_d/e\"\n"
         "  { { ( unset lf_h lf_n lf_len lf_d; eval \"$lf_s\" ) </dev/null 2>&1 >&3 3>&-; echo $? >\"$lf_d/r\"; } | "
         "{ trap '' HUP INT TERM; head -c " + std::to_string(kDriverMaxErr) + " >\"$lf_d/e\"; "
         "[ -s \"$lf_d/e\" ] && cat >/dev/null; }; } 3>&1\n"
         "  lf_r=255; [ -s \"$lf_d/r\" ] && read -r lf_r <\"$lf_d/r\"\n"
         "  if [ -s \"$lf_d/e\" ]; then\n"
         "    printf '\\n@@lfd-%s:end %s %s\\n' \"$lf_n\" \"$lf_r\" \"$(($(wc -c <\"$lf_d/e\")))\"; cat \"$lf_d/e\"\n"
         "  else printf '\\n@@lfd-%s:end %s 0\\n' \"$lf_n\" \"$lf_r\"; fi\n"
         "  printf '@@lfd-%s:fin\\n' \"$lf_n\"\n"
         "done\n";
}

std::string DriverRequest(std::string_view script, std::string_view nonce) {
  std::string body(script);
  body += "\n#lfd-eos-";
  body += nonce;
  std::string out = std::to_string(body.size()) + " " + std::string(nonce) + "\n";
  out += body;
  return out;
}

// Digits only, at most `max_digits`, value <= max: else false.
static bool BoundedNumber(std::string_view s, size_t max_digits, size_t max, size_t* v) {
  if (s.empty() || s.size() > max_digits) return false;
  size_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + size_t(c - '0');
  }
  if (n > max) return false;
  *v = n;
  return true;
}

static std::string Shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  if (s.size() > 60) out += "...";
  return "\"" + out + "\"";
}

DriverFrame ParseDriverFrame(std::string_view buf, std::string_view nonce, size_t search_from) {
  DriverFrame f;
  auto malformed = [&](std::string why) {
    f.state = DriverFrame::State::Malformed;
    f.why = std::move(why);
    return f;
  };
  const std::string end = "\n@@lfd-" + std::string(nonce) + ":end ";
  const std::string fin = "@@lfd-" + std::string(nonce) + ":fin\n";
  size_t at = buf.find(end, std::min(search_from, buf.size()));
  if (at == std::string_view::npos) {
    // The marker may still be arriving: its start can lie in the last end.size() - 1 bytes.
    f.search_from = buf.size() >= end.size() ? buf.size() - end.size() + 1 : 0;
    return f;
  }
  f.search_from = at;
  // "RC ERRLEN\n": at most 3 + 1 + 6 digits and a space.
  const size_t line_at = at + end.size();
  constexpr size_t kMaxLine = 16;
  size_t nl = buf.find('\n', line_at);
  if (nl == std::string_view::npos) {
    if (buf.size() - line_at > kMaxLine) return malformed("its end line is too long: " + Shown(buf.substr(line_at)));
    return f;
  }
  std::string_view line = buf.substr(line_at, nl - line_at);
  size_t sp = line.find(' ');
  size_t rc = 0, errlen = 0;
  if (sp == std::string_view::npos || !BoundedNumber(line.substr(0, sp), 3, 255, &rc))
    return malformed("its end line does not start with an exit status 0..255: " + Shown(line));
  if (!BoundedNumber(line.substr(sp + 1), 6, kDriverMaxErr, &errlen))
    return malformed("its end line does not give a stderr length 0.." + std::to_string(kDriverMaxErr) + ": " +
                     Shown(line));
  const size_t err_at = nl + 1;
  if (buf.size() < err_at + errlen) return f;
  const size_t fin_at = err_at + errlen;
  std::string_view tail = buf.substr(fin_at);
  if (tail.size() < fin.size()) {
    if (fin.compare(0, tail.size(), tail) != 0) return malformed("its stderr is not followed by the end of the frame: " + Shown(tail));
    return f;
  }
  if (tail.compare(0, fin.size(), fin) != 0)
    return malformed("its stderr is not followed by the end of the frame: " + Shown(tail));
  if (tail.size() > fin.size())
    return malformed(std::to_string(tail.size() - fin.size()) + " bytes followed the end of the frame: " +
                     Shown(tail.substr(fin.size())));
  f.state = DriverFrame::State::Complete;
  f.out_len = at;
  f.exit_code = int(rc);
  f.err = std::string(buf.substr(err_at, errlen));
  return f;
}

}  // namespace labfleet
