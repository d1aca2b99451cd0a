// Reading the inventory's git repository. The only file that includes libgit2 is git_repo.cc.
//
// Contracts:
// - Open() finds the repository that contains `dir` (searching upwards, like `git`); it throws
//   std::runtime_error naming the directory when there is none.
// - Revisions are anything `git rev-parse` understands (HEAD, a branch, a tag, a full or short id, HEAD~2);
//   resolve() returns the full hex id of the commit it names and throws when it names no commit.
// - Paths are relative to the repository root, with '/' separators; "" is the root itself.
// - Every failure is a std::runtime_error whose message says what was asked and what libgit2 said.
// - A GitRepo is cheap to move; it is not thread-safe.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace labfleet {

class GitRepo {
 public:
  static GitRepo Open(const std::string& dir);

  // Absolute path of the working tree, without a trailing '/'; empty for a bare repository.
  std::string workdir() const;
  // `path` (absolute or relative to the current directory) relative to the repository root: "inventory".
  // Throws when the path is outside the working tree.
  std::string relative_path(const std::string& path) const;

  // Full hex id of the commit `rev` names.
  std::string resolve(const std::string& rev) const;
  std::string head() const { return resolve("HEAD"); }

  // Every file (blob) below `subdir` at `rev`, as (path relative to subdir, contents), sorted by path.
  // Throws when `subdir` does not exist at that revision.
  std::vector<std::pair<std::string, std::string>> read_tree(const std::string& rev, const std::string& subdir) const;
  // One file at `rev`; nullopt when there is no such file.
  std::optional<std::string> read_file(const std::string& rev, const std::string& path) const;

  // Does the working tree differ from HEAD (modified, staged, deleted or untracked files) below `path`?
  bool dirty(const std::string& path = "") const;

  // Commits reachable from `to` but not from `from` (`git rev-list --count from..to`): how many commits
  // `from` is behind `to`.
  int commits_between(const std::string& from, const std::string& to) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace labfleet
