#pragma once
/// Quality and latency metrics of the Benchmarker: small pure functions, each tested against
/// hand-computed values (tests/test_metrics.cpp). All logarithms are natural (nats).

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "eli/kv_cache.h"

namespace eli::benchmark {

/// Percentile p in [0, 100] with linear interpolation between closest ranks (NumPy's default
/// "linear" method): rank = p/100 * (n - 1). Empty input or p outside [0, 100] -> eli::Error.
double percentile(std::vector<double> values, double p);
/// Arithmetic mean. Empty input -> eli::Error.
double mean(const std::vector<double>& values);
/// Median (= percentile 50).
double median(const std::vector<double>& values);
/// Sample standard deviation (divisor n - 1); 0 for a single value. Empty -> eli::Error.
double stddev(const std::vector<double>& values);

/// Negative log-likelihood per row: -log softmax(logits[i])[targets[i]].
/// logits: [N, V] any floating dtype, any device (computed in fp64 on the CPU);
/// targets: N ids in [0, V). Shape mismatch or ids out of range -> eli::Error.
std::vector<double> token_nll(const at::Tensor& logits, const std::vector<int64_t>& targets);
/// exp(mean(nll)). nll in nats, one entry per scored token. Empty -> eli::Error.
double perplexity(const std::vector<double>& nll);

/// KL(P || Q) = sum_v p_v (log p_v - log q_v) per row, with P = softmax(ref_logits) (the full
/// cache) and Q = softmax(logits) (the method). ref_logits, logits: [N, V] (or [V]), same shape,
/// any floating dtype; computed in fp64. Returns N values in nats (>= 0).
std::vector<double> kl_divergence_rows(const at::Tensor& ref_logits, const at::Tensor& logits);
/// Mean of kl_divergence_rows.
double kl_divergence(const at::Tensor& ref_logits, const at::Tensor& logits);
/// Fraction of rows whose argmax agrees (ties: lowest index wins, as at::argmax).
/// ref_logits, logits: [N, V], same shape. In [0, 1].
double top1_agreement(const at::Tensor& ref_logits, const at::Tensor& logits);

/// Index of the first position where two generated sequences differ. If one is a strict
/// prefix of the other, the shorter length. -1 when they are identical.
int64_t first_divergence(const std::vector<int64_t>& ref, const std::vector<int64_t>& hyp);

/// Length of the longest common subsequence (O(|a| |b|) time, O(|b|) memory).
/// Seq: any random-access container with operator== on elements (token ids, chars, words).
template <typename Seq>
int64_t lcs_length(const Seq& a, const Seq& b) {
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// ROUGE-L F1 = 2 P R / (P + R) with P = LCS / |hyp|, R = LCS / |ref| (beta = 1).
/// Both empty -> 1; exactly one empty -> 0.
template <typename Seq>
double rouge_l_f1(const Seq& ref, const Seq& hyp) {
  if (ref.empty() && hyp.empty()) return 1.0;
  if (ref.empty() || hyp.empty()) return 0.0;
  const double lcs = static_cast<double>(lcs_length(ref, hyp));
  if (lcs == 0) return 0.0;
  const double p = lcs / static_cast<double>(hyp.size());
  const double r = lcs / static_cast<double>(ref.size());
  return 2 * p * r / (p + r);
}

/// Levenshtein distance (insert, delete, substitute; unit costs).
template <typename Seq>
int64_t edit_distance(const Seq& a, const Seq& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({sub, prev[j] + 1, cur[j - 1] + 1});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// Normalized edit similarity 1 - d(a, b) / max(|a|, |b|), in [0, 1]. Both empty -> 1.
template <typename Seq>
double edit_similarity(const Seq& a, const Seq& b) {
  const size_t n = std::max(a.size(), b.size());
  if (n == 0) return 1.0;
  return 1.0 - static_cast<double>(edit_distance(a, b)) / static_cast<double>(n);
}

/// Whitespace-separated words of `text` (for word-level ROUGE-L on decoded text).
std::vector<std::string> split_words(const std::string& text);

/// Cache bytes (CacheStats::total_bytes: payload + scales + residual + metadata) per token of
/// context and sequence: total / (batch * tokens_seen). This is the number that compares
/// methods at equal memory (a window or a summary lowers it; 0 when nothing was seen).
double bytes_per_token(const CacheStats& s, int64_t batch);
/// The same for a batch whose sequences saw different numbers of positions (a ragged batch,
/// where s.tokens_seen is the longest sequence's): total / sum(seen), seen[b] = positions
/// sequence b fed through the cache. 0 when the sum is 0.
double bytes_per_token(const CacheStats& s, const std::vector<int64_t>& seen);
/// total_bytes / (batch * tokens_stored): the cost of one stored slot (0 when none stored).
double bytes_per_stored_token(const CacheStats& s, int64_t batch);

/// Bytes -> MB, where 1 MB = 2^20 bytes (all "MB" in eli's reports).
inline double to_mb(double bytes) { return bytes / (1024.0 * 1024.0); }

}  // namespace eli::benchmark
