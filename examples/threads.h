#pragma once
// --threads, the same in every example tool: intra-op CPU threads, 0 = LibTorch's default (its
// physical-core count, or OMP_NUM_THREADS). Not one per logical core: on the 2-vCPU machines of
// this project two threads made a 128-token prefill 10x slower than one (70-89 ms vs 7 ms,
// decode_speed, shipped model), the threads spinning on each other.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>

namespace examples {

inline void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("--threads", threads,
                 "Intra-op CPU threads (0 = LibTorch's default: physical cores or OMP_NUM_THREADS)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
}

inline void apply_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace examples
