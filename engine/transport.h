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
// - put_file() is atomic on the node: temp file in the same directory, fsync, rename; mode and owner set
//   before the rename.
#pragma once
#include <chrono>
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
  enum class Kind { Connect, HostKey, Auth, Timeout, Lost, Other };
  TransportError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

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
  virtual void put_file(const FileSpec& file);
  // Throws TransportError(Other) when the file cannot be read.
  virtual std::string get_file(const std::string& path);
};

}  // namespace labfleet
