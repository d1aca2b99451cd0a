// A ByteSource of `total` deterministic pseudo-random bytes, made as they are read (never held whole), that
// counts what was taken from it: for streaming tests of the transports.
//
//   PatternSource src(256 << 20);
//   t.stream("sha256sum", src);            // src.taken() == 256 MiB
//   PatternSource(256 << 20).write_to(f);  // the same bytes, into a file (for an independent checksum)
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/transport.h"

namespace labfleet::testing {

class PatternSource : public ByteSource {
 public:
  explicit PatternSource(uint64_t total) : total_(total) {}
  size_t read(char* buf, size_t n) override {
    n = size_t(std::min<uint64_t>(n, total_ - taken_));
    for (size_t i = 0; i < n; ++i) {
      state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
      buf[i] = char(state_ >> 56);
    }
    taken_ += n;
    largest_ = std::max(largest_, n);
    return n;
  }
  uint64_t taken() const { return taken_; }
  size_t largest_read() const { return largest_; }
  // Writes the whole stream to `path` (64 KiB at a time); returns false when the file cannot be written.
  bool write_to(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    char buf[65536];
    bool ok = true;
    while (size_t n = read(buf, sizeof buf)) ok = ok && std::fwrite(buf, 1, n, f) == n;
    return std::fclose(f) == 0 && ok;
  }

 private:
  uint64_t total_, taken_ = 0, state_ = 0x9e3779b97f4a7c15ULL;
  size_t largest_ = 0;
};

// Peak resident memory of this process so far, in KiB (VmHWM of /proc/self/status; 0 if unreadable).
inline long PeakRssKib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

// Whether process `pid` is gone: no such process, or a zombie nobody reaped yet (PID 1 of a container may be
// slow to reap orphans, or never do it).
inline bool ProcessGone(long pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return true;
  char line[512] = {0};
  const bool got = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!got) return true;
  const std::string l(line);
  const auto close = l.rfind(") ");
  return close != std::string::npos && close + 2 < l.size() && (l[close + 2] == 'Z' || l[close + 2] == 'X');
}

}  // namespace labfleet::testing
