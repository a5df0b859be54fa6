#pragma once
// Byte-level BPE merging of one pre-tokenized piece: repeatedly take the adjacent pair of lowest
// merge rank and merge every occurrence of it, left to right (GPT-2's encoder.py). Two
// implementations with identical results for any merge table:
//   bpe_merge_scan  the plain loop: O(pieces * merges applied), the specification;
//   bpe_merge_heap  a priority queue of candidate pairs over a linked list: O(n log n), so a
//                   pathological piece (one 320,000-letter word) takes milliseconds, not 12 s.

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace eli::detail {

struct BpeMerge {
  int32_t rank;
  int32_t id;  // the merged token
};

inline uint64_t bpe_pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

/// Find: const BpeMerge* (uint64_t pair key), nullptr when the pair never merges.
template <class Find>
void bpe_merge_scan(std::vector<int32_t>& w, const Find& find) {
  while (w.size() > 1) {
    const BpeMerge* best = nullptr;
    uint64_t best_key = 0;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      const uint64_t key = bpe_pair_key(w[i], w[i + 1]);
      const BpeMerge* m = find(key);
      if (m != nullptr && (best == nullptr || m->rank < best->rank)) {
        best = m;
        best_key = key;
      }
    }
    if (best == nullptr) break;
    size_t o = 0;
    for (size_t i = 0; i < w.size();) {
      if (i + 1 < w.size() && bpe_pair_key(w[i], w[i + 1]) == best_key) {
        w[o++] = best->id;
        i += 2;
      } else {
        w[o++] = w[i++];
      }
    }
    w.resize(o);
  }
}

/// Same result as bpe_merge_scan. Candidates (rank, left node, left id, right id) are checked
/// against the list when popped (stale ones skipped). All candidates of one rank are one pair
/// type, and a merge never creates that type again (the merged token differs from both halves),
/// so popping a whole rank in position order and applying the still-valid ones left to right is
/// exactly the scan's "every occurrence, left to right"; pairs the batch created are queued
/// after it, as the scan would see them in its next round.
template <class Find>
void bpe_merge_heap(std::vector<int32_t>& w, const Find& find) {
  const int n = static_cast<int>(w.size());
  if (n < 2) return;
  std::vector<int> next(n), prev(n);
  for (int i = 0; i < n; ++i) next[i] = i + 1 < n ? i + 1 : -1, prev[i] = i - 1;
  std::vector<bool> alive(static_cast<size_t>(n), true);
  struct Cand {
    int32_t rank;
    int left;
    int32_t a, b;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto offer = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    const int32_t a = w[left], b = w[next[left]];
    if (const BpeMerge* m = find(bpe_pair_key(a, b))) heap.push(Cand{m->rank, left, a, b});
  };
  for (int i = 0; i + 1 < n; ++i) offer(i);
  std::vector<int> merged;
  while (!heap.empty()) {
    const int32_t rank = heap.top().rank;
    merged.clear();
    while (!heap.empty() && heap.top().rank == rank) {
      const Cand c = heap.top();
      heap.pop();
      const int r = next[c.left];
      if (!alive[c.left] || r < 0 || w[c.left] != c.a || w[r] != c.b) continue;  // stale
      // The pair is still (a, b): merge r into left.
      w[c.left] = find(bpe_pair_key(c.a, c.b))->id;
      alive[r] = false;
      next[c.left] = next[r];
      if (next[r] >= 0) prev[next[r]] = c.left;
      merged.push_back(c.left);
    }
    for (int left : merged) {
      if (!alive[left]) continue;
      offer(prev[left]);
      offer(left);
    }
  }
  size_t o = 0;
  for (int i = 0; i >= 0 && i < n; i = next[i]) w[o++] = w[i];
  w.resize(o);
}

}  // namespace eli::detail
