// Links against the installed eli and runs the shipped default model from the installed assets.
//   eli_consumer [EXPECTED_ASSETS_DIR]
// With an argument, the assets must be found there (the install tree, wherever it was moved),
// not in the source tree eli was built from.
#include <eli/benchmark/metrics.h>
#include <eli/eli.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  const std::string assets = eli::model::assets_dir();
  if (argc > 1 && assets != argv[1]) {
    std::fprintf(stderr, "consumer: assets found in '%s', expected the installed '%s'\n",
                 assets.c_str(), argv[1]);
    return 1;
  }
  const auto model = eli::model::GPT2::from_spec("default", at::kCPU, at::kFloat);
  const auto tok = eli::Tokenizer::from_dir(eli::model::default_model_dir());
  eli::GenerationConfig cfg;
  cfg.method = "quant_int8";
  cfg.max_new_tokens = 5;
  const auto res = eli::Generator(model).generate({tok.encode("In the beginning")}, cfg);
  if (res.tokens[0].size() != 5) return 1;
  // The Benchmarker's installed headers (eli/benchmark/, namespace eli::benchmark).
  if (eli::benchmark::median({3.0, 1.0, 2.0}) != 2.0) return 1;
  std::printf("consumer ok (assets %s): %s\n", assets.c_str(), tok.decode(res.tokens[0]).c_str());
  return 0;
}
