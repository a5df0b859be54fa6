// custom_cache: a KV-cache codec written outside eli, registered under a name of its own and
// benchmarked next to the built-in methods with the same report as basic_benchmark.
//
// Fp8Codec stores each key/value as an FP8 E4M3 code (1 sign, 4 exponent, 3 mantissa bits;
// largest finite value 448, no infinities) in uint8 storage, with one fp16 scale per token and
// head (absmax / 448): an FP8 cache emulated on hardware without FP8. It satisfies the codec
// requirements of eli/cache/codec.h (kQuantized, constructor, parts, name, encode, decode,
// reset); it has no store(), so decode steps run the ATen path (gather + decode + softmax).
//
//   custom_cache                          # full_cache, quant_int8, quant_fp8, sliding_window+fp8
//   custom_cache --methods quant_fp8,paged+fp8 --batch 2 --prompt-len 256
#include <array>
#include <cmath>
#include <vector>

#include "bench_common.h"
#include "eli/cache/quantize.h"
#include "eli/cache/registry.h"
#include "exit_status.h"

namespace {

// E4M3 ("fn": no infinities, code 0x7F = NaN): codes 0 .. 126 are the non-negative finite
// values in increasing order, so the nearest code is found by a sorted search.
constexpr int kFp8Finite = 127;
constexpr float kFp8Max = 448.0f;

std::array<float, kFp8Finite> fp8_values() {
  std::array<float, kFp8Finite> v{};
  for (int c = 0; c < kFp8Finite; ++c) {
    const int e = c >> 3, m = c & 7;
    v[static_cast<size_t>(c)] =
        e == 0 ? std::ldexp(m / 8.0f, -6) : std::ldexp(1.0f + m / 8.0f, e - 7);
  }
  return v;
}

class Fp8Codec {
 public:
  static constexpr bool kQuantized = true;

  explicit Fp8Codec(const eli::cache::CodecArgs& a) : head_dim_(a.head_dim), eps_(a.spec.eps) {
    const auto v = fp8_values();
    magnitudes_ = at::tensor(std::vector<float>(v.begin(), v.end())).to(a.device);
    // Value of every code 0 .. 255 (sign in bit 7); the NaN codes are never written.
    values_ = at::cat({magnitudes_, at::zeros({1}, magnitudes_.options()), -magnitudes_,
                       at::zeros({1}, magnitudes_.options())});
  }

  // Per (sequence, head, slot): D one-byte codes (payload) and one fp16 scale.
  std::vector<eli::cache::PartSpec> parts() const {
    return {{head_dim_, at::kByte, false}, {1, at::kHalf, true}};
  }
  std::string name() const { return "fp8"; }

  // x [B, H, T, D] -> {codes uint8 [B, H, T, D], scales fp16 [B, H, T, 1]}.
  eli::cache::Parts encode(int, const at::Tensor& x) const {
    const at::Tensor xf = x.to(at::kFloat);
    // Rounded up to fp16 so that x / s stays within +-448 with the stored scale.
    const at::Tensor s = eli::quant::to_half_up(
        at::clamp_min(xf.abs().amax(-1, true) / kFp8Max, static_cast<double>(eps_)));
    const at::Tensor y = (xf / s.to(at::kFloat)).clamp(-kFp8Max, kFp8Max);
    const at::Tensor mag = y.abs().contiguous();
    // The first code whose value is >= |y|, or the one below it when that one is nearer
    // (ties to the even code, as round-to-nearest-even does).
    const at::Tensor hi = at::searchsorted(magnitudes_, mag).clamp_max(kFp8Finite - 1);
    const at::Tensor lo = (hi - 1).clamp_min(0);
    const at::Tensor d_hi = magnitudes_.index_select(0, hi.flatten()).view_as(mag) - mag;
    const at::Tensor d_lo = mag - magnitudes_.index_select(0, lo.flatten()).view_as(mag);
    const at::Tensor take_lo = (d_lo < d_hi) | ((d_lo == d_hi) & (lo.remainder(2) == 0));
    const at::Tensor code = at::where(take_lo, lo, hi) + (y < 0).to(at::kLong) * 128;
    return {code.to(at::kByte), s};
  }

  // {codes [B, H, S, D], scales [B, H, S, 1]} -> fp32 [B, H, S, D].
  at::Tensor decode(int, const eli::cache::Parts& p) const {
    const at::Tensor v = values_.index_select(0, p[0].to(at::kLong).flatten()).view(p[0].sizes());
    return v * p[1].to(at::kFloat);
  }

  void reset() {}

 private:
  int64_t head_dim_;
  float eps_;
  at::Tensor magnitudes_;  // fp32 [127] on the cache's device, code -> |value|
  at::Tensor values_;      // fp32 [256], code -> value
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"eli custom_cache: a user-written FP8 codec benchmarked next to built-in methods"};
  examples::CommonOptions o;
  examples::add_common_options(app, o);
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  int failed = 0;
  try {
    // The spec token "fp8" with every built-in layout ("full+fp8", "paged(block=16)+fp8", ...)
    // and a method name of its own; from here on every tool that takes a method takes these.
    eli::cache::register_codec<Fp8Codec>("fp8");
    eli::cache::register_method("quant_fp8", "full+fp8");
    if (o.methods.empty()) {
      o.methods = {"full_cache", "quant_int8", "quant_fp8", "sliding_window+fp8"};
    }
    auto s = examples::load(o, "random:L4-E256-H4");
    eli::benchmark::Benchmarker b(*s.model, examples::bench_config(o, s),
                                  s.tokenizer ? &*s.tokenizer : nullptr);
    const auto prompts = eli::benchmark::make_prompt_batch(examples::prompt_stream(o, s),
                                                           o.batch.front(), o.prompt_len.front());
    eli::benchmark::SweepConfig sweep;
    sweep.max_new_tokens = o.max_new_tokens;
    failed = examples::emit(examples::run_methods(s, b, prompts, o.methods, sweep, argc, argv), o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return failed > 0 ? examples::kExitFailed : examples::kExitOk;
}
