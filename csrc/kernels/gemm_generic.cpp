// GEMM for the generic instruction set (see gemm_impl.h); CMake compiles this file with its flags.
#define KC_GEMM_NS generic
#define KC_VBYTES 16
#define KC_MR 4
#include "gemm_impl.h"
