// Links against the installed eli, generates a few tokens from a random model, and checks
// that the installed assets (tokenizer) are usable.
#include <eli/eli.h>

#include <cstdio>

int main() {
  const auto model =
      eli::model::GPT2::from_spec("random:L1-E32-H2-V50257-P64", at::kCPU, at::kFloat, 1);
  const auto tok = eli::Tokenizer::from_dir(eli::model::assets_dir() + "/tokenizer");
  eli::GenerationConfig cfg;
  cfg.max_new_tokens = 5;
  const auto res = eli::Generator(model).generate({tok.encode("Hello world")}, cfg);
  if (res.tokens[0].size() != 5) return 1;
  std::printf("consumer ok: %s\n", tok.decode(res.tokens[0]).c_str());
  return 0;
}
