#include "engine/value.h"

#include <algorithm>
#include <charconv>

namespace labfleet {

std::string Location::str() const {
  if (file.empty()) return "<unknown>";
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

Value Value::Scalar(std::string s, Location loc, bool quoted) {
  Value v;
  v.kind_ = Kind::Scalar;
  v.scalar_ = std::move(s);
  v.loc_ = std::move(loc);
  v.quoted_ = quoted;
  return v;
}
Value Value::Seq(Location loc) {
  Value v;
  v.kind_ = Kind::Seq;
  v.loc_ = std::move(loc);
  return v;
}
Value Value::Map(Location loc) {
  Value v;
  v.kind_ = Kind::Map;
  v.loc_ = std::move(loc);
  v.map_ = std::make_shared<std::vector<Entry>>();
  return v;
}

static const std::vector<Value::Entry> kNoEntries;
static const std::vector<Value> kNoItems;

const std::vector<Value>& Value::items() const { return seq_ ? *seq_ : kNoItems; }
std::vector<Value>& Value::items() {
  if (!seq_) seq_ = std::make_shared<std::vector<Value>>();
  if (seq_.use_count() > 1) seq_ = std::make_shared<std::vector<Value>>(*seq_);
  return *seq_;
}

const std::vector<Value::Entry>& Value::entries() const { return map_ ? *map_ : kNoEntries; }
std::vector<Value::Entry>& Value::entries() {
  if (!map_) map_ = std::make_shared<std::vector<Entry>>();
  // Copy-on-write: Values are copied freely (merges), so never mutate a shared map.
  if (map_.use_count() > 1) map_ = std::make_shared<std::vector<Entry>>(*map_);
  return *map_;
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Map || !map_) return nullptr;
  for (const auto& e : *map_)
    if (e.key == key) return &e.value;
  return nullptr;
}
Value* Value::find(std::string_view key) {
  if (kind_ != Kind::Map || !map_) return nullptr;
  for (auto& e : entries())
    if (e.key == key) return &e.value;
  return nullptr;
}

void Value::set(std::string key, Value v, Location key_loc) {
  if (kind_ != Kind::Map) {
    *this = Map(loc_);
  }
  for (auto& e : entries()) {
    if (e.key == key) {
      e.value = std::move(v);
      e.key_loc = std::move(key_loc);
      return;
    }
  }
  entries().push_back(Entry{std::move(key), std::move(key_loc), std::move(v)});
}

std::optional<long long> Value::as_int() const {
  if (kind_ != Kind::Scalar || scalar_.empty()) return std::nullopt;
  long long out = 0;
  const char* b = scalar_.data();
  const char* e = b + scalar_.size();
  auto [p, ec] = std::from_chars(b, e, out);
  if (ec != std::errc() || p != e) return std::nullopt;
  return out;
}

std::optional<bool> Value::as_bool() const {
  if (kind_ != Kind::Scalar || quoted_) return std::nullopt;
  std::string s = scalar_;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  return std::nullopt;
}

std::string Value::flow() const {
  switch (kind_) {
    case Kind::Null: return "null";
    case Kind::Scalar: return scalar_;
    case Kind::Seq: {
      std::string out = "[";
      const auto& seq = items();
      for (size_t i = 0; i < seq.size(); ++i) out += (i ? ", " : "") + seq[i].flow();
      return out + "]";
    }
    case Kind::Map: {
      std::string out = "{";
      bool first = true;
      for (const auto& e : entries()) {
        out += (first ? "" : ", ") + e.key + ": " + e.value.flow();
        first = false;
      }
      return out + "}";
    }
  }
  return {};
}

Value MergeOver(const Value& base, const Value& over) {
  if (!base.is_map() || !over.is_map()) return over;
  Value out = base;
  for (const auto& e : over.entries()) {
    const Value* b = out.find(e.key);
    if (b && b->is_map() && e.value.is_map())
      out.set(e.key, MergeOver(*b, e.value), e.key_loc);
    else
      out.set(e.key, e.value, e.key_loc);
  }
  return out;
}

}  // namespace labfleet
