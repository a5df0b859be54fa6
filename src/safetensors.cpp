// safetensors reader and writer. The reader checks what the reference implementation
// (huggingface/safetensors, `SafeTensors::read_metadata` + `Metadata::validate`) checks, in the
// same order, so a file is accepted here exactly when Python/Rust safetensors accept it. One
// extra rule: a dimension above INT64_MAX is refused, since at::Tensor cannot hold it (the
// reference would accept e.g. shape [2^63+1, 0], whose element count is 0).

#include "eli/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "eli/error.h"
#include "json_excerpt.h"
#include "utf8.h"

namespace eli::safetensors {
namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference's MAX_HEADER_SIZE
constexpr uint64_t kLenBytes = 8;

struct DTypeEntry {
  DType dtype;
  const char* name;
  int64_t size;
  at::ScalarType scalar;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8, at::kDouble}, {DType::kF32, "F32", 4, at::kFloat},
    {DType::kF16, "F16", 2, at::kHalf},   {DType::kBF16, "BF16", 2, at::kBFloat16},
    {DType::kI64, "I64", 8, at::kLong},   {DType::kI32, "I32", 4, at::kInt},
    {DType::kI16, "I16", 2, at::kShort},  {DType::kI8, "I8", 1, at::kChar},
    {DType::kU8, "U8", 1, at::kByte},     {DType::kBool, "BOOL", 1, at::kBool},
};

const DTypeEntry& entry(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e;
  ELI_FAIL("safetensors: invalid DType value {}", static_cast<int>(d));
}

DType from_scalar_type(at::ScalarType st, const std::string& name) {
  for (const auto& e : kDTypes)
    if (e.scalar == st) return e.dtype;
  ELI_FAIL("safetensors: tensor '{}' has dtype {}, which safetensors cannot store here", name,
           c10::toString(st));
}

// serde's usize accepts JSON integers >= 0 (including "-0") and nothing else.
bool as_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

int64_t dtype_size(DType d) { return entry(d).size; }
const char* dtype_name(DType d) { return entry(d).name; }

struct File::Impl {
  std::string origin;
  std::vector<uint8_t> owned;  // from_bytes
  void* map = nullptr;         // open
  size_t map_len = 0;
  const uint8_t* bytes = nullptr;
  uint64_t size = 0;
  uint64_t data_start = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (map) munmap(map, map_len);
  }

  template <typename... Args>
  [[noreturn]] void fail(const char* fmt_str, Args&&... args) const {
    ELI_FAIL("safetensors file '{}': {}", origin,
             fmt::format(fmt::runtime(fmt_str), std::forward<Args>(args)...));
  }

  void parse_entry(const std::string& name, const nlohmann::json& v) {
    if (!v.is_object()) fail("tensor '{}': entry must be a JSON object", name);
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail("tensor '{}': missing string field 'dtype'", name);
    const auto dname = dt->get<std::string>();
    const DTypeEntry* found = nullptr;
    for (const auto& e : kDTypes)
      if (dname == e.name) found = &e;
    if (!found)
      fail("tensor '{}': unknown dtype '{}' (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", name,
           dname);

    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array())
      fail("tensor '{}': shape must be an array of non-negative integers", name);
    TensorInfo info;
    info.dtype = found->dtype;
    for (const auto& d : *sh) {
      uint64_t x = 0;
      if (!as_u64(d, &x))
        fail("tensor '{}': shape must be an array of non-negative integers, got {}", name,
             ::eli::detail::json_excerpt(*sh));
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("tensor '{}': shape dimension {} is too large for a tensor", name, x);
      info.shape.push_back(static_cast<int64_t>(x));
    }

    const auto off = v.find("data_offsets");
    uint64_t b = 0, e = 0;
    if (off == v.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &b) ||
        !as_u64((*off)[1], &e))
      fail("tensor '{}': data_offsets must be an array of exactly two non-negative integers", name);
    // Offsets past the file fail the contiguity / end-of-file rules below; clamp only so
    // that they fit TensorInfo meanwhile.
    const uint64_t cap = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    info.begin = static_cast<int64_t>(std::min(b, cap));
    info.end = static_cast<int64_t>(std::min(e, cap));
    tensors[name] = std::move(info);
    raw_offsets.emplace_back(b, e, name);
  }

  std::vector<std::tuple<uint64_t, uint64_t, std::string>> raw_offsets;

  void validate() {
    if (size < kLenBytes)
      fail("file is {} bytes, too small to hold the 8-byte header length", size);
    uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | bytes[k];
    if (n > kMaxHeader) fail("header length {} exceeds the limit of {} bytes", n, kMaxHeader);
    if (kLenBytes + n > size)
      fail("header length {} runs past the end of the file ({} bytes)", n, size);
    data_start = kLenBytes + n;

    const std::string_view text(reinterpret_cast<const char*>(bytes + kLenBytes), n);
    const size_t bad = utf8::valid_prefix(text);
    if (bad != text.size()) fail("header is not valid UTF-8 (bad byte at header offset {})", bad);
    nlohmann::json header;
    // nlohmann keeps the last of duplicate keys; the reference parser (serde) refuses them, and
    // a file whose tensor name appears twice is ambiguous. Keys of the top-level object (depth
    // 1) are collected as they are parsed.
    std::set<std::string> keys;
    std::string duplicate;
    const nlohmann::json::parser_callback_t on_key =
        [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
          if (ev == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty() &&
              !keys.insert(parsed.get<std::string>()).second) {
            duplicate = parsed.get<std::string>();
          }
          return true;
        };
    try {
      header = nlohmann::json::parse(text.begin(), text.end(), on_key);
    } catch (const nlohmann::json::exception& ex) {
      fail("header is not valid JSON: {}", ex.what());
    }
    if (!duplicate.empty()) {
      fail("header names '{}' twice (tensor names and __metadata__ must be unique)",
           duplicate.size() <= 200 ? duplicate : duplicate.substr(0, 200) + "...");
    }
    if (!header.is_object()) fail("header must be a JSON object, got {}", header.type_name());

    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        if (value.is_null()) continue;  // serde reads null as an absent Option
        if (!value.is_object()) fail("__metadata__ must be an object of string to string");
        for (const auto& [mk, mv] : value.items()) {
          if (!mv.is_string()) fail("__metadata__ value for key '{}' is not a string", mk);
          metadata[mk] = mv.get<std::string>();
        }
        continue;
      }
      parse_entry(key, value);
    }

    std::sort(raw_offsets.begin(), raw_offsets.end());
    uint64_t start = 0;
    for (const auto& [b, e, name] : raw_offsets) {
      if (e < b) fail("tensor '{}': data_offsets begin {} > end {}", name, b, e);
      if (b != start)
        fail(
            "tensor '{}': data_offsets [{}, {}] leave a {} after the previous tensor's end {}: "
            "tensors must be contiguous from 0",
            name, b, e, b > start ? "gap" : "overlap", start);
      start = e;
      const TensorInfo& info = tensors.at(name);
      uint64_t numel = 1;
      for (const int64_t d : info.shape)
        if (mul_overflows(numel, static_cast<uint64_t>(d), &numel))
          fail("tensor '{}': element count overflows", name);
      uint64_t nbytes = 0;
      if (mul_overflows(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &nbytes))
        fail("tensor '{}': byte size overflows", name);
      if (e - b != nbytes)
        fail("tensor '{}': {} elements of {} need {} bytes but data_offsets span {}", name, numel,
             dtype_name(info.dtype), nbytes, e - b);
    }
    raw_offsets.clear();
    if (start != size - data_start)
      fail(
          "the tensors end at data offset {} but the data section is {} bytes: data must end "
          "exactly at end of file",
          start, size - data_start);
  }
};

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->origin = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ELI_FAIL("safetensors file '{}': cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    ELI_FAIL("safetensors file '{}': not a regular file", path);
  }
  impl->size = static_cast<uint64_t>(st.st_size);
  if (impl->size > 0) {
    void* m = mmap(nullptr, impl->size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (m == MAP_FAILED)
      ELI_FAIL("safetensors file '{}': mmap failed: {}", path, std::strerror(err));
    impl->map = m;
    impl->map_len = impl->size;
    impl->bytes = static_cast<const uint8_t*>(m);
  } else {
    ::close(fd);
  }
  impl->validate();
  return File(std::move(impl));
}

File File::from_bytes(std::vector<uint8_t> bytes, const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  impl->origin = origin;
  impl->owned = std::move(bytes);
  impl->bytes = impl->owned.data();
  impl->size = impl->owned.size();
  impl->validate();
  return File(std::move(impl));
}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  out.reserve(impl_->tensors.size());
  for (const auto& kv : impl_->tensors) out.push_back(kv.first);
  return out;
}

bool File::contains(const std::string& name) const { return impl_->tensors.count(name) != 0; }

const TensorInfo& File::info(const std::string& name) const {
  const auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) impl_->fail("no tensor named '{}'", name);
  return it->second;
}

at::Tensor File::tensor(const std::string& name) const {
  const TensorInfo& ti = info(name);
  at::Tensor t = at::empty(ti.shape, at::TensorOptions().dtype(entry(ti.dtype).scalar));
  const auto n = static_cast<size_t>(ti.end - ti.begin);
  if (n > 0) std::memcpy(t.data_ptr(), impl_->bytes + impl_->data_start + ti.begin, n);
  return t;
}

const std::map<std::string, std::string>& File::metadata() const { return impl_->metadata; }

namespace {

// The header (padded with spaces to a multiple of 8, as the reference pads it) and the CPU
// contiguous tensors in data order.
struct Plan {
  std::string header;
  std::vector<at::Tensor> data;
};

Plan plan(const std::map<std::string, at::Tensor>& tensors,
          const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  Plan p;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    ELI_CHECK(name != "__metadata__", "safetensors: '__metadata__' cannot be a tensor name");
    ELI_CHECK(t.defined(), "safetensors: tensor '{}' is undefined", name);
    const DType d = from_scalar_type(t.scalar_type(), name);
    at::Tensor c = t.to(at::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * dtype_size(d);
    header[name] = {{"dtype", dtype_name(d)},
                    {"shape", std::vector<int64_t>(c.sizes().begin(), c.sizes().end())},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    p.data.push_back(std::move(c));
  }
  try {
    p.header = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    ELI_FAIL("safetensors: tensor names and metadata must be valid UTF-8 ({})", ex.what());
  }
  p.header.append((8 - p.header.size() % 8) % 8, ' ');
  return p;
}

std::string length_prefix(uint64_t n) {
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return out;
}

}  // namespace

std::vector<uint8_t> serialize(const std::map<std::string, at::Tensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  const Plan p = plan(tensors, metadata);
  std::vector<uint8_t> out;
  const std::string prefix = length_prefix(p.header.size());
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), p.header.begin(), p.header.end());
  for (const auto& t : p.data) {
    const auto* b = static_cast<const uint8_t*>(t.data_ptr());
    out.insert(out.end(), b, b + t.nbytes());
  }
  return out;
}

void save(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
          const std::map<std::string, std::string>& metadata) {
  const Plan p = plan(tensors, metadata);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  ELI_CHECK(f.good(), "safetensors file '{}': cannot open for writing: {}", path,
            std::strerror(errno));
  f << length_prefix(p.header.size()) << p.header;
  for (const auto& t : p.data)
    f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  f.close();
  ELI_CHECK(!f.fail(), "safetensors file '{}': write failed", path);
}

}  // namespace eli::safetensors
