// The only user of libzstd. labfleet never compresses images itself (the source node runs `zstd -T0`, so the
// stream is compressed once, where the data is); it checks streams it is handed: an imported FILE.zst is
// decompressed to nowhere before any node receives it, so a truncated or corrupted file is refused up front.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace labfleet {

// Whether `head` starts with the zstd frame magic (28 B5 2F FD); `head` needs at least 4 bytes.
bool HasZstdMagic(std::string_view head);

// Streaming check of a zstd stream: feed() the compressed bytes in order, then finish(). Memory is bounded by the
// decoder's window (at most 128 MiB for `zstd -T0` level 3 streams; windows above 2^27 are refused).
class ZstdCheck {
 public:
  ZstdCheck();
  ~ZstdCheck();
  ZstdCheck(const ZstdCheck&) = delete;
  ZstdCheck& operator=(const ZstdCheck&) = delete;
  // false once the stream is known bad (error() says why); later calls do nothing.
  bool feed(std::string_view compressed);
  // true when everything fed was complete, valid zstd frames (at least one); else error() says why.
  bool finish();
  const std::string& error() const { return error_; }
  uint64_t decompressed_bytes() const { return out_bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string error_;
  uint64_t in_bytes_ = 0, out_bytes_ = 0;
  bool frame_open_ = false;  // a frame started and not yet ended
};

}  // namespace labfleet
