// How labfleet reaches a node. Everything the planner and executor do goes through this interface, so
// the same code runs over libssh (SshTransport), on this machine (LocalTransport) and against a
// recording double in unit tests (FakeTransport).
//
// Contracts:
// - run() executes `command` with /bin/sh on the node (as root: implementations add `sudo -n` when the
//   inventory says `ssh.become: sudo`), feeds `stdin_data` to it and closes its stdin, and returns
//   stdout, stderr and the exit status. A non-zero exit is a result, not an error.
// - Connection problems (refused, timeout, host key refused, auth failed, lost connection) throw
//   TransportError with a message that says what to do; they never come back as exit codes.
// - stream() is run() with stdin read from a ByteSource while the command runs, as fast as the command takes
//   it: any size in bounded memory (SshTransport and LocalTransport hold one 64 KiB buffer). When the command
//   stops reading (exits, closes stdin), the source is not read further. Exceptions from the source propagate
//   after the command was stopped (its stdin closed).
// - Output is bounded: stdout and stderr of one command together may hold at most max_output() bytes (default
//   kDefaultMaxOutput, 64 MiB; OutputLimit raises it for one call). Past it the command is stopped on the node
//   and run() throws TransportError(OutputLimit) naming the node and the bound: the controller's memory stays
//   flat whatever a node sends.
// - Stopping a command on the node (at --timeout, past the output bound, on cancel) means its whole process
//   group/session: TERM, up to ~2 s for it to go (so an apply script's traps release its lock), then KILL.
//   SshTransport runs every command under `setsid` (when the node has it) and reads the node-side pid it prints
//   first; the stop goes over a fresh channel of the same session. The error says whether the stop worked.
// - Cancellation: set_cancel(flag); once *flag is true, a command in progress is stopped on the node and run()
//   throws TransportError(Interrupted) within ~0.2 s; later calls throw Interrupted at once.
// - run_script(script) runs shell text with /bin/sh as root on the node, the way the planner's probe, the apply
//   script and the re-probe are run: like run(ScriptRunner(), script) (the default), but the script's stdin is
//   /dev/null and its stderr may be cut to its first 64 KiB. SshTransport runs every script of a run over ONE
//   kept channel per node (engine/ssh_driver.h, docs/transport.md "Sessions"); bounds, timeout, cancel and the
//   stop on the node apply to each script as to run().
// - A TransportError from a command that was stopped (Timeout, OutputLimit, Interrupted) carries the stdout
//   received before the stop (partial_out(), at most max_output() bytes), so a caller can say how far it got.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace labfleet {

struct RunResult {
  int exit_code = 0;
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0; }
};

class TransportError : public std::runtime_error {
 public:
  // OutputLimit: the command sent more than max_output(); Interrupted: cancelled (SIGINT/SIGTERM to labfleet).
  enum class Kind { Connect, HostKey, Auth, Timeout, Lost, Other, OutputLimit, Interrupted };
  TransportError(Kind kind, const std::string& what, std::string partial_out = {})
      : std::runtime_error(what), kind_(kind), partial_out_(std::move(partial_out)) {}
  Kind kind() const { return kind_; }
  // stdout received before the command was stopped (Timeout, OutputLimit, Interrupted); else empty.
  const std::string& partial_out() const { return partial_out_; }

 private:
  Kind kind_;
  std::string partial_out_;
};

// The command that runs a script sent on stdin: sh reads it whole first, so commands in it get EOF on stdin.
std::string ScriptRunner();

// The default bound on one command's stdout + stderr together.
inline constexpr size_t kDefaultMaxOutput = size_t(64) << 20;
// "64 MiB", "1.5 GiB", "1000 bytes": a bound as a person reads it.
std::string ByteCount(size_t bytes);

// Bytes for a command's stdin, produced as they are taken. read() fills at most `n` bytes of `buf` and returns
// how many; 0 means the end (and is returned again if asked again). It may block (e.g. reading a pipe).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(char* buf, size_t n) = 0;
};

// The bytes of a string (not copied: the view must outlive the source).
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string_view bytes) : bytes_(bytes) {}
  size_t read(char* buf, size_t n) override;

 private:
  std::string_view bytes_;
  size_t off_ = 0;
};

class ByteSink;  // at the end of this file

struct FileSpec {
  std::string path;
  std::string bytes;
  unsigned mode = 0644;
  std::string owner = "root";
  std::string group = "root";
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Human name of the endpoint for messages ("asahi (127.0.0.1:40022)").
  virtual std::string describe() const = 0;
  virtual RunResult run(const std::string& command, std::string_view stdin_data = {}) = 0;
  // The default reads `in` whole and calls run() (for doubles); the real transports stream.
  virtual RunResult stream(const std::string& command, ByteSource& in);
  // See the contract above. The default is run(ScriptRunner(), script).
  virtual RunResult run_script(const std::string& script);
  // What connecting had to say for the node's report (a fallback port, a newly recorded host key); "" if nothing.
  virtual std::string notes() const { return ""; }
  // run() with stdout handed to `out` as it arrives instead of kept (see ByteSink, at the end of this file).
  virtual RunResult run_to(const std::string& command, ByteSink& out);

  // The output bound (see the contract above). Prefer OutputLimit for one call.
  void set_max_output(size_t bytes) { max_output_ = bytes; }
  size_t max_output() const { return max_output_; }
  // Not owned; must outlive the transport. nullptr: never cancelled.
  void set_cancel(const std::atomic<bool>* flag) { cancel_ = flag; }
  bool cancelled() const { return cancel_ && cancel_->load(); }

 protected:
  // The TransportError(OutputLimit) every implementation throws.
  [[noreturn]] void throw_output_limit(const std::string& stopped, std::string partial_out) const;
  // The TransportError(Interrupted) of a cancelled call.
  [[noreturn]] void throw_interrupted(const std::string& stopped, std::string partial_out) const;

 private:
  size_t max_output_ = kDefaultMaxOutput;
  const std::atomic<bool>* cancel_ = nullptr;
};

// Raises (or lowers) a transport's output bound for one scope, e.g. a probe that legitimately reads more:
//   { OutputLimit big(t, size_t(1) << 30); t.run("cat /big"); }
class OutputLimit {
 public:
  OutputLimit(Transport& t, size_t bytes) : t_(t), old_(t.max_output()) { t.set_max_output(bytes); }
  ~OutputLimit() { t_.set_max_output(old_); }
  OutputLimit(const OutputLimit&) = delete;
  OutputLimit& operator=(const OutputLimit&) = delete;

 private:
  Transport& t_;
  size_t old_;
};

// Streaming stdout (images: `btrfs send | zstd` read once and fanned out to many nodes).
//
// run_to(command, sink): run() whose stdout is not kept but handed to `sink.write()` chunk by chunk as it arrives,
// in bounded memory (one 64 KiB buffer): RunResult::out stays empty, err is bounded by max_output() as usual, and
// the exit status is returned as usual. No output bound applies to stdout. When write() returns false (the sink
// wants no more: every target failed), or throws, the command is stopped on the node (its channel closed: the
// command sees its stdout vanish, SIGPIPE) and run_to returns what it has (write() false: exit_code 141 and a
// line on err) or rethrows. SshTransport runs it on a fresh channel of the kept session, apart from run()'s path;
// the command timeout applies to the whole transfer. Cancellation as for run().
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual bool write(const char* data, size_t n) = 0;
};

}  // namespace labfleet
