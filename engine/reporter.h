// The one path to stdout/stderr. Commands describe what happened to the Reporter; in text mode it prints
// for a person, in JSON mode it fills one document that finish() prints whole, so `--format json` is
// complete and parseable and tests can capture every byte through the streams they pass in.
//
// Text mode escapes terminal control sequences: line(), note(), error() and findings() write every control
// character other than \n and \t as an escape (ESC as \x1b, CR as \r, DEL as \x7f, C1 as \u0080..\u009f),
// so text from a node (diffs, stderr, names) cannot retitle the terminal, clear it or overwrite what was
// printed. raw() alone writes bytes as they are (a rendered template, for redirecting into a file). JSON
// output keeps every string exact; the JSON encoder escapes control characters itself.
#pragma once
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/finding.h"

namespace labfleet {

enum class OutputFormat { Text, Json };

// Colour is for people at a terminal only: `--color auto` (the default) turns it on when the stream is a terminal,
// NO_COLOR is unset or empty (https://no-color.org) and TERM is not "dumb"; `always` and `never` force it.
// It is applied after the control-character escaping, so text from a node can never carry its own sequences.
enum class ColorMode { Auto, Always, Never };
bool ColorWanted(ColorMode mode, bool is_terminal, const char* no_color, const char* term);

// What a line is, for its colour: a change that adds (+, green), removes (-, red) or modifies (~, yellow), a
// warning or deferral (!, yellow), a failure (red). Without colour every style prints the same text.
enum class LineStyle { Plain, Add, Remove, Modify, Warn, Fail };

class Reporter {
 public:
  Reporter(OutputFormat format, std::ostream& out, std::ostream& err) : format_(format), out_(out), err_(err) {}
  OutputFormat format() const { return format_; }
  bool json() const { return format_ == OutputFormat::Json; }

  // Text mode: a line on stdout. JSON mode: nothing (put the data into doc() instead).
  void line(std::string_view text, LineStyle style = LineStyle::Plain);
  // Text mode: bytes on stdout as they are, not escaped (rendered templates: inventory text). JSON mode: nothing.
  void raw(std::string_view bytes);
  // Progress and notes for a person, on stderr, text mode only.
  void note(std::string_view text);
  // An error not tied to an inventory location; stderr in text mode, doc()["errors"] in JSON mode.
  void error(std::string_view text);
  // Compiler-style findings in text mode; doc()["findings"] in JSON mode.
  void findings(const Findings& f);

  nlohmann::json& doc() { return doc_; }
  // JSON mode: prints doc() to stdout. Call once at the end of a command.
  void finish();

  std::ostream& out() { return out_; }
  // Colour for stdout and stderr (text mode only); off unless set. RunCli decides with ColorWanted().
  void set_color(bool out, bool err) { color_out_ = out, color_err_ = err; }

 private:
  OutputFormat format_;
  std::ostream& out_;
  std::ostream& err_;
  nlohmann::json doc_ = nlohmann::json::object();
  bool finished_ = false;
  bool color_out_ = false, color_err_ = false;
};

nlohmann::json FindingToJson(const Finding& f);
std::string FindingToText(const Finding& f);  // "file:line:col: error: message [code]"

}  // namespace labfleet
