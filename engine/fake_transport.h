// FakeTransport: a recording double for unit tests. Every run() is recorded (command + stdin); responses are
// scripted rules tried in the order they were added: the first rule that matches the command answers and, unless
// added with `repeat`, is used up (FIFO per command). Anything unmatched gets the default response.
//
//   FakeTransport t("n1");
//   t.on_exact("uname -r", {0, "6.1.0\n", ""});
//   t.on_contains("getent passwd", {2, "", ""});
//   t.on_match([](const std::string& c) { return c.starts_with("sh -c"); }, {0, "", ""}, /*repeat=*/true);
//   t.fail_on_contains("reboot", TransportError::Kind::Lost, "connection lost");
//   t.respond([](const std::string& cmd, const std::string& in) { ... });  // answers what no rule matched,
//                                                                           // e.g. the real probe script
//   ... code under test ...; CHECK(t.calls().size() == 2);
#pragma once
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/transport.h"

namespace labfleet {

class FakeTransport : public Transport {
 public:
  struct Call {
    std::string command;
    std::string stdin_data;
  };
  using Predicate = std::function<bool(const std::string& command)>;

  explicit FakeTransport(std::string name = "fake") : name_(std::move(name)) {}

  FakeTransport& on_exact(std::string command, RunResult r, bool repeat = false);
  FakeTransport& on_contains(std::string substring, RunResult r, bool repeat = false);
  FakeTransport& on_match(Predicate p, RunResult r, bool repeat = false);
  // The matching run() throws TransportError(kind, message) instead of answering.
  FakeTransport& fail_on_contains(std::string substring, TransportError::Kind kind, std::string message,
                                  bool repeat = false);
  // Answers every run() no rule matched, from its command and stdin (instead of the default response): a test
  // can answer the script the code under test really sent (tests/unit/module_helpers.h: ProbeResponder).
  using Responder = std::function<RunResult(const std::string& command, const std::string& stdin_data)>;
  FakeTransport& respond(Responder r) {
    std::lock_guard lock(mu_);
    responder_ = std::move(r);
    return *this;
  }
  FakeTransport& set_default(RunResult r) {
    default_ = std::move(r);
    return *this;
  }

  std::string describe() const override { return name_ + " (fake)"; }
  RunResult run(const std::string& command, std::string_view stdin_data = {}) override;

  std::vector<Call> calls() const;
  std::vector<std::string> commands() const;
  // Commands that contain `substring`.
  size_t count_containing(std::string_view substring) const;
  // Scripted rules not used yet (repeat rules never count): a test can assert everything it expected happened.
  size_t unused_rules() const;
  void clear_calls();

 private:
  struct Rule {
    Predicate match;
    RunResult result;
    bool repeat = false;
    bool used = false;
    std::optional<std::pair<TransportError::Kind, std::string>> error;
  };
  std::string name_;
  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::vector<Call> calls_;
  RunResult default_{0, "", ""};
  Responder responder_;
};

}  // namespace labfleet
