#include "engine/stop_signals.h"

#include <signal.h>

namespace labfleet {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

extern "C" void OnStopSignal(int sig) {
  if (g_stop.exchange(true)) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_stop_signal.store(sig);
}

}  // namespace

struct StopSignals::Saved {
  struct sigaction old_int {};
  struct sigaction old_term {};
};

StopSignals::StopSignals() : saved_(new Saved) {
  g_stop = false;
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, &saved_->old_int);
  sigaction(SIGTERM, &sa, &saved_->old_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &saved_->old_int, nullptr);
  sigaction(SIGTERM, &saved_->old_term, nullptr);
  delete saved_;
}

const std::atomic<bool>* StopSignals::flag() const { return &g_stop; }
bool StopSignals::stopped() const { return g_stop.load(); }
int StopSignals::exit_code() const { return 128 + (g_stop_signal.load() ? g_stop_signal.load() : SIGINT); }
std::string StopSignals::name() const { return g_stop_signal.load() == SIGTERM ? "SIGTERM" : "SIGINT"; }

}  // namespace labfleet
