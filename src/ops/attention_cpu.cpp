// CPU decode attention over stored codes. Per (sequence, head): the query is scaled once; keys
// are read in blocks of kBlock slots (each row decoded into a small fp32 buffer, then dotted
// with q), the block's logits update a running max and sum (online softmax), and the values are
// decoded the same way and accumulated with weight p into an fp32 buffer. The loops are plain
// C++ written so that the compiler vectorizes them (lane accumulators for the dot, no
// reductions elsewhere); on x86-64 Linux with GCC the worker is also compiled for x86-64-v3
// (AVX2/FMA) and picked at load time. The order of every sum depends only on the slot index,
// so paged and contiguous storage holding the same rows give bit-identical results.

#include "ops/attention_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "eli/error.h"
#include "eli/quant_layout.h"
#include "ops/storage.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ELI_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ELI_CPU_CLONES
#endif
#if defined(__GNUC__)
#define ELI_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ELI_ALWAYS_INLINE inline
#endif

namespace eli::ops::detail {

namespace {

enum class Fmt { kF32, kF16, kS8, kU8, kS4, kU4 };

/// One of K / V as raw pointers. Quantized rows decode in chunks of kChunk elements (a group
/// holds whole chunks; a per-row scale may leave a tail), fixed-size loops the compiler
/// unrolls and vectorizes. Packed INT4 chunks decode as (8 even elements, 8 odd elements), so
/// loads and stores stay contiguous; q and the accumulator use that order.
struct Side {
  Fmt fmt = Fmt::kF32;
  const uint8_t* data = nullptr;
  const at::Half* scales = nullptr;  // [rows, groups]; null: per_tensor
  const at::Half* minima = nullptr;  // [rows, groups] with zero point
  int64_t row_bytes = 0, groups = 1, gw = 0;
  float tensor_scale = 0.f;
};

Side side_of(const KvStore& s, int64_t D) {
  Side r;
  r.data = static_cast<const uint8_t*>(s.data.data_ptr());
  r.gw = D;
  if (s.bits == 16) {
    ELI_CHECK(s.data.scalar_type() == at::kFloat || s.data.scalar_type() == at::kHalf,
              "decode_attention (CPU): fp storage must be fp32 or fp16, got {}",
              c10::toString(s.data.scalar_type()));
    r.fmt = s.data.scalar_type() == at::kFloat ? Fmt::kF32 : Fmt::kF16;
    r.row_bytes = D * static_cast<int64_t>(s.data.element_size());
    return r;
  }
  const bool zp = s.spec.zero_point;
  r.fmt = s.bits == 8 ? (zp ? Fmt::kU8 : Fmt::kS8) : (zp ? Fmt::kU4 : Fmt::kS4);
  r.row_bytes = s.bits == 8 ? D : D / 2;
  if (s.spec.granularity == Granularity::kPerTensor) {
    r.tensor_scale = s.tensor_scale;
  } else {
    r.groups = s.spec.groups(D);
    r.gw = D / r.groups;
    r.scales = s.scales.data_ptr<at::Half>();
    if (zp) r.minima = s.minima.data_ptr<at::Half>();
  }
  return r;
}

constexpr int64_t kChunk = 16;

/// Position of natural element i in the side's decode order.
int64_t order_of(const Side& s, int64_t D, int64_t i) {
  if (s.fmt != Fmt::kS4 && s.fmt != Fmt::kU4) return i;
  if (s.groups == 1 && i >= D - D % kChunk) return i;  // tail of a per-row scale: in order
  const int64_t g = i / s.gw, j = i % s.gw;
  const int64_t c = j / kChunk, r = j % kChunk;
  return g * s.gw + c * kChunk + (r % 2) * (kChunk / 2) + r / 2;
}

template <class Code>
ELI_ALWAYS_INLINE void decode_int8(const Code* __restrict c, int64_t n, float sc, float m,
                                   float* __restrict o) {
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    for (int64_t j = 0; j < kChunk; ++j) o[i + j] = static_cast<float>(c[i + j]) * sc + m;
  }
  for (; i < n; ++i) o[i] = static_cast<float>(c[i]) * sc + m;
}

/// n elements (even) from n / 2 bytes, low nibble = even element; codes are nibble - off.
ELI_ALWAYS_INLINE void decode_int4(const uint8_t* __restrict c, int64_t n, int off, float sc,
                                   float m, float* __restrict o) {
  constexpr int64_t kHalf = kChunk / 2;
  int64_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    int32_t w[kHalf];  // bytes widened first: nibble ops on 32-bit lanes
    for (int64_t j = 0; j < kHalf; ++j) w[j] = c[i / 2 + j];
    float* oc = o + i;
    for (int64_t j = 0; j < kHalf; ++j) {
      oc[j] = static_cast<float>((w[j] & 0xF) - off) * sc + m;
      oc[kHalf + j] = static_cast<float>((w[j] >> 4) - off) * sc + m;
    }
  }
  for (; i < n; i += 2) {
    o[i] = static_cast<float>(static_cast<int>(c[i / 2] & 0xF) - off) * sc + m;
    o[i + 1] = static_cast<float>(static_cast<int>(c[i / 2] >> 4) - off) * sc + m;
  }
}

/// Storage row -> D fp32 values (x' = code * s + m per group); fp32 rows are returned in place.
ELI_ALWAYS_INLINE const float* decode_row(const Side& s, int64_t row, int64_t D, float* buf) {
  const uint8_t* p = s.data + row * s.row_bytes;
  if (s.fmt == Fmt::kF32) return reinterpret_cast<const float*>(p);
  if (s.fmt == Fmt::kF16) {
    const at::Half* h = reinterpret_cast<const at::Half*>(p);
    for (int64_t i = 0; i < D; ++i) buf[i] = static_cast<float>(h[i]);
    return buf;
  }
  const int64_t gw = s.gw;
  for (int64_t g = 0; g < s.groups; ++g) {
    float sc = s.tensor_scale, m = 0.f;
    if (s.scales != nullptr) {
      sc = static_cast<float>(s.scales[row * s.groups + g]);
      if (s.minima != nullptr) m = static_cast<float>(s.minima[row * s.groups + g]);
    }
    float* o = buf + g * gw;
    switch (s.fmt) {
      case Fmt::kS8:
        decode_int8(reinterpret_cast<const int8_t*>(p) + g * gw, gw, sc, m, o);
        break;
      case Fmt::kU8:
        decode_int8(p + g * gw, gw, sc, m, o);
        break;
      case Fmt::kS4:
        decode_int4(p + g * gw / 2, gw, quant::kInt4Offset, sc, m, o);
        break;
      default:
        decode_int4(p + g * gw / 2, gw, 0, sc, m, o);
        break;
    }
  }
  return buf;
}

constexpr int64_t kLanes = 16;  // independent partial sums of a dot product
constexpr int64_t kBlock = 64;  // slots per softmax block

ELI_ALWAYS_INLINE float dot(const float* __restrict a, const float* __restrict b, int64_t D) {
  float acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= D; d += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += a[d + j] * b[d + j];
  }
  float tail = 0.f;
  for (; d < D; ++d) tail += a[d] * b[d];
  for (int64_t w = kLanes / 2; w > 0; w /= 2) {
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0] + tail;
}

ELI_ALWAYS_INLINE void axpy(float a, const float* __restrict x, float* __restrict y, int64_t D) {
  for (int64_t d = 0; d < D; ++d) y[d] += a * x[d];
}

/// exp(x) for x <= 0 (Cephes expf: 2^n * poly(r), relative error < 1e-7); 0 below -87, where
/// expf underflows. Selections on integer bits, not float compares, so the loop vectorizes
/// under the default -ftrapping-math.
ELI_ALWAYS_INLINE float exp_nonpos(float x) {
  int32_t ix;
  std::memcpy(&ix, &x, sizeof(ix));
  constexpr uint32_t kMinus87 = 0xC2AE0000u;  // bits of -87.f; for x <= 0, bits grow with |x|
  const int32_t under = -static_cast<int32_t>(static_cast<uint32_t>(ix) > kMinus87);
  const int32_t cx = (ix & ~under) | (static_cast<int32_t>(kMinus87) & under);
  float xc;
  std::memcpy(&xc, &cx, sizeof(xc));
  // A NaN (or positive) x would reach the int conversion below, which is then undefined: such
  // x read as 0 (select, no branch; NaN compares false).
  xc = xc <= 0.f ? xc : 0.f;
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  const int32_t pow2_bits = (static_cast<int32_t>(n) + 127) << 23;
  float pow2;
  std::memcpy(&pow2, &pow2_bits, sizeof(pow2));
  const float e = y * pow2;
  int32_t ie;
  std::memcpy(&ie, &e, sizeof(ie));
  ie &= ~under;
  float res;
  std::memcpy(&res, &ie, sizeof(res));
  return res;
}

struct Job {
  Side k, v;
  const float* q = nullptr;  // [B * H, D]
  float* out = nullptr;      // [B * H, D]
  float* lse = nullptr;      // [B * H]
  const int32_t* lens = nullptr;
  const int32_t* table = nullptr;  // paged: [B, max_blocks]
  int64_t max_blocks = 0, H = 0, D = 0, S = 0;
  const float* bias = nullptr;
  int64_t bias_stride = 0;
  float scale = 0.f;
};

ELI_CPU_CLONES void attend_range(const Job& j, int64_t begin, int64_t end) {
  const int64_t D = j.D, H = j.H, S = j.S;
  std::vector<float> qk(D), acc(D), kbuf(D), vbuf(D), logit(kBlock), p(kBlock);
  std::vector<int64_t> rows(kBlock);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / H, h = bh % H, len = j.lens[b];
    float* o = j.out + bh * D;
    if (len == 0) {
      std::fill(o, o + D, 0.f);
      j.lse[bh] = -std::numeric_limits<float>::infinity();
      continue;
    }
    for (int64_t i = 0; i < D; ++i) qk[order_of(j.k, D, i)] = j.q[bh * D + i] * j.scale;
    std::fill(acc.begin(), acc.end(), 0.f);
    float m = -std::numeric_limits<float>::infinity(), sum = 0.f;
    for (int64_t t0 = 0; t0 < len; t0 += kBlock) {
      const int64_t n = std::min(kBlock, len - t0);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = t0 + i;
        rows[i] =
            j.table == nullptr
                ? bh * S + t
                : (static_cast<int64_t>(j.table[b * j.max_blocks + t / S]) * H + h) * S + t % S;
      }
      float bm = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < n; ++i) {
        float l = dot(qk.data(), decode_row(j.k, rows[i], D, kbuf.data()), D);
        if (j.bias != nullptr) l += j.bias[b * j.bias_stride + t0 + i];
        logit[i] = l;
        bm = std::max(bm, l);
      }
      if (bm > m) {
        if (sum > 0.f) {
          const float c = std::exp(m - bm);
          sum *= c;
          for (int64_t d = 0; d < D; ++d) acc[d] *= c;
        }
        m = bm;
      }
      for (int64_t i = 0; i < n; ++i) p[i] = exp_nonpos(logit[i] - m);
      for (int64_t i = 0; i < n; ++i) {
        const float pi = p[i];
        sum += pi;
        const float* vr = decode_row(j.v, rows[i], D, vbuf.data());
        axpy(pi, vr, acc.data(), D);
      }
    }
    const float inv = 1.f / sum;
    for (int64_t i = 0; i < D; ++i) o[i] = acc[order_of(j.v, D, i)] * inv;
    j.lse[bh] = m + std::log(sum);
  }
}

}  // namespace

void cpu_decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                              const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse) {
  for (const at::Tensor* t : {&q, &k.data, &v.data, &args.seq_lens, &args.block_table, &args.bias,
                              static_cast<const at::Tensor*>(&out)}) {
    ELI_CHECK(!t->defined() || t->device().is_cpu(),
              "decode_attention (CPU): every tensor must be on the CPU, got {}", t->device().str());
  }
  StoreInfo ki, vi;
  const int64_t max_len = check_attention(q, k, v, args, out, &ki, &vi);
  const int64_t B = q.size(0), H = q.size(1), D = q.size(-1);
  const int32_t* lens = args.seq_lens.data_ptr<int32_t>();
  const int32_t* table = ki.paged ? args.block_table.data_ptr<int32_t>() : nullptr;
  const int64_t max_blocks = ki.paged ? args.block_table.size(1) : 0;
  const int64_t pool = std::min(k.data.size(0), v.data.size(0));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lens[b];
    ELI_CHECK(len >= 0 && len <= max_len, "decode_attention: seq_lens[{}] = {} outside [0, {}]", b,
              len, max_len);
    if (table == nullptr) continue;
    for (int64_t blk = 0; blk * ki.slots < len; ++blk) {
      const int64_t e = table[b * max_blocks + blk];
      ELI_CHECK(e >= 0 && e < pool,
                "decode_attention: block table entry [{}][{}] = {} outside the pool of {} blocks",
                b, blk, e, pool);
    }
  }
  Job j;
  j.k = side_of(k, D);
  j.v = side_of(v, D);
  const at::Tensor qf = q.reshape({B, H, D}).to(at::kFloat).contiguous();
  const bool direct = out.scalar_type() == at::kFloat && out.is_contiguous();
  at::Tensor res = direct ? out : at::empty({B, H, D}, at::kFloat);
  at::Tensor lse_t = at::empty({B, H}, at::kFloat);
  j.q = qf.data_ptr<float>();
  j.out = res.data_ptr<float>();
  j.lse = lse_t.data_ptr<float>();
  j.lens = lens;
  j.table = table;
  j.max_blocks = max_blocks;
  j.H = H;
  j.D = D;
  j.S = ki.slots;
  if (args.bias.defined()) {
    j.bias = args.bias.data_ptr<float>();
    j.bias_stride = args.bias.stride(0);
  }
  j.scale = static_cast<float>(args.sm_scale > 0 ? args.sm_scale
                                                 : 1.0 / std::sqrt(static_cast<double>(D)));
  at::parallel_for(0, B * H, 1, [&](int64_t b0, int64_t b1) { attend_range(j, b0, b1); });
  if (!direct) out.copy_(res.view(out.sizes()));
  if (lse != nullptr) {
    if (lse->defined() && lse->sizes() == lse_t.sizes()) {
      lse->copy_(lse_t);
    } else {
      *lse = lse_t;
    }
  }
}

}  // namespace eli::ops::detail
