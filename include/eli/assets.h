#pragma once
/// Where eli's assets (tokenizer files, the shipped model, evaluation text) are found.
///
/// eli::model::assets_dir() (model.h) tries, in order:
///  1. $ELI_ASSETS (must be a directory when set);
///  2. the installed package's assets: a program built against an installed eli through
///     find_package(eli) gets ELI_PACKAGE_ASSETS_DIR = <prefix>/share/eli/assets from the
///     package config, computed from where the package lies, so the install tree can be moved;
///     including this header registers it before main();
///  3. <dir of the running executable>/../share/eli/assets (the installed example tools);
///  4. the source tree's assets/ (a build tree), then the configure-time install prefix.

#include <string>

namespace eli::model {

/// Registers `dir` as the installed package's assets directory (step 2 above).
void set_package_assets_dir(const std::string& dir);

#ifdef ELI_PACKAGE_ASSETS_DIR
namespace detail {
inline const bool kPackageAssetsRegistered = (set_package_assets_dir(ELI_PACKAGE_ASSETS_DIR), true);
}  // namespace detail
#endif

}  // namespace eli::model
