#pragma once
/// safetensors reader (memory-mapped, validating exactly what the reference implementation
/// validates) and writer. See https://github.com/huggingface/safetensors for the format.

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace eli::safetensors {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };
/// Size in bytes of one element of `d`.
int64_t dtype_size(DType d);
const char* dtype_name(DType d);  // "F32", "F16", ...

struct TensorInfo {
  DType dtype;
  std::vector<int64_t> shape;
  int64_t begin = 0;  // byte offsets into the data section, [begin, end)
  int64_t end = 0;
};

/// A memory-mapped, validated safetensors file. Tensors returned by `tensor()` are copies
/// (safe after the File is gone) in the stored dtype, on the CPU.
class File {
 public:
  /// Maps and validates `path`. Throws eli::Error naming the file and the broken rule.
  static File open(const std::string& path);
  /// Validates an in-memory buffer (used by tests; the buffer is copied).
  static File from_bytes(std::vector<uint8_t> bytes, const std::string& origin = "<memory>");

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws if absent
  at::Tensor tensor(const std::string& name) const;       // CPU, stored dtype, contiguous
  const std::map<std::string, std::string>& metadata() const;

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Writes CPU-contiguous copies of `tensors` (F64/F32/F16/BF16/integer dtypes) to `path`.
void save(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
          const std::map<std::string, std::string>& metadata = {});
/// Same, into bytes.
std::vector<uint8_t> serialize(const std::map<std::string, at::Tensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace eli::safetensors
