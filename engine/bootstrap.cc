#include "engine/bootstrap.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "engine/shell.h"
#include "engine/ssh_transport.h"

namespace labfleet {
namespace fs = std::filesystem;

namespace {

void Wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

std::string FirstLine(std::string& buf) {
  size_t nl = buf.find('\n');
  std::string line = buf.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  Wipe(buf);
  return line;
}

bool PlainUserName(const std::string& u) { return std::regex_match(u, std::regex("[a-z_][a-z0-9_-]{0,31}")); }

}  // namespace

// ---------------------------------------------------------------------------------------------- passwords

PasswordSource::~PasswordSource() {
  if (login_) Wipe(*login_);
  if (become_) Wipe(*become_);
}

const std::string& PasswordSource::login(const std::string& who) {
  if (login_) return *login_;
  if (ask_pass_) {
    login_ = ReadPasswordFromTerminal("SSH password for " + who + ": ");
  } else if (const char* f = std::getenv("LABFLEET_PASSWORD_FILE"); f && *f) {
    login_ = ReadPasswordFile(f);
  } else {
    throw std::runtime_error(who + " accepts no key yet: pass --ask-pass to type the installer's password, or set "
                             "LABFLEET_PASSWORD_FILE to a file (mode 0600) holding it");
  }
  return *login_;
}

const std::string& PasswordSource::become(const std::string& who) {
  if (become_) return *become_;
  if (ask_become_) {
    become_ = ReadPasswordFromTerminal("sudo password for " + who + ": ");
    return *become_;
  }
  return login(who);
}

std::string ReadPasswordFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    throw std::runtime_error("cannot open the password file " + path + " (LABFLEET_PASSWORD_FILE): " +
                             std::string(strerror(errno)) + (errno == ELOOP ? " (a symlink is refused)" : ""));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error("the password file " + path + " (LABFLEET_PASSWORD_FILE) is not a regular file");
  }
  if (st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    throw std::runtime_error("the password file " + path + " (LABFLEET_PASSWORD_FILE) has mode " + mode + " and owner uid " +
                             std::to_string(st.st_uid) + ": it must be readable only by its owner, uid " +
                             std::to_string(::geteuid()) + " (chmod 600, chown); labfleet refuses a password others "
                             "may have read");
  }
  std::string buf(4096, '\0');
  ssize_t n = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  if (n < 0) throw std::runtime_error("cannot read the password file " + path + ": " + strerror(errno));
  buf.resize(size_t(n));
  std::string pw = FirstLine(buf);
  if (pw.empty()) throw std::runtime_error("the password file " + path + " (LABFLEET_PASSWORD_FILE) is empty");
  return pw;
}

std::string ReadPasswordFromTerminal(const std::string& prompt) {
  int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("no terminal to ask for the password on; for automation set LABFLEET_PASSWORD_FILE "
                             "to a file (mode 0600) holding it");
  termios old {};
  bool have_tio = ::tcgetattr(fd, &old) == 0;
  if (have_tio) {
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  (void)!::write(fd, prompt.data(), prompt.size());
  std::string buf;
  char c;
  while (buf.size() < 4096 && ::read(fd, &c, 1) == 1 && c != '\n') buf.push_back(c);
  if (have_tio) ::tcsetattr(fd, TCSAFLUSH, &old);
  ::close(fd);
  std::string pw = FirstLine(buf);
  if (pw.empty()) throw std::runtime_error("no password was typed");
  return pw;
}

// ---------------------------------------------------------------------------------------------- keys

std::string CheckPublicKeyLine(const std::string& line) {
  static const std::regex re(
      "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh.com|"
      "sk-ecdsa-sha2-nistp256@openssh.com) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]{0,200})?");
  if (!std::regex_match(line, re))
    return "not one public key line \"TYPE BASE64 [COMMENT]\" (comment of letters, digits and @._+- only)";
  return "";
}

std::string AdminPublicKey(const std::string& identity) {
  std::vector<std::string> candidates;
  if (!identity.empty())
    candidates.push_back(identity + ".pub");
  else
    for (const char* n : {"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"}) candidates.push_back(ExpandHome("~/.ssh/") + n);
  for (const auto& c : candidates) {
    std::ifstream in(c);
    if (!in) continue;
    std::string line;
    std::getline(in, line);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (std::string why = CheckPublicKeyLine(line); !why.empty())
      throw std::runtime_error("the admin's public key " + c + " is " + why);
    return line;
  }
  throw std::runtime_error(identity.empty()
                               ? "no public key to install: set ssh.identity in the inventory (its .pub file is "
                                 "installed) or create ~/.ssh/id_ed25519.pub"
                               : "no public key " + identity + ".pub beside ssh.identity " + identity +
                                     ": it is what bootstrap installs on the node");
}

// ---------------------------------------------------------------------------------------------- the setup script

std::string BootstrapSetupScript(const std::string& user, const std::string& pubkey, bool sudoers_rule) {
  if (!PlainUserName(user)) throw std::invalid_argument("ssh.user '" + user + "' is not a plain account name");
  if (!CheckPublicKeyLine(pubkey).empty()) throw std::invalid_argument("bad public key line");
  const std::string b64 = pubkey.substr(pubkey.find(' ') + 1, pubkey.find(' ', pubkey.find(' ') + 1) - pubkey.find(' ') - 1);
  // As the user: their home's .ssh and authorized_keys, so no path the user controls is written by root.
  Script keys;
  keys.raw("umask 077");
  keys.raw("h=$(getent passwd " + ShellQuote(user) + " | cut -d: -f6)");
  keys.raw("cd \"$h\" || exit 92");
  keys.raw("[ -d .ssh ] || { mkdir .ssh && echo \"made $h/.ssh\"; } || exit 93");
  keys.raw("chmod 700 .ssh || exit 93");
  keys.raw("if [ -f .ssh/authorized_keys ] && grep -qF -- " + ShellQuote(b64) + " .ssh/authorized_keys; then :; else");
  keys.raw("  printf '%s\\n' " + ShellQuote(pubkey) + " >> .ssh/authorized_keys || exit 94");
  keys.raw("  echo \"installed the admin's key in $h/.ssh/authorized_keys\"");
  keys.raw("fi");
  keys.raw("chmod 600 .ssh/authorized_keys");

  Script s;
  s.raw("exec </dev/null");
  s.raw("[ \"$(id -u)\" = 0 ] || { echo 'labfleet: the setup is not running as root' >&2; exit 90; }");
  s.raw(std::string("echo ") + kBootstrapRootMarker);
  s.raw("u=" + ShellQuote(user));
  s.raw("if ! getent passwd \"$u\" >/dev/null 2>&1; then");
  s.raw("  useradd -r -m -p '*' -d \"/home/$u\" -s /bin/sh \"$u\" || exit 91");
  s.raw("  echo \"created account $u (system account, home /home/$u, no password)\"");
  s.raw("fi");
  s.raw("h=$(getent passwd \"$u\" | cut -d: -f6)");
  s.raw("case $h in /?*) ;; *) echo \"labfleet: account $u has no absolute home directory\" >&2; exit 91 ;; esac");
  s.raw("if [ ! -d \"$h\" ]; then mkdir -p -m 0700 \"$h\" && chown \"$u:\" \"$h\" && echo \"made home $h\" || exit 91; fi");
  s.raw("if [ \"$u\" = root ]; then sh -c " + ShellQuote(keys.str()) + " || exit $?; else su -s /bin/sh -c " +
        ShellQuote(keys.str()) + " \"$u\" || exit $?; fi");
  if (sudoers_rule) {
    const std::string rule = user + " ALL=(ALL:ALL) NOPASSWD: ALL";
    s.raw("r=" + ShellQuote(rule));
    s.raw("f=/etc/sudoers.d/labfleet-" + user);
    s.raw("if [ ! -f \"$f\" ] || [ \"$(cat \"$f\")\" != \"$r\" ]; then");
    s.raw("  mkdir -p -m 0750 /etc/sudoers.d && t=$(mktemp /etc/sudoers.d/.labfleet-XXXXXX) || exit 95");
    s.raw("  printf '%s\\n' \"$r\" > \"$t\" && chmod 0440 \"$t\" || { rm -f \"$t\"; exit 95; }");
    s.raw("  if command -v visudo >/dev/null 2>&1 && ! visudo -cqf \"$t\" >/dev/null; then rm -f \"$t\"; "
          "echo 'labfleet: visudo refused the sudoers rule' >&2; exit 95; fi");
    s.raw("  mv -f \"$t\" \"$f\" || exit 95");
    s.raw("  echo \"sudoers rule $f: $r\"");
    s.raw("fi");
  }
  return s.str();
}

// ---------------------------------------------------------------------------------------------- pinning

namespace {

// Where a line's comment starts (a '#' at the start or after blank, outside quotes), or npos.
size_t CommentStart(const std::string& l) {
  char q = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    char c = l[i];
    if (q) {
      if (c == q) q = 0;
      continue;
    }
    if (c == '"' || c == '\'') q = c;
    else if (c == '#' && (i == 0 || l[i - 1] == ' ' || l[i - 1] == '\t')) return i;
  }
  return std::string::npos;
}

size_t Indent(const std::string& l) {
  size_t i = 0;
  while (i < l.size() && l[i] == ' ') ++i;
  return i;
}

// The position just after the mapping key's ':' on `l` (the key starting at column `col0`, 0-based).
size_t AfterKeyColon(const std::string& l, size_t col0) {
  if (col0 >= l.size()) return std::string::npos;
  size_t i = col0;
  if (l[i] == '"' || l[i] == '\'') {
    size_t e = l.find(l[i], i + 1);
    if (e == std::string::npos) return std::string::npos;
    i = e + 1;
  } else {
    while (i < l.size() && l[i] != ':') ++i;
  }
  while (i < l.size() && (l[i] == ' ' || l[i] == '\t')) ++i;
  if (i >= l.size() || l[i] != ':') return std::string::npos;
  return i + 1;
}

}  // namespace

std::optional<std::string> InsertHostKey(const std::string& text, int line, const std::string& key, std::string* why) {
  auto refuse = [&](const std::string& w) -> std::optional<std::string> {
    if (why) *why = w;
    return std::nullopt;
  };
  if (!CheckPublicKeyLine(key).empty()) return refuse("the host key is not a public key line");
  std::vector<std::string> lines;
  {
    size_t start = 0;
    for (;;) {
      size_t nl = text.find('\n', start);
      lines.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
  }
  if (line < 1 || size_t(line) > lines.size()) return refuse("the node's line is not in the file");
  const std::string& l = lines[size_t(line - 1)];
  const size_t indent = Indent(l);
  size_t after = AfterKeyColon(l, indent);
  if (after == std::string::npos) return refuse("the node's key was not found on its line");
  std::string code = l.substr(0, std::min(l.size(), CommentStart(l)));
  while (!code.empty() && (code.back() == ' ' || code.back() == '\t')) code.pop_back();
  std::string value = after < code.size() ? code.substr(after) : "";
  size_t vb = value.find_first_not_of(" \t");
  const std::string entry = "host_key: \"" + key + "\"";
  if (vb == std::string::npos) {
    // A block map: its children are the next lines indented deeper.
    size_t child = std::string::npos;
    for (size_t i = size_t(line); i < lines.size(); ++i) {
      const std::string& c = lines[i];
      size_t b = c.find_first_not_of(" \t");
      if (b == std::string::npos || c[b] == '#') continue;
      if (c.find('\t') < b) return refuse("the node's map is indented with tabs");
      child = b;
      break;
    }
    if (child == std::string::npos || child <= indent) return refuse("the node has no map under its name");
    lines.insert(lines.begin() + line, std::string(child, ' ') + entry);
  } else {
    value = value.substr(vb);
    if (value.front() == '{' && value.back() != '}') return refuse("the node's flow map spans several lines");
    if (value.front() != '{')
      return refuse("the node's map is neither a block map nor a one-line flow map { ... }");
    // Braces must balance (outside quotes) so that the last '}' closes the node's own map.
    int depth = 0;
    char q = 0;
    for (size_t i = 0; i < value.size(); ++i) {
      char c = value[i];
      if (q) {
        if (c == q) q = 0;
        continue;
      }
      if (c == '"' || c == '\'') q = c;
      else if (c == '{' || c == '[') ++depth;
      else if (c == '}' || c == ']') {
        --depth;
        if (depth == 0 && i + 1 != value.size()) return refuse("the node's flow map does not end its line");
      }
    }
    if (depth != 0 || q) return refuse("the node's flow map spans several lines");
    size_t close = code.size() - 1;  // the final '}'
    std::string inner = value.substr(1, value.size() - 2);
    bool empty = inner.find_first_not_of(" \t") == std::string::npos;
    std::string ins;
    size_t at = close;
    while (at > 0 && (code[at - 1] == ' ' || code[at - 1] == '\t')) --at;  // after the last entry
    if (empty) ins = " " + entry + " ";
    else ins = ", " + entry;
    std::string nl = l.substr(0, at) + ins + l.substr(at);
    lines[size_t(line - 1)] = nl;
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() ? "\n" : "");
  return out;
}

void PinHostKey(const std::string& inventory_dir, const Inventory& inv, const NodeDef& node, BootstrapResult& r) {
  if (!inv.ssh(node).host_key.empty()) return;  // pinned already: the connection verified against it
  const std::string file = node.where.file;
  auto fail = [&](const std::string& w) {
    r.error = "cannot pin the host key " + r.fingerprint + " of " + node.name + " in " + file + ": " + w +
              ". Add `host_key: \"" + r.host_key + "\"` to the node's map by hand and run again.";
  };
  std::string text;
  {
    std::ifstream in(file, std::ios::binary);
    if (!in) return fail("it cannot be read");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  std::string why;
  auto next = InsertHostKey(text, node.where.line, r.host_key, &why);
  if (!next) return fail(why);
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return fail(strerror(errno));
  auto write_atomic = [&](const std::string& body) -> std::string {
    fs::path p(file);
    std::string tmpl = (p.parent_path() / ("." + p.filename().string() + ".labfleet-XXXXXX")).string();
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) return strerror(errno);
    bool ok = ::write(fd, body.data(), body.size()) == ssize_t(body.size()) && ::fchmod(fd, st.st_mode & 07777) == 0 &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || ::rename(tmpl.c_str(), file.c_str()) != 0) {
      std::string e = strerror(errno);
      ::unlink(tmpl.c_str());
      return e;
    }
    return "";
  };
  if (std::string e = write_atomic(*next); !e.empty()) return fail(e);
  // Proof: the inventory as labfleet reads it now pins exactly this key for this node.
  Findings f;
  Inventory again = LoadInventoryDir(inventory_dir, f);
  const NodeDef* n = again.node(node.name);
  if (f.has_errors() || !n || again.ssh(*n).host_key != r.host_key) {
    write_atomic(text);
    return fail("the edited file did not read back with that key (the file was restored)");
  }
  r.pinned_now = true;
  r.pinned_in = file;
}

// ---------------------------------------------------------------------------------------------- one node

BootstrapResult BootstrapNode(const Inventory& inv, const NodeDef& node, const ConnectOptions& copts,
                              const BootstrapOptions& bo, PasswordSource& pw, const ConfirmHostKey& confirm) {
  BootstrapResult r;
  r.node = node.name;
  if (node.connection == "local") return r;
  try {
    SshTarget kt = SshTargetFor(inv, node, copts);
    kt.accept_new = false;
    std::string confirmed;  // the key confirmed on the terminal (asked once per node)
    kt.confirm_new_key = [&](const std::string& key, const std::string& fp) {
      if (!confirmed.empty()) return key == confirmed;
      if (!confirm(node.name, key, fp)) return false;
      confirmed = key;
      return true;
    };
    auto done = [&](const std::string& key) {
      r.host_key = key;
      r.fingerprint = HostKeyFingerprint(key);
    };
    // 1. Key login as the inventory's user, reaching root: when it works, there is nothing to set up. A key
    //    that logs in but whose sudo asks a password (TransportError Auth from the command) needs the setup too.
    try {
      SshTransport t(kt);
      RunResult id = t.run("id -u");
      done(t.host_key());
      if (!id.ok() || id.out != "0\n")
        r.error = "key login as " + kt.user + " on " + node.name + " works but does not reach root (id -u: " +
                  id.out.substr(0, 40) + "); set ssh.become: sudo for a non-root ssh.user";
      return r;
    } catch (const TransportError& e) {
      if (e.kind() != TransportError::Kind::Auth) throw;
    }
    // 2. One password login as the installer's user, over plain exec channels.
    const std::string pub = AdminPublicKey(kt.identity);
    SshTarget pt = kt;
    pt.user = bo.user.empty() ? kt.user : bo.user;
    pt.identity.clear();
    pt.become_sudo = false;
    if (!confirmed.empty()) pt.host_key = confirmed;  // the key just confirmed may not change in between
    const std::string who = pt.user + "@" + node.name;
    pt.password = pw.login(who);
    std::unique_ptr<SshTransport> t;
    try {
      t = std::make_unique<SshTransport>(pt);
    } catch (...) {
      explicit_bzero(pt.password.data(), pt.password.size());
      throw;
    }
    explicit_bzero(pt.password.data(), pt.password.size());
    r.used_password = true;
    done(t->host_key());
    const bool sudoers = kt.user != "root" && kt.become_sudo;
    const std::string script = BootstrapSetupScript(kt.user, pub, sudoers);
    RunResult rr;
    if (pt.user == "root") {
      rr = t->run(Cmd("sh").arg("-c").arg(script).str());
    } else {
      // sudo reads the password from stdin (-S, no prompt, no cached credential); the script reads nothing
      // from it (exec </dev/null), so the password goes nowhere else.
      std::string in = pw.become(who) + "\n";
      rr = t->run(Cmd("sudo").arg("-S").arg("-k").arg("-p").arg("").arg("--").arg("sh").arg("-c").arg(script).str(), in);
      explicit_bzero(in.data(), in.size());
    }
    std::istringstream out(rr.out);
    std::string line;
    bool root = false;
    while (std::getline(out, line)) {
      if (!root) {
        root = line == kBootstrapRootMarker;
        continue;
      }
      if (!line.empty()) r.changes.push_back(line.substr(0, 300));
    }
    std::string err = rr.err.substr(0, 300);
    while (!err.empty() && err.back() == '\n') err.pop_back();
    if (!root) {
      r.error = "sudo as " + pt.user + " on " + node.name + " did not run the setup as root (exit " +
                std::to_string(rr.exit_code) + (err.empty() ? "" : ": " + err) +
                "): check the sudo password (--ask-become-pass) and that " + pt.user +
                " may use sudo. Nothing was changed on the node.";
      return r;
    }
    if (rr.exit_code != 0) {
      r.error = "the setup on " + node.name + " failed (exit " + std::to_string(rr.exit_code) +
                (err.empty() ? "" : ": " + err) + ")";
      return r;
    }
    t.reset();
    // Proof: a fresh key login as the inventory's user, with the key just verified, reaches root.
    SshTarget kt2 = kt;
    kt2.host_key = r.host_key;
    kt2.confirm_new_key = nullptr;
    try {
      SshTransport k(kt2);
      RunResult id = k.run("id -u");
      if (!id.ok() || id.out != "0\n")
        r.error = "key login as " + kt.user + " on " + node.name + " works but does not reach root (id -u: " +
                  id.out.substr(0, 40) + "); check ssh.become";
    } catch (const TransportError& e) {
      r.error = std::string("the admin's key was installed, but key login still fails: ") + e.what();
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace labfleet
