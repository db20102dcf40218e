// The kernels built once per instruction set (GEMM: gemm_impl.h, LSTM: lstm_impl.h), for avx2;
// CMake compiles this file with its flags.
#define KC_GEMM_NS avx2
#define KC_VBYTES 32
#define KC_MR 6
#include "gemm_impl.h"
#include "lstm_impl.h"
