// GEMM for the avx512 instruction set (see gemm_impl.h); CMake compiles this file with its flags.
#define KC_GEMM_NS avx512
#define KC_VBYTES 64
#define KC_MR 8
#include "gemm_impl.h"
