#pragma once
// Helpers shared by the Benchmarker tests (tests/test_benchmarker.cpp,
// tests/test_report_markdown.cpp).

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace eli::benchmark::testing {

/// n token ids drawn uniformly from 0..999 (the random test models' vocabulary), seeded.
inline std::vector<int64_t> random_ids(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> d(0, 999);
  std::vector<int64_t> ids(n);
  for (auto& x : ids) x = d(rng);
  return ids;
}

}  // namespace eli::benchmark::testing
