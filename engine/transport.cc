#include "engine/transport.h"

#include <algorithm>
#include <cstring>

#include "engine/shell.h"

namespace labfleet {

size_t StringSource::read(char* buf, size_t n) {
  n = std::min(n, bytes_.size() - off_);
  std::memcpy(buf, bytes_.data() + off_, n);
  off_ += n;
  return n;
}

RunResult Transport::stream(const std::string& command, ByteSource& in) {
  std::string all;
  char buf[65536];
  while (size_t n = in.read(buf, sizeof buf)) all.append(buf, n);
  return run(command, all);
}

// Default implementations over run(); SshTransport may override them with SFTP.
void Transport::put_file(const FileSpec& f) {
  std::string dir = f.path.substr(0, f.path.rfind('/'));
  if (dir.empty()) dir = "/";
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", f.mode & 07777);
  Script s;
  s.raw("set -e");
  s.add(Cmd("mkdir").arg("-p").arg(dir));
  s.raw("t=$(mktemp " + ShellQuote(f.path + ".labfleet.XXXXXX") + ")");
  s.raw("trap 'rm -f \"$t\"' EXIT");
  s.raw("base64 -d > \"$t\"");
  s.raw("chmod " + ShellQuote(mode) + " \"$t\"");
  s.raw("chown " + ShellQuote(f.owner + ":" + f.group) + " \"$t\"");
  s.raw("sync \"$t\" 2>/dev/null || true");
  s.raw("mv -f \"$t\" " + ShellQuote(f.path));
  s.raw("trap - EXIT");
  // The script travels as the command; the content (base64) on stdin.
  RunResult r = run(Cmd("sh").arg("-c").arg(s.str()).str(), Base64Encode(f.bytes));
  if (!r.ok())
    throw TransportError(TransportError::Kind::Other,
                         "cannot write " + f.path + " on " + describe() + ": " + r.err);
}

std::string Transport::get_file(const std::string& path) {
  RunResult r = run(Cmd("cat").arg("--").arg(path).str());
  if (!r.ok())
    throw TransportError(TransportError::Kind::Other, "cannot read " + path + " on " + describe() + ": " + r.err);
  return r.out;
}

}  // namespace labfleet
