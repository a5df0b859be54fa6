#include <ATen/Context.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "eli/assets.h"
#include "eli/error.h"
#include "eli/model.h"

namespace eli::model {

namespace {
constexpr const char* kDefaultModelName = "kjv-gpt2-6l";

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string& package_assets_dir() {
  static std::string dir;
  return dir;
}

// <directory of the running executable>/../share/eli/assets ("" where /proc is missing).
std::string exe_relative_assets() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return (exe.parent_path().parent_path() / "share" / "eli" / "assets").string();
}

}  // namespace

void set_package_assets_dir(const std::string& dir) { package_assets_dir() = dir; }

std::string assets_dir() {
  if (const char* env = std::getenv("ELI_ASSETS"); env != nullptr && *env != '\0') {
    ELI_CHECK(is_dir(env), "ELI_ASSETS = '{}' is not a directory", env);
    return env;
  }
  const std::string package = package_assets_dir();
  const std::string exe = exe_relative_assets();
  for (const std::string& dir :
       {package, exe, std::string(ELI_SOURCE_ASSETS_DIR), std::string(ELI_INSTALL_ASSETS_DIR)}) {
    if (!dir.empty() && is_dir(dir)) return dir;
  }
  ELI_FAIL(
      "cannot find eli's assets: set ELI_ASSETS (looked in the installed package '{}', next to "
      "the executable '{}', the source tree '{}' and the install prefix '{}')",
      package, exe, ELI_SOURCE_ASSETS_DIR, ELI_INSTALL_ASSETS_DIR);
}

std::string default_model_dir() { return assets_dir() + "/models/" + kDefaultModelName; }

at::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (spec == "cpu") return at::kCPU;
  if (spec.rfind("cuda", 0) == 0) {
    ELI_CHECK(at::hasCUDA(), "device '{}' requested but this build/machine has no CUDA", spec);
    try {
      return at::Device(spec);
    } catch (const std::exception&) {
      ELI_FAIL("invalid device '{}' (valid: auto, cpu, cuda, cuda:N)", spec);
    }
  }
  ELI_FAIL("invalid device '{}' (valid: auto, cpu, cuda, cuda:N)", spec);
}

at::ScalarType default_dtype(at::Device device) {
  return device.is_cuda() ? at::kHalf : at::kFloat;
}

std::string tokenizer_dir_for(const std::string& model_spec, const std::string& explicit_dir) {
  if (!explicit_dir.empty()) return explicit_dir;
  if (model_spec.rfind("random:", 0) != 0) {
    const std::string dir =
        (model_spec == "default" || model_spec.empty()) ? default_model_dir() : model_spec;
    if (is_file(dir + "/vocab.json") || is_file(dir + "/encoder.json")) return dir;
  }
  return assets_dir() + "/tokenizer";
}

GPT2 GPT2::from_spec(const std::string& spec, at::Device device, at::ScalarType dtype,
                     uint64_t seed) {
  if (spec.rfind("random:", 0) == 0) {
    return random(GPT2Config::named(spec.substr(7)), seed, device, dtype);
  }
  const std::string dir = (spec == "default" || spec.empty()) ? default_model_dir() : spec;
  ELI_CHECK(is_dir(dir),
            "model '{}' is not a directory (expected a Hugging Face GPT-2 folder "
            "with config.json and model.safetensors, 'default', or 'random:NAME')",
            dir);
  ELI_CHECK(is_file(dir + "/config.json"), "model directory '{}' has no config.json", dir);
  ELI_CHECK(is_file(dir + "/model.safetensors"),
            "model directory '{}' has no model.safetensors "
            "(only the safetensors format is read)",
            dir);
  return load(dir, device, dtype);
}

}  // namespace eli::model
