#include "engine/image_ship.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/sha256.h"

namespace labfleet {

namespace {

struct Queue : ByteSource {
  mutable std::mutex m;
  std::condition_variable cv;
  std::deque<std::string> chunks;
  size_t front_off = 0;
  size_t bytes = 0;       // queued, not yet read
  bool end = false;       // no more chunks will come
  bool failed = false;    // the source failed: reads throw
  bool gone = false;      // the receiver stopped reading
  uint64_t taken = 0;

  size_t read(char* buf, size_t n) override {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return !chunks.empty() || end || failed; });
    if (failed) throw SourceFailed();
    if (chunks.empty()) return 0;
    std::string& c = chunks.front();
    size_t k = std::min(n, c.size() - front_off);
    std::memcpy(buf, c.data() + front_off, k);
    front_off += k;
    bytes -= k;
    taken += k;
    if (front_off == c.size()) {
      chunks.pop_front();
      front_off = 0;
    }
    cv.notify_all();
    return k;
  }
};

}  // namespace

struct FanOut::Impl {
  size_t cap;
  std::vector<std::unique_ptr<Queue>> queues;
  std::vector<std::thread> threads;
  std::vector<ReceiverOutcome> outcomes;
  Sha256 hash;
  uint64_t bytes = 0;
  bool finished = false;
};

FanOut::FanOut(std::vector<Receiver> receivers, size_t queue_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->cap = std::max<size_t>(queue_bytes, 65536);
  impl_->outcomes.resize(receivers.size());
  for (size_t i = 0; i < receivers.size(); ++i) impl_->queues.push_back(std::make_unique<Queue>());
  for (size_t i = 0; i < receivers.size(); ++i) {
    impl_->threads.emplace_back([this, i, recv = std::move(receivers[i])] {
      Queue& q = *impl_->queues[i];
      ReceiverOutcome& o = impl_->outcomes[i];
      try {
        o.result = recv(q);
        o.ok = o.result.ok();
        if (!o.ok) {
          std::string e = o.result.err.substr(0, 2000);
          while (!e.empty() && e.back() == '\n') e.pop_back();
          o.error = "exit " + std::to_string(o.result.exit_code) + (e.empty() ? "" : ": " + e);
        }
      } catch (const std::exception& e) {
        o.error = e.what();
      }
      std::lock_guard lock(q.m);
      o.bytes_read = q.taken;
      q.gone = true;
      q.chunks.clear();
      q.bytes = 0;
      q.cv.notify_all();
    });
  }
}

FanOut::~FanOut() {
  if (!impl_->finished) {
    try {
      finish(false);
    } catch (...) {
    }
  }
}

bool FanOut::write(const char* data, size_t n) {
  impl_->hash.update(std::string_view(data, n));
  impl_->bytes += n;
  bool any = false;
  for (auto& qp : impl_->queues) {
    Queue& q = *qp;
    std::unique_lock lock(q.m);
    q.cv.wait(lock, [&] { return q.gone || q.bytes < impl_->cap; });
    if (q.gone) continue;
    q.chunks.emplace_back(data, n);
    q.bytes += n;
    q.cv.notify_all();
    any = true;
  }
  return any;
}

FanOutResult FanOut::finish(bool source_ok) {
  FanOutResult r;
  if (impl_->finished) return r;
  impl_->finished = true;
  for (auto& qp : impl_->queues) {
    std::lock_guard lock(qp->m);
    (source_ok ? qp->end : qp->failed) = true;
    qp->cv.notify_all();
  }
  for (auto& t : impl_->threads) t.join();
  r.sha256 = impl_->hash.hex();
  r.bytes = impl_->bytes;
  r.receivers = std::move(impl_->outcomes);
  for (auto& o : r.receivers) {
    if (!source_ok && o.ok) {
      o.ok = false;
      o.error = "the source stream failed; this copy is incomplete";
    } else if (source_ok && o.ok && o.bytes_read != r.bytes) {
      o.ok = false;  // it exited 0 without reading everything: not the whole stream
      o.error = "it stopped reading after " + std::to_string(o.bytes_read) + " of " + std::to_string(r.bytes) + " bytes";
    }
  }
  return r;
}

std::vector<uint64_t> FanOut::taken() const {
  std::vector<uint64_t> out;
  for (const auto& q : impl_->queues) {
    std::lock_guard lock(q->m);
    out.push_back(q->taken);
  }
  return out;
}

uint64_t FanOut::written() const { return impl_->bytes; }

FanOutResult FanOut::Pump(ByteSource& in, std::vector<Receiver> receivers) {
  FanOut f(std::move(receivers));
  std::vector<char> buf(1 << 16);
  try {
    for (;;) {
      size_t n = in.read(buf.data(), buf.size());
      if (n == 0) break;
      if (!f.write(buf.data(), n)) break;
    }
  } catch (...) {
    f.finish(false);
    throw;
  }
  return f.finish(true);
}

}  // namespace labfleet
