// SIGINT/SIGTERM while a command works on nodes: the one handler every command installs (plan, apply, run,
// image, dashboard).
//
// Contract: while a StopSignals object lives, the first SIGINT or SIGTERM sets flag() (the command starts no new
// node, step or batch; transports given flag() as ConnectOptions::cancel stop the commands in flight on their
// nodes, so node-side traps run); a second one ends labfleet at once (the signal's default action). The
// handler touches only lock-free atomics. No SA_RESTART: a blocking read (a confirmation prompt) returns.
// The destructor restores the previous handlers (RunCli runs inside tests too). One object at a time.
#pragma once
#include <atomic>
#include <string>

namespace labfleet {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  const std::atomic<bool>* flag() const;
  bool stopped() const;
  int exit_code() const;     // 128 + the signal (130 for SIGINT)
  std::string name() const;  // "SIGINT" or "SIGTERM"

 private:
  struct Saved;
  Saved* saved_;
};

}  // namespace labfleet
