// The fan-out of one stream to many receivers (fake receivers: a failing one, a slow one, a source that fails),
// the SHA-256 of what passed, the zstd stream check on real `zstd` output, and LocalTransport::run_to.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine/image_ship.h"
#include "engine/local_transport.h"
#include "engine/sha256.h"
#include "engine/zstd_stream.h"
#include "tests/unit/pattern_source.h"

using namespace labfleet;

namespace {

// A receiver that reads everything (optionally slowly, optionally failing after `fail_after` bytes) and hashes it.
struct FakeReceiver {
  uint64_t fail_after = ~uint64_t(0);
  int delay_us = 0;
  std::string hash;
  uint64_t got = 0;
  Receiver fn() {
    return [this](ByteSource& in) {
      Sha256 h;
      char buf[10000];
      for (;;) {
        size_t n = in.read(buf, sizeof buf);
        if (n == 0) break;
        h.update(std::string_view(buf, n));
        got += n;
        if (got > fail_after) return RunResult{1, "", "disk full\n"};
        if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      }
      hash = h.hex();
      return RunResult{0, "", ""};
    };
  }
};

std::string Everything(uint64_t n) {
  testing::PatternSource p(n);
  std::string all(n, '\0');
  p.read(all.data(), n);
  return all;
}

}  // namespace

TEST_SUITE("image-ship") {
  TEST_CASE("FanOut: one read, every receiver gets every byte; the hash is that of the stream") {
    const uint64_t total = 5 << 20;
    FakeReceiver a, b, c;
    c.delay_us = 50;  // a slow one: backpressure, not memory
    testing::PatternSource src(total);
    FanOutResult r = FanOut::Pump(src, {a.fn(), b.fn(), c.fn()});
    CHECK(r.bytes == total);
    CHECK(src.taken() == total);  // read once
    const std::string want = Sha256Hex(Everything(total));
    CHECK(r.sha256 == want);
    for (auto* x : {&a, &b, &c}) {
      CHECK(x->hash == want);
      CHECK(x->got == total);
    }
    for (const auto& o : r.receivers) CHECK(o.ok);
  }

  TEST_CASE("FanOut: a failing receiver fails alone; the others finish") {
    FakeReceiver ok1, bad, ok2;
    bad.fail_after = 100000;
    testing::PatternSource src(3 << 20);
    FanOutResult r = FanOut::Pump(src, {ok1.fn(), bad.fn(), ok2.fn()});
    REQUIRE(r.receivers.size() == 3);
    CHECK(r.receivers[0].ok);
    CHECK_FALSE(r.receivers[1].ok);
    CHECK(r.receivers[1].error.find("disk full") != std::string::npos);
    CHECK(r.receivers[2].ok);
    CHECK(ok1.hash == r.sha256);
    CHECK(ok2.hash == r.sha256);
  }

  TEST_CASE("FanOut: every receiver gone: write() says stop, the source is not read to the end") {
    FakeReceiver bad1, bad2;
    bad1.fail_after = bad2.fail_after = 1000;
    testing::PatternSource src(uint64_t(1) << 30);
    FanOutResult r = FanOut::Pump(src, {bad1.fn(), bad2.fn()});
    CHECK(src.taken() < (uint64_t(64) << 20));
    CHECK_FALSE(r.receivers[0].ok);
    CHECK_FALSE(r.receivers[1].ok);
  }

  TEST_CASE("FanOut: a source that fails makes every copy incomplete, even a receiver that already ended") {
    FakeReceiver a, b;
    FanOut f({a.fn(), b.fn()});
    std::string chunk(70000, 'x');
    CHECK(f.write(chunk.data(), chunk.size()));
    FanOutResult r = f.finish(/*source_ok=*/false);
    CHECK_FALSE(r.receivers[0].ok);
    CHECK_FALSE(r.receivers[1].ok);
    CHECK(r.receivers[0].error.find("incomplete") != std::string::npos);
  }

  TEST_CASE("FanOut: a receiver that exits 0 without reading everything is not a complete copy") {
    Receiver lazy = [](ByteSource& in) {
      char buf[100];
      in.read(buf, sizeof buf);
      return RunResult{0, "", ""};
    };
    testing::PatternSource src(1 << 20);
    FanOutResult r = FanOut::Pump(src, {lazy});
    CHECK_FALSE(r.receivers[0].ok);
    CHECK(r.receivers[0].error.find("stopped reading") != std::string::npos);
  }

  TEST_CASE("FanOut: a corrupted stream has another hash (what the target compares before it keeps anything)") {
    std::string data = Everything(200000);
    FakeReceiver a;
    StringSource s1(data);
    FanOutResult good = FanOut::Pump(s1, {a.fn()});
    data[123456] ^= 1;
    FakeReceiver b;
    StringSource s2(data);
    FanOutResult bad = FanOut::Pump(s2, {b.fn()});
    CHECK(good.sha256 != bad.sha256);
    CHECK(b.hash == bad.sha256);
  }

  TEST_CASE("ZstdCheck: real zstd output passes; truncated, flipped and foreign streams are refused") {
    LocalTransport t;
    struct Collect : ByteSink {
      std::string all;
      bool write(const char* d, size_t n) override {
        all.append(d, n);
        return true;
      }
    } z;
    RunResult r = t.run_to("head -c 3000000 /dev/urandom | zstd -T0 -q -c; printf 'hello' | zstd -q -c", z);
    REQUIRE(r.ok());
    REQUIRE(z.all.size() > 3000000);
    CHECK(HasZstdMagic(z.all));
    {
      ZstdCheck c;
      for (size_t off = 0; off < z.all.size(); off += 77777) c.feed(std::string_view(z.all).substr(off, 77777));
      CHECK(c.finish());
      CHECK(c.decompressed_bytes() == 3000005);
    }
    {
      ZstdCheck c;
      c.feed(std::string_view(z.all).substr(0, z.all.size() / 2));
      CHECK_FALSE(c.finish());
      CHECK(c.error().find("truncated") != std::string::npos);
    }
    {
      std::string flipped = z.all;
      flipped[flipped.size() - 20] ^= 0x55;  // in the small last frame: its content checksum fails
      ZstdCheck c;
      bool fed = c.feed(flipped);
      CHECK_FALSE((fed && c.finish()));
    }
    {
      ZstdCheck c;
      CHECK_FALSE(c.feed("this is not zstd at all"));
    }
  }

  TEST_CASE("LocalTransport::run_to: stdout streamed to the sink, stderr and status kept; a sink that stops stops it") {
    LocalTransport t;
    struct Count : ByteSink {
      uint64_t n = 0;
      uint64_t stop_at = ~uint64_t(0);
      bool write(const char*, size_t k) override {
        n += k;
        return n < stop_at;
      }
    } c;
    t.set_max_output(1 << 20);  // stdout is not bounded by it: it is not kept
    RunResult r = t.run_to("head -c 50000000 /dev/zero; echo oops >&2; exit 3", c);
    CHECK(c.n == 50000000);
    CHECK(r.exit_code == 3);
    CHECK(r.out.empty());
    CHECK(r.err == "oops\n");
    Count s;
    s.stop_at = 1 << 20;
    auto t0 = std::chrono::steady_clock::now();
    RunResult r2 = t.run_to("while :; do head -c 65536 /dev/zero; done", s);
    CHECK(r2.exit_code == 141);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  }
}
