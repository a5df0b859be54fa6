// The README's C++ snippet, compiled so that it stays true.
#include <eli/eli.h>

#include <chrono>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc > 1) {  // no options: --help says so, anything else is refused
    const bool help = std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h";
    (help ? std::cout : std::cerr) << "usage: quickstart (no options; the README's C++ example: "
                                      "64 tokens from the default model through quant_int8)\n";
    return help ? 0 : 1;  // 1: a usage error, as in every tool (examples/exit_status.h)
  }
  const at::Device dev = eli::model::resolve_device("auto");  // cuda if present
  const auto model = eli::model::GPT2::from_spec("default", dev, eli::model::default_dtype(dev));
  const auto tok = eli::Tokenizer::from_dir(eli::model::default_model_dir());

  eli::GenerationConfig cfg;
  cfg.method = "quant_int8";  // any of the eight methods, or a spec like "paged+int4"
  cfg.max_new_tokens = 64;
  cfg.stop_tokens = {eli::Tokenizer::kEndOfText};

  eli::StreamDecoder stream(tok);
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = eli::Generator(model).generate(
      {tok.encode("In the beginning")}, cfg,
      [&](int64_t, int64_t id) { std::cout << stream.push(id) << std::flush; });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << stream.flush() << "\n"
            << res.tokens[0].size() / s << " tokens/s, cache "
            << res.cache_stats.total_bytes() / 1e6 << " MB\n";
}
