#include "engine/zstd_stream.h"

#include <zstd.h>

#include <vector>

namespace labfleet {

bool HasZstdMagic(std::string_view head) {
  return head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
         static_cast<unsigned char>(head[1]) == 0xB5 && static_cast<unsigned char>(head[2]) == 0x2F &&
         static_cast<unsigned char>(head[3]) == 0xFD;
}

struct ZstdCheck::Impl {
  ZSTD_DCtx* d = nullptr;
  std::vector<char> out;
  ~Impl() {
    if (d) ZSTD_freeDCtx(d);
  }
};

ZstdCheck::ZstdCheck() : impl_(std::make_unique<Impl>()) {
  impl_->d = ZSTD_createDCtx();
  if (!impl_->d) {
    error_ = "cannot create a zstd decoder (out of memory)";
    return;
  }
  ZSTD_DCtx_setParameter(impl_->d, ZSTD_d_windowLogMax, 27);
  impl_->out.resize(ZSTD_DStreamOutSize());
}

ZstdCheck::~ZstdCheck() = default;

bool ZstdCheck::feed(std::string_view data) {
  if (!error_.empty()) return false;
  if (in_bytes_ == 0 && !data.empty() && data.size() >= 4 && !HasZstdMagic(data)) {
    error_ = "not a zstd stream (no zstd frame magic at the start)";
    return false;
  }
  in_bytes_ += data.size();
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  while (in.pos < in.size) {
    ZSTD_outBuffer out{impl_->out.data(), impl_->out.size(), 0};
    size_t rc = ZSTD_decompressStream(impl_->d, &out, &in);
    if (ZSTD_isError(rc)) {
      error_ = std::string("corrupt zstd stream after ") + std::to_string(in_bytes_ - (in.size - in.pos)) +
               " bytes: " + ZSTD_getErrorName(rc);
      return false;
    }
    out_bytes_ += out.pos;
    frame_open_ = rc != 0;
  }
  return true;
}

bool ZstdCheck::finish() {
  if (!error_.empty()) return false;
  if (in_bytes_ == 0) {
    error_ = "empty stream";
    return false;
  }
  // Output the decoder still holds (the last feed() filled its buffer) is flushed first.
  for (int i = 0; frame_open_ && i < 1 << 20; ++i) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    ZSTD_outBuffer out{impl_->out.data(), impl_->out.size(), 0};
    size_t rc = ZSTD_decompressStream(impl_->d, &out, &in);
    if (ZSTD_isError(rc)) {
      error_ = std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc);
      return false;
    }
    out_bytes_ += out.pos;
    frame_open_ = rc != 0;
    if (out.pos == 0) break;
  }
  if (frame_open_) {
    error_ = "truncated zstd stream: the last frame does not end (" + std::to_string(in_bytes_) + " bytes)";
    return false;
  }
  return true;
}

}  // namespace labfleet
