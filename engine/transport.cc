#include "engine/transport.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "engine/shell.h"

namespace labfleet {

size_t StringSource::read(char* buf, size_t n) {
  n = std::min(n, bytes_.size() - off_);
  std::memcpy(buf, bytes_.data() + off_, n);
  off_ += n;
  return n;
}

std::string ByteCount(size_t bytes) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
  double v = double(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == double(long(v)))
    snprintf(buf, sizeof buf, "%ld %s", long(v), units[u]);
  else
    snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

void Transport::throw_output_limit(const std::string& stopped, std::string partial_out) const {
  throw TransportError(TransportError::Kind::OutputLimit,
                       "node " + describe() + " sent more than " + ByteCount(max_output_) +
                           " of output (stdout and stderr) for one command; stopped. " + stopped +
                           " labfleet bounds what it reads from a node; find out what on the node prints so much "
                           "(a huge file, a runaway log) and fix it there.",
                       std::move(partial_out));
}

void Transport::throw_interrupted(const std::string& stopped, std::string partial_out) const {
  throw TransportError(TransportError::Kind::Interrupted, "interrupted: the command on " + describe() +
                                                              " was stopped. " + stopped,
                       std::move(partial_out));
}

std::string ScriptRunner() { return "sh -c 'eval \"$(cat)\"'"; }

RunResult Transport::run_script(const std::string& script) { return run(ScriptRunner(), script); }

RunResult Transport::stream(const std::string& command, ByteSource& in) {
  std::string all;
  char buf[65536];
  while (size_t n = in.read(buf, sizeof buf)) all.append(buf, n);
  return run(command, all);
}

}  // namespace labfleet

namespace labfleet {

RunResult Transport::run_to(const std::string& command, ByteSink& out) {
  RunResult r = run(command);
  if (!r.out.empty() && !out.write(r.out.data(), r.out.size())) {
    r.exit_code = 141;
    r.err += "labfleet: the receiving side took no more output\n";
  }
  r.out.clear();
  return r;
}

}  // namespace labfleet
