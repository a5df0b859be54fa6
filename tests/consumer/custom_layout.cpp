// A layout written against the installed headers: the newest `keep` positions in a ring
// (a sliding window without sinks, by other means). Registered as "recent", it must give the
// built-in sliding window's attention bit for bit (both on the ATen path), by name through
// make_cache and through the Generator.
#include <eli/cache/registry.h>
#include <eli/eli.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

class RecentLayout {
 public:
  explicit RecentLayout(const eli::cache::LayoutArgs& a)
      : a_(a), keep_(a.params.count("keep") ? a.params.at("keep") : 16) {
    buf_.allocate(a_, a_.batch, keep_);
  }
  std::string name() const { return "recent(keep=" + std::to_string(keep_) + ")"; }
  void write(const eli::cache::WriteArgs& w) {
    const int64_t t = w.k[0].size(2);
    std::vector<int64_t> src, dst;  // only positions still held after this write
    for (int64_t p = std::max(w.pos0, w.pos0 + t - keep_); p < w.pos0 + t; ++p) {
      src.push_back(p - w.pos0);
      dst.push_back(p % keep_);
    }
    eli::cache::write_slots(buf_.k[w.layer], w.k, src, dst);
    eli::cache::write_slots(buf_.v[w.layer], w.v, src, dst);
  }
  eli::cache::Gathered gather(int layer, int64_t n) const {
    eli::cache::Gathered g;
    g.pos = eli::cache::iota(std::max<int64_t>(n - keep_, 0), n);
    g.bias.assign(g.pos.size(), 0.0f);
    std::vector<int64_t> slots;
    for (int64_t p : g.pos) slots.push_back(p % keep_);
    g.k = eli::cache::read_slots(buf_.k[layer], slots);
    g.v = eli::cache::read_slots(buf_.v[layer], slots);
    return g;
  }
  void for_each_buffer(int layer, bool is_v, const std::function<void(eli::cache::Parts&)>& fn) {
    fn(buf_.side(layer, is_v));
  }
  eli::cache::Footprint footprint(int64_t n) const {
    eli::cache::Footprint f;
    f.stored_per_seq = std::min(n, keep_);
    f.evicted_per_seq = n - f.stored_per_seq;
    f.slots_stored = a_.batch * f.stored_per_seq;
    f.slots_allocated = a_.batch * keep_;
    return f;
  }
  int64_t window() const { return keep_; }
  int64_t sinks() const { return 0; }
  void reset() {}

 private:
  eli::cache::LayoutArgs a_;
  int64_t keep_;
  eli::cache::SlotBuffers buf_;
};

}  // namespace

int main() {
  eli::cache::register_layout<RecentLayout>({"recent", {}, {"keep"}});
  const auto model =
      eli::model::GPT2::from_spec("random:L2-E64-H2-V300-P96", at::kCPU, at::kFloat, 3);
  eli::cache::fused_decode_on_cpu() = false;  // the built-in window on the ATen path as well
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < 20; ++i) prompt.push_back((i * 37 + 5) % 300);
  at::Tensor ids = at::tensor(prompt).unsqueeze(0);
  auto mine =
      eli::make_cache("recent(keep=8)+int8", model.shape(), 1, {}, {}, at::kFloat, at::kCPU);
  auto ref =
      eli::make_cache("sliding(window=8)+int8", model.shape(), 1, {}, {}, at::kFloat, at::kCPU);
  double worst = 0.0;
  at::Tensor a = model.forward(ids, 0, mine.get()), b = model.forward(ids, 0, ref.get());
  worst = std::max(worst, (a - b).abs().max().item<double>());
  for (int64_t t = 0; t < 30; ++t) {
    at::Tensor next = a.select(1, a.size(1) - 1).argmax(-1, true);
    a = model.forward(next, 20 + t, mine.get());
    b = model.forward(next, 20 + t, ref.get());
    worst = std::max(worst, (a - b).abs().max().item<double>());
  }
  if (mine->name() != "recent(keep=8)+int8/per_token_head" || worst != 0.0 ||
      mine->stats().tokens_stored != 8) {
    std::fprintf(stderr, "custom layout: %s differs from the sliding window by %g\n",
                 mine->name().c_str(), worst);
    return 1;
  }
  eli::GenerationConfig cfg;
  cfg.method = "recent(keep=8)";
  cfg.max_new_tokens = 6;
  const auto res = eli::Generator(model).generate({prompt}, cfg);
  if (res.tokens[0].size() != 6) return 1;
  std::printf("consumer custom layout ok: %s, %lld tokens stored\n", mine->name().c_str(),
              static_cast<long long>(res.cache_stats.tokens_stored));
  return 0;
}
