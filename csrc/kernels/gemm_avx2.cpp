// GEMM for the avx2 instruction set (see gemm_impl.h); CMake compiles this file with its flags.
#define KC_GEMM_NS avx2
#define KC_VBYTES 32
#define KC_MR 6
#include "gemm_impl.h"
