// GPT-2 loading and forward: parity with Hugging Face transformers (tests/data/hf_tiny was
// written by tools/hf_reference.py tiny), checkpoint validation, config parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "eli/error.h"
#include "eli/generator.h"
#include "eli/model.h"
#include "eli/safetensors.h"

namespace fs = std::filesystem;
using eli::GPT2Config;
using eli::model::GPT2;

namespace {

const std::string kTiny = std::string(ELI_TEST_DATA_DIR) + "/hf_tiny";

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// A fresh directory holding a copy of a tiny checkpoint we can corrupt.
struct TempModelDir {
  fs::path dir;
  explicit TempModelDir(const std::string& tag) {
    dir = fs::temp_directory_path() / ("eli_test_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempModelDir() { fs::remove_all(dir); }
  void write_config(const std::string& json) const { std::ofstream(dir / "config.json") << json; }
};

const char* kTinyConfig =
    R"({"model_type": "gpt2", "vocab_size": 50, "n_positions": 16, "n_embd": 8, "n_layer": 1,
        "n_head": 2, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5})";

/// HF-named tensors of a 1-layer model matching kTinyConfig (Conv1D layout [in, out]).
std::map<std::string, at::Tensor> tiny_tensors(const std::string& prefix) {
  const int64_t e = 8, v = 50, p = 16;
  auto r = [](std::vector<int64_t> s) { return at::randn(s) * 0.1; };
  std::map<std::string, at::Tensor> t;
  t[prefix + "wte.weight"] = r({v, e});
  t[prefix + "wpe.weight"] = r({p, e});
  t[prefix + "h.0.ln_1.weight"] = r({e}) + 1;
  t[prefix + "h.0.ln_1.bias"] = r({e});
  t[prefix + "h.0.attn.c_attn.weight"] = r({e, 3 * e});
  t[prefix + "h.0.attn.c_attn.bias"] = r({3 * e});
  t[prefix + "h.0.attn.c_proj.weight"] = r({e, e});
  t[prefix + "h.0.attn.c_proj.bias"] = r({e});
  t[prefix + "h.0.ln_2.weight"] = r({e}) + 1;
  t[prefix + "h.0.ln_2.bias"] = r({e});
  t[prefix + "h.0.mlp.c_fc.weight"] = r({e, 4 * e});
  t[prefix + "h.0.mlp.c_fc.bias"] = r({4 * e});
  t[prefix + "h.0.mlp.c_proj.weight"] = r({4 * e, e});
  t[prefix + "h.0.mlp.c_proj.bias"] = r({e});
  t[prefix + "ln_f.weight"] = r({e}) + 1;
  t[prefix + "ln_f.bias"] = r({e});
  return t;
}

void expect_load_error(const TempModelDir& d, const std::string& needle) {
  try {
    GPT2::load(d.dir.string(), at::kCPU, at::kFloat);
    FAIL() << "expected eli::Error containing '" << needle << "'";
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ModelHF, LogitsMatchTransformersFp32) {
  const GPT2 m = GPT2::load(kTiny, at::kCPU, at::kFloat);
  const auto ref = eli::safetensors::File::open(kTiny + "/reference.safetensors");
  for (int i = 0; i < 3; ++i) {
    const at::Tensor ids = ref.tensor(fmt::format("ids_{}", i)).to(at::kLong).unsqueeze(0);
    const at::Tensor want = ref.tensor(fmt::format("logits_{}", i));
    const at::Tensor got = m.forward(ids, 0, nullptr)[0];
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT(max_abs_diff(got, want), 1e-4) << "sequence " << i;
    // The same through the full cache, one token at a time after a one-token prefill.
    auto cache = eli::make_cache("full_cache", m.shape(), 1, {}, {}, at::kFloat, at::kCPU);
    for (int64_t t = 0; t < ids.size(1); ++t) {
      const at::Tensor step = m.forward(ids.narrow(1, t, 1), t, cache.get())[0][0];
      EXPECT_LT(max_abs_diff(step, want[t]), 1e-4) << "sequence " << i << " position " << t;
    }
  }
}

TEST(ModelHF, ConfigParsed) {
  const auto c = GPT2Config::from_json_file(kTiny + "/config.json");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.n_positions, 64);
}

TEST(ModelLoad, PrefixOptionalTiedHeadAndMaskBuffersIgnored) {
  at::manual_seed(1);
  for (const std::string prefix : {"", "transformer."}) {
    TempModelDir d("prefix");
    d.write_config(kTinyConfig);
    auto t = tiny_tensors(prefix);
    t[prefix + "h.0.attn.bias"] = at::ones({1, 1, 16, 16});
    t[prefix + "h.0.attn.masked_bias"] = at::full({}, -1e4);
    eli::safetensors::save((d.dir / "model.safetensors").string(), t);
    const GPT2 m = GPT2::load(d.dir.string(), at::kCPU, at::kFloat);
    const at::Tensor ids = at::tensor(std::vector<int64_t>{1, 2, 3}, at::kLong).view({1, 3});
    const at::Tensor logits = m.forward(ids, 0, nullptr);
    EXPECT_EQ(logits.size(2), 50);
    // Tied head: logits of the last hidden state against wte.
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  }
}

TEST(ModelLoad, UntiedLmHeadIsUsed) {
  at::manual_seed(2);
  TempModelDir d("untied");
  d.write_config(kTinyConfig);
  auto t = tiny_tensors("transformer.");
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  const at::Tensor ids = at::tensor(std::vector<int64_t>{4, 5}, at::kLong).view({1, 2});
  const at::Tensor tied = GPT2::load(d.dir.string(), at::kCPU, at::kFloat).forward(ids, 0, nullptr);
  t["lm_head.weight"] = at::randn({50, 8});
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  const at::Tensor untied =
      GPT2::load(d.dir.string(), at::kCPU, at::kFloat).forward(ids, 0, nullptr);
  EXPECT_GT(max_abs_diff(tied, untied), 1e-3);
}

TEST(ModelLoad, NonFiniteWeightsAreRefusedUnlessAllowed) {
  TempModelDir d("nonfinite");
  d.write_config(kTinyConfig);
  auto t = tiny_tensors("");
  t["h.0.mlp.c_fc.bias"][3] = std::nan("");
  t["h.0.ln_2.weight"][1] = INFINITY;
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  expect_load_error(d, "non-finite");
  eli::model::LoadOptions allow;
  allow.allow_non_finite = true;
  EXPECT_NO_THROW(GPT2::load(d.dir.string(), at::kCPU, at::kFloat, allow));
  // Finite as stored but beyond fp16: an overflow of the conversion, refused the same way.
  t = tiny_tensors("");
  t["wpe.weight"][0][0] = 1e6;
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  EXPECT_NO_THROW(GPT2::load(d.dir.string(), at::kCPU, at::kFloat));
  try {
    GPT2::load(d.dir.string(), at::kCPU, at::kHalf);
    ADD_FAILURE() << "fp16 overflow accepted";
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'wpe.weight' has 1 non-finite"), std::string::npos)
        << e.what();
  }
}

TEST(ModelLoad, MissingTensor) {
  TempModelDir d("missing");
  d.write_config(kTinyConfig);
  auto t = tiny_tensors("");
  t.erase("h.0.mlp.c_fc.bias");
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  expect_load_error(d, "missing tensor 'h.0.mlp.c_fc.bias'");
}

TEST(ModelLoad, WrongShape) {
  TempModelDir d("shape");
  d.write_config(kTinyConfig);
  auto t = tiny_tensors("");
  t["h.0.attn.c_attn.weight"] = at::randn({24, 8});  // nn.Linear layout instead of Conv1D
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  expect_load_error(d, "h.0.attn.c_attn.weight' has shape [24, 8]");
}

TEST(ModelLoad, UnexpectedTensor) {
  TempModelDir d("unexpected");
  d.write_config(kTinyConfig);
  auto t = tiny_tensors("");
  t["h.1.ln_1.weight"] = at::randn({8});  // a second layer the config does not have
  eli::safetensors::save((d.dir / "model.safetensors").string(), t);
  expect_load_error(d, "unexpected tensor 'h.1.ln_1.weight'");
}

TEST(ModelLoad, BadConfigValues) {
  TempModelDir d("config");
  eli::safetensors::save((d.dir / "model.safetensors").string(), tiny_tensors(""));
  d.write_config(R"({"n_embd": 9, "n_head": 2})");
  expect_load_error(d, "n_embd = 9");
  d.write_config(R"({"model_type": "llama"})");
  expect_load_error(d, "model_type");
  d.write_config("{not json");
  expect_load_error(d, "not valid JSON");
  d.write_config(R"({"n_layer": "twelve"})");
  expect_load_error(d, "'n_layer' must be an integer");
  d.write_config(R"({"activation_function": false})");  // found by fuzz/fuzz_config
  expect_load_error(d, "activation_function must be a string");
  // Sizes past any GPT-2 whose products would overflow; a value past int64 reported as written.
  d.write_config(R"({"n_embd": 4611686018427387904, "n_head": 1})");
  expect_load_error(d, "n_embd = 4611686018427387904");
  d.write_config(R"({"n_layer": 18446744073709551615})");
  expect_load_error(d, "'n_layer' = 18446744073709551615 is out of range");
  d.write_config(R"({"vocab_size": 1000000000})");
  expect_load_error(d, "vocab_size = 1000000000");
}

TEST(ModelLoad, NotADirectory) {
  EXPECT_THROW(GPT2::from_spec("/nonexistent/model", at::kCPU, at::kFloat), eli::Error);
  EXPECT_THROW(GPT2::from_spec("random:gpt3", at::kCPU, at::kFloat), eli::Error);
}

TEST(ModelConfig, NamedShapes) {
  EXPECT_EQ(GPT2Config::named("gpt2").n_layer, 12);
  EXPECT_EQ(GPT2Config::named("gpt2-medium").n_embd, 1024);
  EXPECT_EQ(GPT2Config::named("gpt2-large").n_head, 20);
  const auto xl = GPT2Config::named("gpt2-xl");
  EXPECT_EQ(xl.n_layer, 48);
  EXPECT_EQ(xl.head_dim(), 64);
  const auto c = GPT2Config::named("L3-E96-H3-V777-P99");
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.n_embd, 96);
  EXPECT_EQ(c.vocab_size, 777);
  EXPECT_EQ(c.n_positions, 99);
  EXPECT_THROW(GPT2Config::named("L2-E10-H3"), eli::Error);
}

TEST(ModelForward, BadInputsGiveClearErrors) {
  const GPT2 m = GPT2::random(GPT2Config::named("L1-E32-H2-V100-P8"), 3, at::kCPU, at::kFloat);
  auto ids = [](std::vector<int64_t> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    return at::tensor(v, at::kLong).view({1, n});
  };
  try {
    m.forward(ids({1, 100}), 0, nullptr);
    FAIL();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 100 out of range"), std::string::npos);
  }
  EXPECT_THROW(m.forward(ids({-1}), 0, nullptr), eli::Error);
  try {
    m.forward(ids({1, 2, 3}), 6, nullptr);
    FAIL();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_positions = 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m.forward(at::zeros({3}, at::kLong), 0, nullptr), eli::Error);
  EXPECT_THROW(m.forward(at::zeros({1, 2}, at::kInt), 0, nullptr), eli::Error);
}
