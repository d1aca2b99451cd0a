// LocalTransport: runs commands on this machine (`connection: local` nodes) with /bin/sh -c, the same
// contract as SshTransport: stdin fed then closed, stdout/stderr captured without deadlock and bounded
// (max_output()), a command timeout, an output bound and cancellation after which the command's whole process
// group is stopped (SIGTERM, up to 2 s, SIGKILL) and TransportError(Timeout | OutputLimit | Interrupted) is thrown.
#pragma once
#include <string>

#include "engine/transport.h"

namespace labfleet {

class LocalTransport : public Transport {
 public:
  // `become_sudo`: wrap commands as `sudo -n sh -c ...` (only when not already root).
  explicit LocalTransport(std::string name = "localhost", int command_timeout_s = 300, bool become_sudo = false);
  std::string describe() const override;
  RunResult run(const std::string& command, std::string_view stdin_data = {}) override;
  RunResult stream(const std::string& command, ByteSource& in) override;
  RunResult run_to(const std::string& command, ByteSink& out) override;

 private:
  std::string name_;
  int command_timeout_s_;
  bool become_sudo_;
};

// `sudo -n sh -c <command>`: how every transport runs a command as root for `ssh.become: sudo`.
std::string WrapSudo(const std::string& command);
// True when `r` is sudo refusing to run without a password/terminal (so the transport can throw Auth).
bool IsSudoPasswordRefusal(const RunResult& r);

}  // namespace labfleet
