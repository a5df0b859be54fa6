#include "eli/benchmark/metrics.h"

#include <cmath>
#include <numeric>
#include <sstream>

#include "eli/error.h"

namespace eli::benchmark {

double percentile(std::vector<double> values, double p) {
  ELI_CHECK(!values.empty(), "percentile of an empty list");
  ELI_CHECK(p >= 0.0 && p <= 100.0, "percentile p = {} (valid: 0..100)", p);
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double mean(const std::vector<double>& values) {
  ELI_CHECK(!values.empty(), "mean of an empty list");
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

double median(const std::vector<double>& values) { return percentile(values, 50.0); }

double stddev(const std::vector<double>& values) {
  ELI_CHECK(!values.empty(), "stddev of an empty list");
  if (values.size() == 1) return 0.0;
  const double m = mean(values);
  double ss = 0;
  for (double v : values) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(values.size() - 1));
}

namespace {

// [N, V] fp64 on the CPU; a 1-D [V] becomes [1, V].
at::Tensor as_rows(const at::Tensor& t, const char* what) {
  ELI_CHECK(t.defined(), "{}: undefined tensor", what);
  ELI_CHECK(t.dim() == 1 || t.dim() == 2, "{}: expected [N, V] or [V], got {} dims", what, t.dim());
  ELI_CHECK(at::isFloatingType(t.scalar_type()), "{}: expected floating logits", what);
  at::Tensor r = t.to(at::kCPU, at::kDouble);
  return r.dim() == 1 ? r.unsqueeze(0) : r;
}

void check_same_shape(const at::Tensor& a, const at::Tensor& b, const char* what) {
  if (a.sizes() == b.sizes()) return;
  std::ostringstream sa, sb;
  sa << a.sizes();
  sb << b.sizes();
  ELI_FAIL("{}: shapes differ ({} vs {})", what, sa.str(), sb.str());
}

}  // namespace

std::vector<double> token_nll(const at::Tensor& logits, const std::vector<int64_t>& targets) {
  at::Tensor lp = at::log_softmax(as_rows(logits, "token_nll"), -1);
  ELI_CHECK(lp.size(0) == static_cast<int64_t>(targets.size()),
            "token_nll: {} rows of logits but {} targets", lp.size(0), targets.size());
  const int64_t v = lp.size(1);
  auto acc = lp.accessor<double, 2>();
  std::vector<double> out(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    ELI_CHECK(targets[i] >= 0 && targets[i] < v, "token_nll: target {} at row {} not in [0, {})",
              targets[i], i, v);
    out[i] = -acc[static_cast<int64_t>(i)][targets[i]];
  }
  return out;
}

double perplexity(const std::vector<double>& nll) {
  ELI_CHECK(!nll.empty(), "perplexity of zero tokens");
  return std::exp(mean(nll));
}

std::vector<double> kl_divergence_rows(const at::Tensor& ref_logits, const at::Tensor& logits) {
  check_same_shape(ref_logits, logits, "kl_divergence");
  at::Tensor lp = at::log_softmax(as_rows(ref_logits, "kl_divergence"), -1);
  at::Tensor lq = at::log_softmax(as_rows(logits, "kl_divergence"), -1);
  // p = 0 contributes 0 (the limit of p log p); exp(lp) underflowing to 0 gives exactly that.
  at::Tensor kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0);
  std::vector<double> out(static_cast<size_t>(kl.size(0)));
  auto acc = kl.accessor<double, 1>();
  for (int64_t i = 0; i < kl.size(0); ++i) out[static_cast<size_t>(i)] = acc[i];
  return out;
}

double kl_divergence(const at::Tensor& ref_logits, const at::Tensor& logits) {
  return mean(kl_divergence_rows(ref_logits, logits));
}

double top1_agreement(const at::Tensor& ref_logits, const at::Tensor& logits) {
  check_same_shape(ref_logits, logits, "top1_agreement");
  at::Tensor a = as_rows(ref_logits, "top1_agreement").argmax(-1);
  at::Tensor b = as_rows(logits, "top1_agreement").argmax(-1);
  ELI_CHECK(a.size(0) > 0, "top1_agreement of zero rows");
  return a.eq(b).to(at::kDouble).mean().item<double>();
}

int64_t first_divergence(const std::vector<int64_t>& ref, const std::vector<int64_t>& hyp) {
  const size_t n = std::min(ref.size(), hyp.size());
  for (size_t i = 0; i < n; ++i) {
    if (ref[i] != hyp[i]) return static_cast<int64_t>(i);
  }
  return ref.size() == hyp.size() ? -1 : static_cast<int64_t>(n);
}

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

double bytes_per_token(const CacheStats& s, int64_t batch) {
  ELI_CHECK(batch >= 1, "bytes_per_token: batch = {} must be >= 1", batch);
  if (s.tokens_seen <= 0) return 0.0;
  return static_cast<double>(s.total_bytes()) / static_cast<double>(batch * s.tokens_seen);
}

double bytes_per_token(const CacheStats& s, const std::vector<int64_t>& seen) {
  int64_t n = 0;
  for (int64_t x : seen) {
    ELI_CHECK(x >= 0, "bytes_per_token: a sequence saw {} positions", x);
    n += x;
  }
  return n > 0 ? static_cast<double>(s.total_bytes()) / static_cast<double>(n) : 0.0;
}

double bytes_per_stored_token(const CacheStats& s, int64_t batch) {
  ELI_CHECK(batch >= 1, "bytes_per_stored_token: batch = {} must be >= 1", batch);
  if (s.tokens_stored <= 0) return 0.0;
  return static_cast<double>(s.total_bytes()) / static_cast<double>(batch * s.tokens_stored);
}

}  // namespace eli::benchmark
