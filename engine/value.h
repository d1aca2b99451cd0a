// A YAML document as labfleet sees it: scalars, sequences and ordered maps, every node carrying the
// place it was written (file:line:col). yaml-cpp never leaks past yaml_load.cc; everything else reads Value.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace labfleet {

struct Location {
  std::string file;  // path as given to the loader (relative to the inventory root's parent when loaded from a dir)
  int line = 0;      // 1-based; 0 = unknown
  int col = 0;       // 1-based
  bool known() const { return line > 0; }
  std::string str() const;  // "file:line:col", or "file" / "<unknown>"
};

class Value {
 public:
  enum class Kind { Null, Scalar, Seq, Map };
  struct Entry;  // one key: value pair of a map

  Value() = default;
  static Value Scalar(std::string s, Location loc = {}, bool quoted = false);
  static Value Seq(Location loc = {});
  static Value Map(Location loc = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_scalar() const { return kind_ == Kind::Scalar; }
  bool is_seq() const { return kind_ == Kind::Seq; }
  bool is_map() const { return kind_ == Kind::Map; }
  const Location& loc() const { return loc_; }
  void set_loc(Location l) { loc_ = std::move(l); }

  // Scalar text exactly as written (no type coercion). `quoted` is true when the YAML scalar was quoted,
  // so "no" (a string) and no (a YAML 1.1 boolean) can be told apart where it matters.
  const std::string& str() const { return scalar_; }
  bool quoted() const { return quoted_; }

  const std::vector<Value>& items() const;
  std::vector<Value>& items();  // copy-on-write, like entries()
  const std::vector<Entry>& entries() const;
  std::vector<Entry>& entries();

  // Map lookup; nullptr when absent or when this is not a map.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Sets or replaces a key (keeps the order of first insertion).
  void set(std::string key, Value v, Location key_loc = {});
  void push(Value v) { items().push_back(std::move(v)); }

  // Typed views of a scalar; nullopt when the text is not of that type.
  std::optional<long long> as_int() const;
  std::optional<bool> as_bool() const;  // true/false/yes/no/on/off (unquoted only)

  // Plain-text rendering for `show` and messages: scalars as-is, [a, b], {k: v}.
  std::string flow() const;

 private:
  Kind kind_ = Kind::Null;
  Location loc_;
  std::string scalar_;
  bool quoted_ = false;
  // Shared between copies (copy-on-write): a YAML alias is a copy of its anchor's value, so a file with nested
  // aliases costs memory for what it writes, not for what it expands to (yaml_load bounds the expansion).
  std::shared_ptr<std::vector<Value>> seq_;
  std::shared_ptr<std::vector<Entry>> map_;
};

struct Value::Entry {
  std::string key;
  Location key_loc;
  Value value;
};

// Deep merge used for effective node settings: maps merge key by key (recursively), anything else
// (scalars, lists) is replaced by `over`. Locations travel with the values, so provenance survives.
Value MergeOver(const Value& base, const Value& over);

}  // namespace labfleet
