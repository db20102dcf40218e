// The kernels built once per instruction set (GEMM: gemm_impl.h, LSTM: lstm_impl.h), for avx512;
// CMake compiles this file with its flags.
#define KC_GEMM_NS avx512
#define KC_VBYTES 64
#define KC_MR 8
#include "gemm_impl.h"
#include "lstm_impl.h"
