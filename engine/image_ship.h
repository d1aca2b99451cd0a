// Fan-out of one byte stream to many receivers (issue 12: an image stream is read ONCE from the source node and
// written to every target at the same time; never recompressed, never resent per target).
//
//   FanOut f({recv_a, recv_b});          // each: RunResult(ByteSource& stdin) — e.g. a target's Transport::stream
//   source.run_to(send_script, f);        // FanOut is the ByteSink of the source's stdout
//   FanOutResult r = f.finish(source_ok); // joins the receivers; r.sha256 = SHA-256 of every byte that passed
//
// Contracts:
// - Each receiver runs on its own thread and reads the stream through its own bounded queue (queue_bytes, default
//   8 MiB): memory is N x queue_bytes whatever the image size. A slow receiver slows the source (backpressure),
//   never grows memory.
// - A receiver that stops reading (returns, throws) is dropped: its queue is discarded and the others go on. When
//   every receiver is gone, write() returns false so the source is stopped.
// - finish(false) (the source failed: exit status, lost connection) makes every receiver's next read throw
//   (SourceFailed): the receiving command is stopped and never sees a clean end of input. A receiver that had
//   already ended is still marked failed: the stream it got was not the whole one.
// - The hash covers exactly the bytes that passed, in order; receivers verify against it before keeping anything.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/transport.h"

namespace labfleet {

using Receiver = std::function<RunResult(ByteSource& in)>;

struct ReceiverOutcome {
  bool ok = false;         // ran to the end of a complete stream and exited 0
  std::string error;       // why not (exception text, or "exit N: stderr")
  RunResult result;        // what the receiving command said (when it returned)
  uint64_t bytes_read = 0; // bytes this receiver took
};

struct FanOutResult {
  std::string sha256;  // of the whole stream as it passed
  uint64_t bytes = 0;
  std::vector<ReceiverOutcome> receivers;  // in constructor order
};

// Thrown by a receiver's ByteSource when the source failed.
struct SourceFailed : std::runtime_error {
  SourceFailed() : std::runtime_error("the source stream failed; this copy is incomplete") {}
};

class FanOut : public ByteSink {
 public:
  explicit FanOut(std::vector<Receiver> receivers, size_t queue_bytes = size_t(8) << 20);
  ~FanOut() override;  // finish(false) if not finished
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;
  bool write(const char* data, size_t n) override;
  FanOutResult finish(bool source_ok);
  // Progress: bytes each receiver has taken so far (constructor order), and bytes written in.
  std::vector<uint64_t> taken() const;
  uint64_t written() const;

  // Copies `in` to the receivers (export/import: a file as the source). Returns finish(true) or, when `in` throws,
  // finish(false) and rethrows.
  static FanOutResult Pump(ByteSource& in, std::vector<Receiver> receivers);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace labfleet
