// A fresh directory under /tmp for one test, removed (with everything in it) when the test ends.
//
//   TempDir d("labfleet-inv");        // /tmp/labfleet-inv-XXXXXX
//   d.write("inventory/lab.yaml", "lab:\n  name: t\n");
//   LoadInventoryDir(d.str("inventory"), f);
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace labfleet::testing {

struct TempDir {
  std::filesystem::path path;
  // `prefix` names the directory: BASE/PREFIX-XXXXXX (mkdtemp); REQUIREs that it could be made. /tmp is
  // writable by everyone: a test that needs directories only root can change above it passes "/run".
  explicit TempDir(const std::string& prefix, const std::string& base = "/tmp") {
    std::string tmpl = base + "/" + prefix + "-XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()));
    path = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  // Writes `text` to the file `rel` below the directory, making the directories on the way.
  void write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories((path / rel).parent_path());
    std::ofstream(path / rel) << text;
  }
  // The path of `rel` below the directory (the directory itself for "").
  std::string str(const std::string& rel = "") const { return (path / rel).string(); }
};

}  // namespace labfleet::testing
