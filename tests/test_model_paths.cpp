// tokenizer_dir_for: the explicit directory, else the model's own tokenizer files, else the
// shipped tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "eli/model.h"

namespace fs = std::filesystem;

TEST(ModelPaths, TokenizerDirForPrefersExplicitThenModelThenAssets) {
  const std::string shipped = eli::model::assets_dir() + "/tokenizer";
  EXPECT_EQ(eli::model::tokenizer_dir_for("random:gpt2"), shipped);
  EXPECT_EQ(eli::model::tokenizer_dir_for("random:gpt2", "/my/tok"), "/my/tok");
  const fs::path dir = fs::temp_directory_path() / "eli_test_model_paths";
  fs::remove_all(dir);
  fs::create_directories(dir);
  // A model directory without tokenizer files: the shipped tokenizer.
  EXPECT_EQ(eli::model::tokenizer_dir_for(dir.string()), shipped);
  // With them (either naming): the model's own, even before they are known to load.
  std::ofstream(dir / "encoder.json") << "{}";
  EXPECT_EQ(eli::model::tokenizer_dir_for(dir.string()), dir.string());
  EXPECT_EQ(eli::model::tokenizer_dir_for(dir.string(), "/my/tok"), "/my/tok");
  fs::remove_all(dir);
}
