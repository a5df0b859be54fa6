// Must not compile: a layout whose write() still takes the separate arguments of earlier
// versions instead of one WriteArgs. The ctest compile_fail_layout builds this file and passes
// only when the compiler stops at check_layout's static_assert naming the member
// (include/eli/cache/layout.h).
#include <eli/cache/cache.h>
#include <eli/cache/codecs.h>

#include <functional>
#include <string>

namespace {

using namespace eli::cache;

class OldWriteLayout {
 public:
  explicit OldWriteLayout(const LayoutArgs&) {}
  std::string name() const { return "old_write"; }
  void write(int, int64_t, const Parts&, const Parts&) {}
  Gathered gather(int, int64_t) const { return {}; }
  void for_each_buffer(int, bool, const std::function<void(Parts&)>&) {}
  Footprint footprint(int64_t) const { return {}; }
  int64_t window() const { return 0; }
  int64_t sinks() const { return 0; }
  void reset() {}
};

}  // namespace

// Completing the class type runs Cache's static_asserts.
static_assert(sizeof(Cache<OldWriteLayout, IdentityCodec, IdentityCodec>) > 0);
