#pragma once
// --threads, the same in every example tool: intra-op CPU threads, 0 = one per core.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <thread>

namespace examples {

inline void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "Intra-op CPU threads (0 = one per core)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
}

inline void apply_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (n > 0) at::set_num_threads(n);
}

}  // namespace examples
