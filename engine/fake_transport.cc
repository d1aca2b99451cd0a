#include "engine/fake_transport.h"

namespace labfleet {

FakeTransport& FakeTransport::on_exact(std::string command, RunResult r, bool repeat) {
  return on_match([c = std::move(command)](const std::string& cmd) { return cmd == c; }, std::move(r), repeat);
}

FakeTransport& FakeTransport::on_contains(std::string substring, RunResult r, bool repeat) {
  return on_match([s = std::move(substring)](const std::string& cmd) { return cmd.find(s) != std::string::npos; },
                  std::move(r), repeat);
}

FakeTransport& FakeTransport::on_match(Predicate p, RunResult r, bool repeat) {
  std::lock_guard lock(mu_);
  rules_.push_back(Rule{std::move(p), std::move(r), repeat, false, std::nullopt});
  return *this;
}

FakeTransport& FakeTransport::fail_on_contains(std::string substring, TransportError::Kind kind, std::string message,
                                               bool repeat) {
  std::lock_guard lock(mu_);
  Rule rule;
  rule.match = [s = std::move(substring)](const std::string& cmd) { return cmd.find(s) != std::string::npos; };
  rule.repeat = repeat;
  rule.error = std::make_pair(kind, std::move(message));
  rules_.push_back(std::move(rule));
  return *this;
}

RunResult FakeTransport::run(const std::string& command, std::string_view stdin_data) {
  Responder responder;
  {
    std::lock_guard lock(mu_);
    calls_.push_back({command, std::string(stdin_data)});
    for (auto& rule : rules_) {
      if (rule.used || !rule.match(command)) continue;
      if (!rule.repeat) rule.used = true;
      if (rule.error) throw TransportError(rule.error->first, rule.error->second);
      return rule.result;
    }
    if (!responder_) return default_;
    responder = responder_;
  }
  return responder(command, std::string(stdin_data));  // unlocked: it may take a while (a real /bin/sh)
}

std::vector<FakeTransport::Call> FakeTransport::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

std::vector<std::string> FakeTransport::commands() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& c : calls_) out.push_back(c.command);
  return out;
}

size_t FakeTransport::count_containing(std::string_view substring) const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& c : calls_) n += c.command.find(substring) != std::string::npos;
  return n;
}

size_t FakeTransport::unused_rules() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& r : rules_) n += !r.repeat && !r.used;
  return n;
}

void FakeTransport::clear_calls() {
  std::lock_guard lock(mu_);
  calls_.clear();
}

}  // namespace labfleet
