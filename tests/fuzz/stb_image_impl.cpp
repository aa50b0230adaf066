// SPDX-License-Identifier: MIT
// stb_image's implementation compiled into the fuzz_image binary, so that the fuzzer's
// sanitizers instrument the decoder too (Debian's libstb is not instrumented: an overflow inside
// it would go unnoticed).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
