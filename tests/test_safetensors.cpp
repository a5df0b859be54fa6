// safetensors: round trips of random tensors, a hand-written file, and one test per rule the
// reader enforces (each on a hand-built or corrupted buffer).

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "eli/error.h"
#include "eli/safetensors.h"

namespace st = eli::safetensors;

namespace {

at::Tensor random_tensor(at::ScalarType dtype, std::vector<int64_t> shape, int64_t seed) {
  at::manual_seed(seed);
  if (dtype == at::kBool) return at::rand(shape) > 0.5;
  if (at::isFloatingType(dtype)) return (at::randn(shape, at::kDouble) * 3 + 0.25).to(dtype);
  const int64_t lo = dtype == at::kByte ? 0 : -100;
  return at::randint(lo, 100, shape, at::kLong).to(dtype);
}

std::map<std::string, at::Tensor> sample_tensors() {
  return {
      {"f32.odd", random_tensor(at::kFloat, {3, 5, 7}, 1)},
      {"f64", random_tensor(at::kDouble, {13}, 2)},
      {"f16", random_tensor(at::kHalf, {2, 1, 9}, 3)},
      {"bf16", random_tensor(at::kBFloat16, {17, 3}, 4)},
      {"i64", random_tensor(at::kLong, {5}, 5)},
      {"i32", random_tensor(at::kInt, {2, 3}, 6)},
      {"i16", random_tensor(at::kShort, {7}, 7)},
      {"i8", random_tensor(at::kChar, {11}, 8)},
      {"u8", random_tensor(at::kByte, {1, 1, 1, 7}, 9)},
      {"bool", random_tensor(at::kBool, {6}, 10)},
      {"scalar", random_tensor(at::kFloat, {}, 11)},
      {"empty", at::empty({0, 4}, at::kFloat)},
      {"h.0.attn.c_attn.weight", random_tensor(at::kFloat, {19, 57}, 12)},
  };
}

void expect_same(const std::map<std::string, at::Tensor>& want, const st::File& f) {
  std::vector<std::string> names;
  for (const auto& kv : want) names.push_back(kv.first);
  ASSERT_EQ(f.names(), names);
  for (const auto& [name, t] : want) {
    const at::Tensor got = f.tensor(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), t.sizes()) << name;
    EXPECT_TRUE(got.is_contiguous()) << name;
    EXPECT_TRUE(at::equal(got, t)) << name << ": stored\n" << t << "\nread\n" << got;
    EXPECT_EQ(f.info(name).shape, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
  }
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("eli_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// An 8-byte little-endian length (the header's own unless `declared` is given), the header,
// then `data_bytes` bytes of a non-zero pattern.
std::vector<uint8_t> make(const std::string& header, size_t data_bytes,
                          uint64_t declared = UINT64_MAX) {
  const uint64_t n = declared == UINT64_MAX ? header.size() : declared;
  std::vector<uint8_t> out;
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<uint8_t>((n >> (8 * k)) & 0xFF));
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i * 37 + 11));
  return out;
}

// Expects the reader to refuse `bytes` with a message naming the file and containing `word`.
void expect_refused(const std::vector<uint8_t>& bytes, const std::string& word) {
  try {
    st::File::from_bytes(bytes, "bad.safetensors");
    ADD_FAILURE() << "accepted a buffer that breaks the '" << word << "' rule";
  } catch (const eli::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(word), std::string::npos) << "expected '" << word << "' in: " << msg;
  }
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

}  // namespace

TEST(Safetensors, RoundTripInMemory) {
  const auto tensors = sample_tensors();
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "héllo"}};
  const std::vector<uint8_t> bytes = st::serialize(tensors, meta);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | bytes[k];
  EXPECT_EQ(n % 8, 0u) << "header is padded to a multiple of 8 like the reference";
  EXPECT_EQ(bytes[8], '{');
  const st::File f = st::File::from_bytes(bytes);
  expect_same(tensors, f);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.info("bf16").dtype, st::DType::kBF16);
  EXPECT_EQ(f.info("bf16").end - f.info("bf16").begin, 17 * 3 * 2);
}

TEST(Safetensors, RoundTripThroughMappedFile) {
  const auto tensors = sample_tensors();
  const std::string path = temp_path("roundtrip.safetensors");
  st::save(path, tensors);
  at::Tensor kept;
  {
    const st::File f = st::File::open(path);
    expect_same(tensors, f);
    EXPECT_TRUE(f.metadata().empty());
    kept = f.tensor("f32.odd");
  }
  std::remove(path.c_str());
  EXPECT_TRUE(at::equal(kept, tensors.at("f32.odd"))) << "tensor() must copy out of the map";
}

TEST(Safetensors, NonContiguousAndDerivedInputsAreWritten) {
  const at::Tensor base = random_tensor(at::kFloat, {6, 9}, 21);
  const std::map<std::string, at::Tensor> tensors = {{"t", base.t()},
                                                     {"slice", base.slice(1, 2, 7, 2)}};
  const st::File f = st::File::from_bytes(st::serialize(tensors));
  EXPECT_TRUE(at::equal(f.tensor("t"), base.t()));
  EXPECT_TRUE(at::equal(f.tensor("slice"), base.slice(1, 2, 7, 2)));
}

TEST(Safetensors, WriterRefusesUnsupportedInput) {
  EXPECT_THROW(st::serialize({{"c", at::ones({2}, at::kComplexFloat)}}), eli::Error);
  EXPECT_THROW(st::serialize({{"__metadata__", at::ones({2})}}), eli::Error);
  EXPECT_THROW(st::serialize({{"u", at::Tensor()}}), eli::Error);
}

TEST(Safetensors, ReadsHandWrittenFile) {
  // The layout Python's safetensors writes: metadata first, unpadded JSON allowed.
  const std::string header = "{\"__metadata__\":{\"framework\":\"pt\"}," +
                             entry("b", "F16", "[2]", "[8,12]") + "," +
                             entry("a", "I32", "[2]", "[0,8]") + "}";
  std::vector<uint8_t> bytes = make(header, 0);
  for (const uint8_t b : {0x07, 0x00, 0x00, 0x00, 0xF9, 0xFF, 0xFF, 0xFF})  // 7, -7
    bytes.push_back(b);
  for (const uint8_t b : {0x00, 0x3C, 0x00, 0xC0}) bytes.push_back(b);  // 1.0, -2.0 in fp16
  const st::File f = st::File::from_bytes(bytes);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.metadata().at("framework"), "pt");
  EXPECT_TRUE(at::equal(f.tensor("a"), at::tensor({7, -7}, at::kInt)));
  EXPECT_TRUE(at::equal(f.tensor("b"), at::tensor({1.0, -2.0}, at::kFloat).to(at::kHalf)));
  EXPECT_TRUE(f.contains("a"));
  EXPECT_FALSE(f.contains("c"));
  EXPECT_THROW(f.tensor("c"), eli::Error);
  EXPECT_THROW(f.info("c"), eli::Error);
}

TEST(Safetensors, AcceptsZeroTensorsAndZeroSizeTensors) {
  EXPECT_TRUE(st::File::from_bytes(make("{}", 0)).names().empty());
  const st::File f = st::File::from_bytes(make("{" + entry("z", "F32", "[0,3]", "[0,0]") + "," +
                                                   entry("y", "BF16", "[0]", "[0,0]") + "," +
                                                   entry("x", "U8", "[2]", "[0,2]") + "}",
                                               2));
  EXPECT_EQ(f.tensor("z").sizes(), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(f.tensor("x").numel(), 2);
}

TEST(Safetensors, MissingFileIsNamed) {
  try {
    st::File::open("/nonexistent/dir/model.safetensors");
    ADD_FAILURE();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors"), std::string::npos);
  }
}

// ---- one test per rule --------------------------------------------------------------------

TEST(SafetensorsRule, FileShorterThanLengthPrefix) {
  expect_refused({1, 0, 0}, "too small");
  expect_refused({}, "too small");
}

TEST(SafetensorsRule, HeaderLengthAboveLimit) {
  expect_refused(make("{}", 0, 100'000'001), "limit");
  expect_refused(make("{}", 0, UINT64_MAX - 1), "limit");
}

TEST(SafetensorsRule, HeaderLengthPastEndOfFile) {
  expect_refused(make("{}", 0, 3), "past the end");
  expect_refused(make("{}", 0, 100'000'000), "past the end");
}

TEST(SafetensorsRule, HeaderNotUtf8) {
  expect_refused(make("{\"a\xff\":1}", 0), "UTF-8");
  expect_refused(make("{\"\xed\xa0\x80\":1}", 0), "UTF-8");  // an encoded surrogate
}

TEST(SafetensorsRule, HeaderNotJson) {
  expect_refused(make("{\"a\":", 0), "JSON");
  expect_refused(make("", 0), "JSON");
}

TEST(SafetensorsRule, DuplicateNames) {
  expect_refused(
      make("{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}",
           8),
      "twice");
  // The same name inside different tensors' objects is fine (depth > 1).
  st::File::from_bytes(
      make("{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[4,8]") + "}",
           8),
      "ok.safetensors");
}

TEST(SafetensorsRule, HeaderNotObject) { expect_refused(make("[1, 2]  ", 0), "object"); }

TEST(SafetensorsRule, UnknownOrMissingDtype) {
  expect_refused(make("{" + entry("w", "F8_E4M3", "[2]", "[0,2]") + "}", 2), "unknown dtype");
  expect_refused(make("{" + entry("w", "f32", "[1]", "[0,4]") + "}", 4), "unknown dtype");
  expect_refused(make("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4), "dtype");
  expect_refused(make("{\"w\":[1,2]}", 0), "object");
}

TEST(SafetensorsRule, ShapeNotNonNegativeIntegers) {
  for (const std::string shape : {"[-1]", "[1.5]", "[\"3\"]", "3", "[2,null]", "[1e2]"})
    expect_refused(make("{" + entry("w", "U8", shape, "[0,2]") + "}", 2), "shape");
  expect_refused(make("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,2]}}", 2), "shape");
}

TEST(SafetensorsRule, DataOffsetsNotTwoIntegers) {
  for (const std::string off : {"[0]", "[0,2,4]", "[-1,2]", "[0,2.0]", "{}", "[]"})
    expect_refused(make("{" + entry("w", "U8", "[2]", off) + "}", 2), "data_offsets");
}

TEST(SafetensorsRule, MetadataNotStringToString) {
  expect_refused(make("{\"__metadata__\":{\"k\":1}}", 0), "__metadata__");
  expect_refused(make("{\"__metadata__\":[\"k\"]}", 0), "__metadata__");
}

TEST(SafetensorsRule, BeginAfterEnd) {
  expect_refused(make("{" + entry("w", "U8", "[2]", "[2,0]") + "}", 2), "begin");
}

TEST(SafetensorsRule, GapBetweenTensors) {
  expect_refused(
      make("{" + entry("a", "U8", "[2]", "[0,2]") + "," + entry("b", "U8", "[2]", "[3,5]") + "}",
           5),
      "gap");
  expect_refused(make("{" + entry("a", "U8", "[2]", "[1,3]") + "}", 3), "gap");  // not from 0
}

TEST(SafetensorsRule, OverlappingTensors) {
  expect_refused(
      make("{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") + "}",
           12),
      "overlap");
}

TEST(SafetensorsRule, SizeDisagreesWithShapeAndDtype) {
  expect_refused(make("{" + entry("w", "F32", "[3]", "[0,8]") + "}", 8), "span");
  expect_refused(make("{" + entry("w", "BF16", "[2,2]", "[0,16]") + "}", 16), "span");
}

TEST(SafetensorsRule, SizeOverflow) {
  // 2^32 * 2^32 elements overflow 64 bits; 2^62 F32 elements overflow in bytes.
  expect_refused(make("{" + entry("w", "U8", "[4294967296,4294967296]", "[0,1]") + "}", 1),
                 "overflow");
  expect_refused(make("{" + entry("w", "F32", "[4611686018427387904]", "[0,4]") + "}", 4),
                 "overflow");
}

TEST(SafetensorsRule, DataMustEndAtEndOfFile) {
  std::vector<uint8_t> good = st::serialize({{"w", random_tensor(at::kFloat, {3, 5}, 31)}});
  EXPECT_NO_THROW(st::File::from_bytes(good));
  std::vector<uint8_t> longer = good;
  longer.push_back(0x5A);
  expect_refused(longer, "end of file");
  std::vector<uint8_t> shorter(good.begin(), good.end() - 1);
  expect_refused(shorter, "end of file");
  // A header with no tensors still forbids stray data.
  expect_refused(make("{}", 4), "end of file");
}
