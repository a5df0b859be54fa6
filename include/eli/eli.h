#pragma once
/// Umbrella header.
#include "eli/assets.h"
#include "eli/config.h"
#include "eli/error.h"
#include "eli/generator.h"
#include "eli/kv_cache.h"
#include "eli/model.h"
#include "eli/model_config.h"
#include "eli/safetensors.h"
#include "eli/tokenizer.h"
