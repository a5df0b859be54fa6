// Must not compile: a codec without decode(). The ctest compile_fail_codec builds this file
// and passes only when the compiler stops at check_codec's static_assert naming the member
// (include/eli/cache/codec.h).
#include <eli/cache/cache.h>
#include <eli/cache/contiguous.h>

#include <string>
#include <vector>

namespace {

using namespace eli::cache;

class NoDecodeCodec {
 public:
  static constexpr bool kQuantized = false;
  explicit NoDecodeCodec(const CodecArgs& a) : head_dim_(a.head_dim) {}
  std::vector<PartSpec> parts() const { return {{head_dim_, at::kFloat, false}}; }
  std::string name() const { return "no_decode"; }
  Parts encode(int, const at::Tensor& x) const { return {x.to(at::kFloat)}; }
  void reset() {}

 private:
  int64_t head_dim_;
};

}  // namespace

// Completing the class type runs Cache's static_asserts.
static_assert(sizeof(Cache<ContiguousLayout, NoDecodeCodec, NoDecodeCodec>) > 0);
