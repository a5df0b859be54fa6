#pragma once
// Sanitizer defaults shared by the fuzz targets (each target is one translation unit).
//
// A valid input may ask for more memory than the machine has (a spec such as paged(max=N) or
// paged(pool=N), a safetensors shape): eli promises an eli::Error then, not a crash (the
// CacheMemory tests). By default ASan aborts when an allocation fails instead of returning null,
// and libFuzzer reports any single allocation above its limit; so allocations above 512 MiB fail
// (return null, as malloc does when memory runs out), which exercises the library's
// out-of-memory path the same way on every machine.
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1:max_allocation_size_mb=512";
}
