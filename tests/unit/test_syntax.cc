// engine/syntax.h on hostile strings: control characters of every kind, URLs, SSH public keys with options
// and injected lines, paths with "..", NUL and newlines, systemd escaping, host names, GECOS, password hashes.
#include <doctest/doctest.h>

#include <string>

#include "engine/syntax.h"

using namespace labfleet;
using namespace std::string_literals;

namespace {

const char* kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4XfzBjbhLT8kuNKAnbnTmasdRStS7JwTXIfn8TkewI a@laptop";
const char* kKeyData = "AAAAC3NzaC1lZDI1NTE5AAAAIB4XfzBjbhLT8kuNKAnbnTmasdRStS7JwTXIfn8TkewI";

std::string Code(const SyntaxResult& r) { return r ? r->code : ""; }

std::string UrlCode(const std::string& s, std::vector<std::string> schemes = {"http", "https"}) {
  SyntaxError e;
  return ParseUrl(s, schemes, &e) ? "" : e.code;
}

std::string KeyCode(const std::string& s) {
  SyntaxError e;
  return ParseSshPublicKey(s, &e) ? "" : e.code;
}

}  // namespace

TEST_SUITE("syntax") {
  TEST_CASE("control characters: C0, NUL, DEL, C1 (UTF-8 and raw) are found; UTF-8 text is not") {
    CHECK(FindControl("plain text") == std::string::npos);
    CHECK(FindControl("Kyōko Müller, 東京") == std::string::npos);
    CHECK(FindControl("a\nb") == 1);
    CHECK(FindControl("ab\r") == 2);
    CHECK(FindControl("a\tb") == 1);
    CHECK(FindControl("a\0b"s) == 1);
    CHECK(FindControl("a\x7f") == 1);
    CHECK(FindControl("x\x1b[2J") == 1);
    CHECK(FindControl("x\xc2\x9b" "2J") == 1);  // U+009B, CSI as UTF-8
    CHECK(FindControl("x\x9b" "2J") == 1);      // a raw C1 byte
    CHECK(FindControl("\xc2\xa0") == std::string::npos);  // U+00A0 is printable
    CHECK(Code(CheckNoControl("fine")) == "");
    auto e = CheckNoControl("http://p:3128\nExecStartPre=/bin/sh -c id");
    REQUIRE(e);
    CHECK(e->code == "control-character");
    CHECK(e->what.find("a newline (\\n) at character 14") != std::string::npos);
  }

  TEST_CASE("EscapeControls: escapes for terminals, keeps UTF-8, optionally keeps layout") {
    CHECK(EscapeControls("\x1b]0;pwned\x07 and \x1b[2J") == "\\x1b]0;pwned\\x07 and \\x1b[2J");
    CHECK(EscapeControls("a\nb\tc\rd") == "a\\nb\\tc\\rd");
    CHECK(EscapeControls("a\nb\tc\rd", true) == "a\nb\tc\\rd");
    CHECK(EscapeControls("\x7f\xc2\x9b\x9b") == "\\x7f\\u009b\\x9b");
    CHECK(EscapeControls("naïve → ok") == "naïve → ok");
    CHECK(EscapeControls("a\\b", false, true) == "a\\\\b");
    CHECK(EscapeControls("nul\0"s) == "nul\\0");
  }

  TEST_CASE("CheckOneWord: blanks and control characters") {
    CHECK(Code(CheckOneWord("nfsvers=4.2")) == "");
    CHECK(Code(CheckOneWord("rw,x y")) == "blank");
    CHECK(Code(CheckOneWord("rw\tx")) == "control-character");
  }

  TEST_CASE("NormalizeAbsolutePath: normalises, refuses '..', NUL, newline, relative") {
    CHECK(NormalizeAbsolutePath("/etc//motd").path == "/etc/motd");
    CHECK(NormalizeAbsolutePath("/etc/./x/").path == "/etc/x");
    CHECK(NormalizeAbsolutePath("/").path == "/");
    CHECK(!NormalizeAbsolutePath("/etc/motd").error);
    CHECK(Code(NormalizeAbsolutePath("/home/a/../../etc/shadow").error) == "unsafe-path");
    CHECK(Code(NormalizeAbsolutePath("/srv/..").error) == "unsafe-path");
    CHECK(Code(NormalizeAbsolutePath("/etc/motd\0/etc/shadow"s).error) == "control-character");
    CHECK(Code(NormalizeAbsolutePath("/etc/a\n/etc/b").error) == "control-character");
    CHECK(Code(NormalizeAbsolutePath("etc/motd").error) == "path-not-absolute");
    CHECK(Code(NormalizeAbsolutePath("").error) == "path-not-absolute");
    CHECK(NormalizeAbsolutePath("/srv/..data").path == "/srv/..data");  // a name, not a component
  }

  TEST_CASE("ParseUrl: scheme, host, port, path; no blanks, quotes, controls") {
    SyntaxError e;
    auto u = ParseUrl("http://user:p%40ss@proxy.lab:3128/x?y=1", {"http", "https"}, &e);
    REQUIRE(u);
    CHECK(u->scheme == "http");
    CHECK(u->userinfo == "user:p%40ss");
    CHECK(u->host == "proxy.lab");
    CHECK(u->port == 3128);
    CHECK(u->path == "/x?y=1");
    auto v6 = ParseUrl("https://[fd00::1]:8443", {"https"}, &e);
    REQUIRE(v6);
    CHECK(v6->host == "fd00::1");
    CHECK(v6->port == 8443);
    CHECK(UrlCode("http://10.0.1.68:8889") == "");
    CHECK(UrlCode("file:/srv/mirror", {"file"}) == "");
    CHECK(UrlCode("file:///srv/mirror", {"file"}) == "");
    CHECK(UrlCode("http://p:3128\nExecStartPre=/bin/sh") == "control-character");
    CHECK(UrlCode("http://p:3128\r") == "control-character");
    CHECK(UrlCode("http://p:3128 x") == "invalid-url");
    CHECK(UrlCode("http://p:3128\"x") == "invalid-url");
    CHECK(UrlCode("http://p/\\x") == "invalid-url");
    CHECK(UrlCode("http://p/%zz") == "invalid-url");
    CHECK(UrlCode("ftp://p") == "invalid-url");
    CHECK(UrlCode("proxy.lab:3128") == "invalid-url");
    CHECK(UrlCode("http://") == "invalid-url");
    CHECK(UrlCode("http://pro_xy") == "invalid-url");
    CHECK(UrlCode("http://p:0") == "invalid-url");
    CHECK(UrlCode("http://p:65536") == "invalid-url");
    CHECK(UrlCode("http://p:") == "invalid-url");
    CHECK(UrlCode("http://[zz]:1") == "invalid-url");
    CHECK(UrlCode("http:p") == "invalid-url");
  }

  TEST_CASE("ParseSshPublicKey: type base64 comment; options, injected lines and mismatches refused") {
    SyntaxError e;
    auto k = ParseSshPublicKey(kKey, &e);
    REQUIRE(k);
    CHECK(k->type == "ssh-ed25519");
    CHECK(k->base64 == kKeyData);
    CHECK(k->comment == "a@laptop");
    CHECK(KeyCode(std::string("ssh-ed25519 ") + kKeyData) == "");
    // A second key line with options, hidden in the comment.
    CHECK(KeyCode(std::string(kKey) + "\ncommand=\"/bin/sh\",from=\"*\" " + kKey) == "control-character");
    CHECK(KeyCode(std::string(kKey) + "\r") == "control-character");
    CHECK(KeyCode(std::string("command=\"/bin/sh\" ") + kKey) == "ssh-key-options");
    CHECK(KeyCode(std::string("no-pty ") + kKey) == "ssh-key-options");
    CHECK(KeyCode(std::string("from=\"10.0.0.0/8\",no-agent-forwarding ") + kKey) == "ssh-key-options");
    CHECK(KeyCode("ssh-foo AAAA") == "ssh-key-unknown-type");
    CHECK(KeyCode("ssh-ed25519") == "ssh-key-bad-base64");
    CHECK(KeyCode("ssh-ed25519 !!!!") == "ssh-key-bad-base64");
    CHECK(KeyCode("ssh-rsa " + std::string(kKeyData)) == "ssh-key-type-mismatch");
    CHECK(KeyCode("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4XfzBjbhLT8kuNKAnbnTmasdRStS7JwTXIfn8Tk") ==
          "ssh-key-bad-base64");
    CHECK(KeyCode("") == "ssh-key-bad-base64");
  }

  TEST_CASE("systemd values: controls refused, %, quote and backslash escaped") {
    CHECK(Code(CheckSystemdValue("http://u:p%40s@p:3128")) == "");
    CHECK(Code(CheckSystemdValue("a\nExecStartPre=/bin/sh")) == "control-character");
    CHECK(SystemdEscape("http://u:p%40s@p") == "http://u:p%%40s@p");
    CHECK(SystemdEscape("a\"b\\c") == "a\\\"b\\\\c");
  }

  TEST_CASE("hosts names, GECOS, password hashes, owners") {
    CHECK(Code(CheckHostName("master.lab")) == "");
    CHECK(Code(CheckHostName("master\n10.0.0.1 evil")) == "control-character");
    CHECK(Code(CheckHostName("a b")) == "hosts-name");
    CHECK(Code(CheckHostName("-a")) == "hosts-name");
    CHECK(Code(CheckGecos("Yeon Seong, Room 301")) == "");
    CHECK(Code(CheckGecos("x:0:0:root")) == "invalid-full-name");
    CHECK(Code(CheckGecos("x\nroot::0:0::/:/bin/sh")) == "control-character");
    CHECK(Code(CheckPasswordHash("$y$j9T$abc./$def")) == "");
    CHECK(Code(CheckPasswordHash("!$6$salt$hash")) == "");
    CHECK(Code(CheckPasswordHash("!")) == "");
    CHECK(Code(CheckPasswordHash("*")) == "");
    CHECK(Code(CheckPasswordHash("$6$x$y\nroot:$6$a$b")) == "password-hash-invalid");
    CHECK(Code(CheckPasswordHash("$6$x$y:root")) == "password-hash-invalid");
    CHECK(Code(CheckPasswordHash("hunter2")) == "password-hash-invalid");
    CHECK(Code(CheckOwnerName("www-data")) == "");
    CHECK(Code(CheckOwnerName("1000")) == "");
    CHECK(Code(CheckOwnerName("-R")) == "invalid-owner");
    CHECK(Code(CheckOwnerName("root\n")) == "control-character");
  }
}
