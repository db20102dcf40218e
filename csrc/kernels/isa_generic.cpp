// The kernels built once per instruction set (GEMM: gemm_impl.h, LSTM: lstm_impl.h), for generic;
// CMake compiles this file with its flags.
#define KC_GEMM_NS generic
#define KC_VBYTES 16
#define KC_MR 4
#include "gemm_impl.h"
#include "lstm_impl.h"
