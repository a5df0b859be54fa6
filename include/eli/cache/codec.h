#pragma once
/// What a codec is: how one of K or V is stored per token slot. A codec turns rows
/// [B, H, T, D] into "parts" (for example codes, scales, minima; each [B, H, T, width]) that a
/// layout stores slot by slot, and turns gathered parts back into fp32 rows. Codecs are the
/// KCodec / VCodec arguments of Cache<Layout, KCodec, VCodec> (eli/cache/cache.h); the built-in
/// ones are in eli/cache/codecs.h, examples/custom_cache.cpp writes one of its own.
///
/// A codec C provides (checked by check_codec<C>() when a Cache is instantiated):
///
///   static constexpr bool kQuantized;                  true: the values are not stored as is
///                                                      (enables residual=N and rotate)
///   explicit C(const CodecArgs&);
///   std::vector<PartSpec> parts() const;               what one slot holds, per (sequence, head)
///   std::string name() const;                          its spec token, e.g. "int8/per_token_head"
///   Parts encode(int layer, const at::Tensor& x) const;   x [B, H, T, D] (model dtype or fp32)
///                                                      -> one tensor [B, H, T, width] per part
///   at::Tensor decode(int layer, const Parts& p) const;   parts [B, H, S, width] -> fp32
///                                                      [B, H, S, D]
///   void reset();                                      forget per-cache state
///
/// and optionally:
///
///   ops::KvStore store(int layer, const Parts& stored) const;
///       the stored buffers [N, H, S, width] as the ops' storage view (eli/ops.h). With it (and a
///       layout that has decode_regions) a decode step reads the storage in place through the
///       fused kernels; without it every step decodes through decode() (the ATen path).
///   bool per_tensor() const; float observe(int layer, const at::Tensor& x);
///   void rescale(int layer, Parts& stored, float old_scale) const;
///   int64_t tensor_scale_bytes() const;
///       a scale shared by every slot of a layer (see QuantCodec): observe() sees each append
///       before it is encoded and returns the previous scale when the stored slots must be
///       re-expressed with rescale(), else 0. All four or none.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eli/ops.h"
#include "eli/quant.h"

namespace eli::cache {

/// One stored part of a slot: `width` elements of `dtype` per (sequence, head, slot).
struct PartSpec {
  int64_t width = 0;
  at::ScalarType dtype = at::kFloat;
  bool is_scale = false;  // scales / minima (CacheStats::scale_bytes) vs payload
  int64_t bytes() const { return width * static_cast<int64_t>(at::elementSize(dtype)); }
};
/// The parts of a run of slots, in the order of the codec's parts().
using Parts = std::vector<at::Tensor>;

/// What make_cache passes to a codec: the model side plus this codec's quantization.
struct CodecArgs {
  int64_t n_layer = 0;
  int64_t head_dim = 0;
  at::ScalarType dtype = at::kFloat;  // model dtype
  at::Device device = at::kCPU;
  quant::QuantSpec spec;  // from the spec string and QuantizationConfig; a codec may ignore it
};

namespace detail {

template <class T, template <class> class Op, class = void>
struct detected : std::false_type {};
template <class T, template <class> class Op>
struct detected<T, Op, std::void_t<Op<T>>> : std::true_type {};
/// Whether Op<T> is well-formed and converts to R.
template <class T, template <class> class Op, class R, class = void>
struct returns : std::false_type {};
template <class T, template <class> class Op, class R>
struct returns<T, Op, R, std::void_t<Op<T>>> : std::is_convertible<Op<T>, R> {};

template <class C>
using codec_quantized_t = decltype(C::kQuantized);
template <class C>
using codec_parts_t = decltype(std::declval<const C&>().parts());
template <class C>
using codec_name_t = decltype(std::declval<const C&>().name());
template <class C>
using codec_encode_t =
    decltype(std::declval<const C&>().encode(0, std::declval<const at::Tensor&>()));
template <class C>
using codec_decode_t = decltype(std::declval<const C&>().decode(0, std::declval<const Parts&>()));
template <class C>
using codec_reset_t = decltype(std::declval<C&>().reset());
template <class C>
using codec_store_t = decltype(std::declval<const C&>().store(0, std::declval<const Parts&>()));
template <class C>
using codec_observe_t = decltype(std::declval<C&>().observe(0, std::declval<const at::Tensor&>()));
template <class C>
using codec_rescale_t = decltype(std::declval<const C&>().rescale(0, std::declval<Parts&>(), 0.f));
template <class C>
using codec_per_tensor_t = decltype(std::declval<const C&>().per_tensor());
template <class C>
using codec_scale_bytes_t = decltype(std::declval<const C&>().tensor_scale_bytes());

}  // namespace detail

/// Whether codec C can be read in place by the fused decode kernels (has store()).
template <class C>
constexpr bool codec_has_store = detail::returns<C, detail::codec_store_t, ops::KvStore>::value;
/// Whether codec C keeps a per-layer scale that may grow (observe / rescale).
template <class C>
constexpr bool codec_has_tensor_scale = detail::returns<C, detail::codec_observe_t, float>::value;

/// Compile-time check that C is a codec (see the top of this file); each missing member fails
/// with a message naming it.
template <class C>
constexpr bool check_codec() {
  static_assert(detail::returns<C, detail::codec_quantized_t, bool>::value,
                "codec: needs `static constexpr bool kQuantized`");
  static_assert(std::is_constructible_v<C, const CodecArgs&>,
                "codec: needs a constructor C(const CodecArgs&)");
  static_assert(detail::returns<C, detail::codec_parts_t, std::vector<PartSpec>>::value,
                "codec: needs `std::vector<PartSpec> parts() const`");
  static_assert(detail::returns<C, detail::codec_name_t, std::string>::value,
                "codec: needs `std::string name() const`");
  static_assert(detail::returns<C, detail::codec_encode_t, Parts>::value,
                "codec: needs `Parts encode(int layer, const at::Tensor& x) const`");
  static_assert(detail::returns<C, detail::codec_decode_t, at::Tensor>::value,
                "codec: needs `at::Tensor decode(int layer, const Parts& p) const`");
  static_assert(detail::detected<C, detail::codec_reset_t>::value, "codec: needs `void reset()`");
  static_assert(!codec_has_tensor_scale<C> ||
                    (detail::detected<C, detail::codec_rescale_t>::value &&
                     detail::returns<C, detail::codec_per_tensor_t, bool>::value &&
                     detail::returns<C, detail::codec_scale_bytes_t, int64_t>::value),
                "codec: observe() needs rescale(int, Parts&, float) const, bool per_tensor() "
                "const and int64_t tensor_scale_bytes() const as well");
  return true;
}

}  // namespace eli::cache
