// The script driver: how SshTransport runs many scripts over ONE kept SSH channel per node (docs/transport.md,
// "Sessions"). The node runs DriverLoopScript() (a POSIX sh loop); for each script the engine writes
// DriverRequest(): a header line "LENGTH NONCE" and exactly LENGTH bytes of script. The loop runs the script in a
// subshell (stdin /dev/null, stdout straight to the channel, stderr to a private 0700 directory, at most
// kDriverMaxErr bytes kept) and then writes the frame trailer:
//
//   <script stdout>\n@@lfd-NONCE:end RC ERRLEN\n<ERRLEN bytes of stderr>@@lfd-NONCE:fin\n
//
// Strict lockstep: the next request is only written after the previous frame was read whole, so the loop's
// `head -c LENGTH` can never read into the next request, and any byte after a frame's fin line is a protocol
// violation.
//
// ParseDriverFrame is pure and treats the node as hostile: every number is bounded (RC 0..255, ERRLEN <=
// kDriverMaxErr, the trailer line short), anything that is not exactly the trailer after the end marker is
// Malformed with a reason, and the caller stops the loop and fails the node loudly.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace labfleet {

inline constexpr size_t kDriverMaxErr = 65536;  // stderr kept per script (the rest is drained on the node)

// The node-side loop (sh text, run under the transport's setsid/sudo wrapper). Exits 0 on EOF of its stdin,
// 98 on a request header it does not understand, 97 when it cannot create its private directory.
std::string DriverLoopScript();

// The bytes the engine writes for one script. `nonce`: [0-9a-f]{16,64} (fresh per script).
std::string DriverRequest(std::string_view script, std::string_view nonce);

struct DriverFrame {
  enum class State { Incomplete, Complete, Malformed };
  State state = State::Incomplete;
  size_t out_len = 0;       // Complete: the script's stdout is buf[0, out_len)
  int exit_code = 0;        // Complete
  std::string err;          // Complete: the script's stderr (<= kDriverMaxErr bytes)
  std::string why;          // Malformed: what was wrong, for the error message
  size_t search_from = 0;   // Incomplete: pass back as `search_from` next time (where the end marker may start)
};

// Reads the frame at the start of `buf` (everything the channel's stdout delivered since the request).
// `search_from`: the previous call's DriverFrame::search_from (0 first), so a long stdout is scanned once.
DriverFrame ParseDriverFrame(std::string_view buf, std::string_view nonce, size_t search_from = 0);

}  // namespace labfleet
