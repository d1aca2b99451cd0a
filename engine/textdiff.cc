#include "engine/textdiff.h"

#include <algorithm>
#include <vector>

namespace labfleet {
namespace {

struct Line {
  std::string_view text;
  bool newline;  // ends with '\n'
  bool operator==(const Line& o) const { return text == o.text && newline == o.newline; }
};

std::vector<Line> SplitLines(std::string_view s) {
  std::vector<Line> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string_view::npos) {
      out.push_back({s.substr(pos), false});
      break;
    }
    out.push_back({s.substr(pos, nl - pos), true});
    pos = nl + 1;
  }
  return out;
}

enum class Op { Keep, Del, Add };

// Myers' O((N+M)D) shortest edit script, with the common prefix and suffix trimmed first.
std::vector<std::pair<Op, size_t>> EditScript(const std::vector<Line>& a, const std::vector<Line>& b) {
  size_t pre = 0;
  while (pre < a.size() && pre < b.size() && a[pre] == b[pre]) ++pre;
  size_t suf = 0;
  while (suf < a.size() - pre && suf < b.size() - pre && a[a.size() - 1 - suf] == b[b.size() - 1 - suf]) ++suf;
  const long n = long(a.size() - pre - suf), m = long(b.size() - pre - suf);
  auto A = [&](long i) -> const Line& { return a[pre + i]; };
  auto B = [&](long j) -> const Line& { return b[pre + j]; };
  const long max = n + m;
  std::vector<long> v(2 * max + 2, 0);
  std::vector<std::vector<long>> trace;
  long d_end = 0;
  for (long d = 0; d <= max; ++d) {
    trace.push_back(v);
    bool done = false;
    for (long k = -d; k <= d; k += 2) {
      long x = (k == -d || (k != d && v[max + k - 1] < v[max + k + 1])) ? v[max + k + 1] : v[max + k - 1] + 1;
      long y = x - k;
      while (x < n && y < m && A(x) == B(y)) ++x, ++y;
      v[max + k] = x;
      if (x >= n && y >= m) {
        done = true;
        break;
      }
    }
    if (done) {
      d_end = d;
      break;
    }
  }
  // Backtrack.
  std::vector<std::pair<Op, size_t>> rev;
  long x = n, y = m;
  for (long d = d_end; d > 0; --d) {
    const auto& vv = trace[d];
    long k = x - y;
    long pk = (k == -d || (k != d && vv[max + k - 1] < vv[max + k + 1])) ? k + 1 : k - 1;
    long px = vv[max + pk], py = px - pk;
    while (x > px && y > py) rev.push_back({Op::Keep, size_t(pre + --x)}), --y;
    if (x == px)
      rev.push_back({Op::Add, size_t(pre + --y)});
    else
      rev.push_back({Op::Del, size_t(pre + --x)});
  }
  while (x > 0 && y > 0) rev.push_back({Op::Keep, size_t(pre + --x)}), --y;
  std::vector<std::pair<Op, size_t>> out;
  for (size_t i = 0; i < pre; ++i) out.push_back({Op::Keep, i});
  out.insert(out.end(), rev.rbegin(), rev.rend());
  for (size_t i = 0; i < suf; ++i) out.push_back({Op::Keep, a.size() - suf + i});
  return out;
}

}  // namespace

std::string UnifiedDiff(std::string_view as, std::string_view bs, std::string_view a_label,
                        std::string_view b_label, int context) {
  if (as == bs) return "";
  auto a = SplitLines(as), b = SplitLines(bs);
  auto script = EditScript(a, b);
  // Each entry: op, a index, b index (positions before this entry).
  struct Row {
    Op op;
    size_t ai, bi;
  };
  std::vector<Row> rows;
  size_t ai = 0, bi = 0;
  for (auto& [op, idx] : script) {
    (void)idx;
    rows.push_back({op, ai, bi});
    if (op != Op::Add) ++ai;
    if (op != Op::Del) ++bi;
  }
  std::string out;
  out += "--- ";
  out += a_label;
  out += "\n+++ ";
  out += b_label;
  out += "\n";
  size_t i = 0;
  while (i < rows.size()) {
    while (i < rows.size() && rows[i].op == Op::Keep) ++i;
    if (i == rows.size()) break;
    size_t start = i >= size_t(context) ? i - context : 0;
    // Extend the hunk while changes are within 2*context of each other.
    size_t end = i;
    size_t last_change = i;
    while (end < rows.size()) {
      if (rows[end].op != Op::Keep) last_change = end;
      if (end - last_change > size_t(2 * context)) break;
      ++end;
    }
    end = std::min(rows.size(), last_change + context + 1);
    size_t a_count = 0, b_count = 0;
    for (size_t r = start; r < end; ++r) {
      if (rows[r].op != Op::Add) ++a_count;
      if (rows[r].op != Op::Del) ++b_count;
    }
    size_t a_start = rows[start].ai + (a_count ? 1 : 0), b_start = rows[start].bi + (b_count ? 1 : 0);
    out += "@@ -" + std::to_string(a_start) + (a_count == 1 ? "" : "," + std::to_string(a_count)) + " +" +
           std::to_string(b_start) + (b_count == 1 ? "" : "," + std::to_string(b_count)) + " @@\n";
    for (size_t r = start; r < end; ++r) {
      const Line& l = rows[r].op == Op::Add ? b[rows[r].bi] : a[rows[r].ai];
      out += rows[r].op == Op::Keep ? ' ' : rows[r].op == Op::Del ? '-' : '+';
      out += l.text;
      out += '\n';
      if (!l.newline) out += "\\ No newline at end of file\n";
    }
    i = end;
  }
  return out;
}

}  // namespace labfleet
