/* kcomp generated-code support: every header generated C++ may need, included first by each
 * generated source. With GCC, kcomp precompiles this header once per toolchain
 * (kcomp/jit/pch.py): parsing these headers (immintrin.h above all) was half of a small
 * function's build. */
#ifndef KCOMP_PRELUDE_H
#define KCOMP_PRELUDE_H

#include "rt.h"
#include "reduce.h"
#include "array.h"
#include "conv.h"
#include "ctc.h"
#include "random.h"
#include "transpose.h"

#endif
