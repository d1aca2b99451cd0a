// The only file that includes libgit2.
#include "engine/git_repo.h"

#include <git2.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

namespace labfleet {

namespace fs = std::filesystem;

namespace {

void InitOnce() {
  // libgit2 keeps global state; initialise it once per process and never shut it down (static destruction
  // order would otherwise race with repositories still held).
  static const int rc = git_libgit2_init();
  (void)rc;
}

std::string LastError() {
  const git_error* e = git_error_last();
  return e && e->message ? e->message : "unknown libgit2 error";
}

[[noreturn]] void Fail(const std::string& what) { throw std::runtime_error(what + ": " + LastError()); }

template <class T, void (*Free)(T*)>
struct Owned {
  T* p = nullptr;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (p) Free(p);
  }
  T** out() { return &p; }
  T* get() const { return p; }
};

using Object = Owned<git_object, git_object_free>;
using Tree = Owned<git_tree, git_tree_free>;
using Commit = Owned<git_commit, git_commit_free>;
using TreeEntry = Owned<git_tree_entry, git_tree_entry_free>;
using Blob = Owned<git_blob, git_blob_free>;
using StatusList = Owned<git_status_list, git_status_list_free>;
using Revwalk = Owned<git_revwalk, git_revwalk_free>;

std::string Hex(const git_oid* oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, oid);
  return buf;
}

}  // namespace

struct GitRepo::Impl {
  git_repository* repo = nullptr;
  ~Impl() {
    if (repo) git_repository_free(repo);
  }

  // The commit `rev` names, peeled from tags.
  void commit(const std::string& rev, Commit& out) const {
    Object obj;
    if (git_revparse_single(obj.out(), repo, rev.c_str()) != 0)
      Fail("unknown git revision '" + rev + "' (try a branch, a tag or a commit id; `git log` lists them)");
    if (git_object_peel(reinterpret_cast<git_object**>(out.out()), obj.get(), GIT_OBJECT_COMMIT) != 0)
      Fail("git revision '" + rev + "' does not name a commit");
  }

  // The tree of `subdir` at `rev`.
  void subtree(const std::string& rev, const std::string& subdir, Tree& out) const {
    Commit c;
    commit(rev, c);
    Tree root;
    if (git_commit_tree(root.out(), c.get()) != 0) Fail("cannot read the tree of revision '" + rev + "'");
    if (subdir.empty() || subdir == ".") {
      std::swap(out.p, root.p);
      return;
    }
    TreeEntry entry;
    if (git_tree_entry_bypath(entry.out(), root.get(), subdir.c_str()) != 0)
      throw std::runtime_error("there is no directory '" + subdir + "' in the repository at revision '" + rev +
                               "'");
    if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE)
      throw std::runtime_error("'" + subdir + "' is not a directory at revision '" + rev + "'");
    if (git_tree_lookup(out.out(), repo, git_tree_entry_id(entry.get())) != 0)
      Fail("cannot read directory '" + subdir + "' at revision '" + rev + "'");
  }
};

GitRepo GitRepo::Open(const std::string& dir) {
  InitOnce();
  GitRepo r;
  r.impl_ = std::make_shared<Impl>();
  if (git_repository_open_ext(&r.impl_->repo, dir.c_str(), 0, nullptr) != 0)
    Fail("'" + dir + "' is not inside a git repository (--rev reads the inventory from git; run `git init` there "
                     "or leave --rev out)");
  return r;
}

std::string GitRepo::workdir() const {
  const char* w = git_repository_workdir(impl_->repo);
  if (!w) return {};
  std::string s = w;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string GitRepo::relative_path(const std::string& path) const {
  std::string wd = workdir();
  if (wd.empty()) throw std::runtime_error("the git repository of '" + path + "' is bare; it has no working tree");
  std::error_code ec;
  // Resolve symlinks on both sides so /tmp vs /private/tmp style aliases still match.
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  fs::path root = fs::weakly_canonical(fs::path(wd), ec);
  fs::path rel = p.lexically_relative(root);
  if (rel.empty()) throw std::runtime_error("'" + path + "' is not inside the repository at " + wd);
  std::string s = rel.generic_string();
  if (s == ".") return "";
  if (s.rfind("..", 0) == 0) throw std::runtime_error("'" + path + "' is not inside the repository at " + wd);
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string GitRepo::resolve(const std::string& rev) const {
  Commit c;
  impl_->commit(rev, c);
  return Hex(git_commit_id(c.get()));
}

std::vector<std::pair<std::string, std::string>> GitRepo::read_tree(const std::string& rev,
                                                                    const std::string& subdir) const {
  Tree tree;
  impl_->subtree(rev, subdir, tree);
  struct Walk {
    git_repository* repo;
    std::vector<std::pair<std::string, std::string>> files;
    bool failed = false;
  } walk{impl_->repo, {}};
  auto cb = [](const char* root, const git_tree_entry* entry, void* payload) -> int {
    auto* w = static_cast<Walk*>(payload);
    if (git_tree_entry_type(entry) != GIT_OBJECT_BLOB) return 0;
    Blob blob;
    if (git_blob_lookup(blob.out(), w->repo, git_tree_entry_id(entry)) != 0) {
      w->failed = true;
      return -1;
    }
    const char* data = static_cast<const char*>(git_blob_rawcontent(blob.get()));
    w->files.emplace_back(std::string(root) + git_tree_entry_name(entry),
                          std::string(data, size_t(git_blob_rawsize(blob.get()))));
    return 0;
  };
  if (git_tree_walk(tree.get(), GIT_TREEWALK_PRE, cb, &walk) != 0 || walk.failed)
    Fail("cannot read the files below '" + subdir + "' at revision '" + rev + "'");
  std::sort(walk.files.begin(), walk.files.end());
  return std::move(walk.files);
}

std::optional<std::string> GitRepo::read_file(const std::string& rev, const std::string& path) const {
  Tree root;
  impl_->subtree(rev, "", root);
  TreeEntry entry;
  if (git_tree_entry_bypath(entry.out(), root.get(), path.c_str()) != 0) return std::nullopt;
  if (git_tree_entry_type(entry.get()) != GIT_OBJECT_BLOB) return std::nullopt;
  Blob blob;
  if (git_blob_lookup(blob.out(), impl_->repo, git_tree_entry_id(entry.get())) != 0)
    Fail("cannot read '" + path + "' at revision '" + rev + "'");
  const char* data = static_cast<const char*>(git_blob_rawcontent(blob.get()));
  return std::string(data, size_t(git_blob_rawsize(blob.get())));
}

bool GitRepo::dirty(const std::string& path) const {
  git_status_options opts = GIT_STATUS_OPTIONS_INIT;
  opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
               GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
  std::string spec = path.empty() || path == "." ? std::string() : path;
  char* specs[1] = {spec.data()};
  if (!spec.empty()) {
    opts.pathspec.strings = specs;
    opts.pathspec.count = 1;
  }
  StatusList list;
  if (git_status_list_new(list.out(), impl_->repo, &opts) != 0)
    Fail("cannot read the git status of '" + (spec.empty() ? workdir() : spec) + "'");
  size_t n = git_status_list_entrycount(list.get());
  for (size_t i = 0; i < n; ++i) {
    const git_status_entry* e = git_status_byindex(list.get(), i);
    if (e->status != GIT_STATUS_CURRENT && !(e->status & GIT_STATUS_IGNORED)) return true;
  }
  return false;
}

int GitRepo::commits_between(const std::string& from, const std::string& to) const {
  Commit a, b;
  impl_->commit(from, a);
  impl_->commit(to, b);
  Revwalk walk;
  if (git_revwalk_new(walk.out(), impl_->repo) != 0) Fail("cannot walk the git history");
  if (git_revwalk_push(walk.get(), git_commit_id(b.get())) != 0 ||
      git_revwalk_hide(walk.get(), git_commit_id(a.get())) != 0)
    Fail("cannot walk the git history from '" + from + "' to '" + to + "'");
  int n = 0;
  git_oid oid;
  while (git_revwalk_next(&oid, walk.get()) == 0) ++n;
  return n;
}

}  // namespace labfleet
