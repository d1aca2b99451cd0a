// systemd and boot facts: pure parsers and editors for the services module (and nvidia's persistence daemon).
//
//   systemctl show -p Id,Names,LoadState,ActiveState,SubState,UnitFileState -- UNIT...
//       prints one block of KEY=VALUE lines per unit, in argument order, blocks separated by a blank line
//       (systemctl(1), "show"). A unit that does not exist still gets a block: LoadState=not-found.
//   systemctl get-default         one line, e.g. "multi-user.target"
//   /etc/default/grub             shell assignments; GRUB_CMDLINE_LINUX_DEFAULT is edited in place
//
// Parsers never throw and skip lines they do not understand (counted in `skipped`).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/module.h"

namespace labfleet {

struct UnitState {
  std::string id;                  // the unit's real name (an alias given on the command line resolves to it)
  std::vector<std::string> names;  // Id plus aliases
  std::string load_state;          // loaded | not-found | masked | error | bad-setting
  std::string active_state;        // active | reloading | inactive | failed | activating | deactivating
  std::string sub_state;           // running | exited | dead | failed | ...
  std::string unit_file_state;     // enabled | enabled-runtime | linked | masked | static | disabled | indirect |
                                   // generated | transient | alias | bad | "" (no unit file)
  std::map<std::string, std::string> props;  // every KEY=VALUE of the block

  bool found() const { return !load_state.empty() && load_state != "not-found"; }
  bool masked() const {
    return load_state == "masked" || unit_file_state == "masked" || unit_file_state == "masked-runtime";
  }
  bool active() const { return active_state == "active" || active_state == "reloading" || active_state == "activating"; }
  bool enabled() const { return unit_file_state == "enabled" || unit_file_state == "enabled-runtime"; }
  // static, indirect, generated, transient, alias: `systemctl enable/disable` does not apply.
  bool enable_not_applicable() const {
    return unit_file_state == "static" || unit_file_state == "indirect" || unit_file_state == "generated" ||
           unit_file_state == "transient" || unit_file_state == "alias";
  }
  bool has_name(std::string_view n) const;
};

struct SystemctlShow {
  std::vector<UnitState> units;  // in output order (= argument order)
  int skipped = 0;
  // The block for a unit asked for by `name`: by position when the output has one block per argument,
  // else by Id/Names. nullptr when absent.
  const UnitState* find(const std::vector<std::string>& asked, std::string_view name) const;
};
SystemctlShow ParseSystemctlShow(std::string_view text);

// The properties labfleet asks for, and the batched probe (key "systemctl-show:<units>").
extern const char* const kUnitProperties;  // "Id,Names,LoadState,ActiveState,SubState,UnitFileState"
Probe SystemctlShowProbe(const std::vector<std::string>& units);
Probe SystemctlGetDefaultProbe();  // key "systemctl-get-default"

// "cachefilesd" -> "cachefilesd.service"; a name with a unit suffix stays as is.
std::string UnitName(std::string_view name);
// Unit names: [A-Za-z0-9:_.\\@-]+ with a known suffix after UnitName (no shell or path characters).
bool IsUnitName(std::string_view name);

// ---- GRUB: kernel command-line arguments ----

// Valid kernel argument labfleet writes: no blanks, quotes, $, backquote or backslash.
bool IsKernelArg(std::string_view arg);

struct GrubEdit {
  std::string content;                 // the new /etc/default/grub
  std::vector<std::string> added;      // arguments added or changed (new form)
  std::vector<std::string> removed;    // arguments removed (no longer in the inventory, or replaced)
  std::string error;                   // cannot edit safely (shell expansion in the value, ...)
};
// Ensures every argument of `want` is in GRUB_CMDLINE_LINUX_DEFAULT (an argument KEY=VALUE replaces the
// single existing KEY=... one). Arguments labfleet added earlier (recorded on the marker comment line
// "# labfleet kernel_args: ..." right above) and no longer wanted are removed; anything else on the line is
// kept. The marker line records `want`. Without a GRUB_CMDLINE_LINUX_DEFAULT line, one is appended. When
// nothing is to change, `content` is the input byte for byte.
GrubEdit EditGrubCmdline(std::string_view grub_default, const std::vector<std::string>& want);
// The value of the last GRUB_CMDLINE_LINUX_DEFAULT assignment, unquoted; nullopt when absent.
std::optional<std::string> GrubCmdlineDefault(std::string_view grub_default);
// Arguments of `want` missing from the running kernel's /proc/cmdline.
std::vector<std::string> MissingFromCmdline(std::string_view proc_cmdline, const std::vector<std::string>& want);

// ---- sysctl ----
bool IsSysctlKey(std::string_view key);  // [A-Za-z0-9_.-/]+, with at least one dot or slash
// The /etc/sysctl.d file for `values` (in order), with a header saying labfleet manages it.
std::string SysctlFile(const std::vector<std::pair<std::string, std::string>>& values);

// ---- unit files labfleet writes (services' `unit:`, timers:) ----
//
// Unit-file syntax (systemd.syntax(7)): one KEY=VALUE a line; a line ending in "\" continues on the next one;
// "%" starts a specifier in most values (written "%%" for a literal "%"). ExecStart= (systemd.service(5),
// "Command lines") splits its value into words: a word may be quoted with "..." or '...', C escapes (\\, \",
// \n, \xNN) are decoded inside and outside quotes, "$VAR"/"${VAR}" are expanded ("$$" is a literal "$"), an
// unquoted lone ";" separates commands, and the first word may carry the prefixes @ - : + !.

// Why `value` cannot be written as the value of a one-line unit-file setting, or "" when it can: a control
// character (newline, tab, ...), a trailing backslash (line continuation), leading or trailing blanks (systemd
// strips them, so the plan would never converge).
std::string UnitValueProblem(std::string_view value);
// Every "%" doubled: the value as written, with no specifier expanded.
std::string EscapeSpecifiers(std::string_view value);
// Why `argv` cannot be an ExecStart= command, or "": empty; a word with a control character; argv[0] not an
// absolute path or a plain command name (letters, digits, _ . + -, not starting with a prefix character).
std::string ArgvProblem(const std::vector<std::string>& argv);
// One word with systemd's quoting: unchanged when it has only [A-Za-z0-9_./:=,+@-], else in double quotes
// with \ and " escaped; "%" -> "%%" and "$" -> "$$" everywhere. systemd parses the result back to `word`.
std::string SystemdQuoteWord(std::string_view word);
// The ExecStart= value for `argv` (ArgvProblem(argv) must be ""): the words quoted, joined by one space.
std::string ExecStartValue(const std::vector<std::string>& argv);
// Why `spec` is not an OnCalendar= expression labfleet accepts, or "" when it is. A strict offline pattern, not
// systemd's parser: the shorthands (minutely hourly daily weekly monthly quarterly semiannually yearly
// annually), or "[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]] [UTC]" with at least one part, where weekdays are Mon..Sun
// (3 letters or full, lists with "," and ranges with ".."), and each number component is "*" or a list of
// N, N..M, N/STEP, *\/STEP within its range (month 1-12, day 1-31, hour 0-23, minute and second 0-59).
// Everything it accepts systemd accepts too; the node's `systemd-analyze verify` checks it again at apply.
std::string CalendarProblem(std::string_view spec);
// Shell text for a PutFile precheck: copies the new file "$LF_NEW" into a fresh temporary directory as
// `name`, writes each of `siblings` (unit name, text) beside it, and runs `systemd-analyze verify --man=no` on
// all of them; its status is the verifier's (non-zero also when systemd-analyze is missing), and its output is
// the verifier's messages with the temporary directory left out of the paths. Uses no `exit`.
std::string VerifyUnitPrecheck(const std::string& name, const std::vector<std::pair<std::string, std::string>>& siblings);
// True for a path systemd reads unit text from: a unit file or a drop-in .conf below /etc/systemd/system,
// /run/systemd/system, /usr/local/lib/systemd/system, /lib/systemd/system or /usr/lib/systemd/system.
bool IsUnitTextPath(std::string_view path);

}  // namespace labfleet
