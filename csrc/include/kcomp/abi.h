/* kcomp C ABI: the only contract between generated libraries, the kernel library and the runtime.
 *
 * Plain C (stdint/stddef only) so that generated code compiles in a fraction of a second and an
 * ahead-of-time artifact can be driven from any language. Bump KC_ABI_VERSION on any change to the
 * layout of these structs or the meaning of their fields; loaders refuse a mismatching library.
 */
#ifndef KCOMP_ABI_H
#define KCOMP_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KC_ABI_VERSION 3u
#define KC_MAX_RANK 8
#define KC_ERROR_CAP 512

#if defined(_WIN32)
#define KC_EXPORT __declspec(dllexport)
#else
#define KC_EXPORT __attribute__((visibility("default")))
#endif

/* Element types; values are part of the ABI. */
typedef enum kc_dtype {
  KC_BOOL = 1,
  KC_INT8 = 2,
  KC_INT16 = 3,
  KC_INT32 = 4,
  KC_INT64 = 5,
  KC_UINT8 = 6,
  KC_UINT16 = 7,
  KC_UINT32 = 8,
  KC_UINT64 = 9,
  KC_FLOAT16 = 10,
  KC_FLOAT32 = 11,
  KC_FLOAT64 = 12
} kc_dtype;

/* Status codes returned by every entry point. The runtime maps them to Python exceptions. */
typedef enum kc_status {
  KC_OK = 0,
  KC_EINVAL = 1,   /* bad argument or shape: ValueError */
  KC_EINDEX = 2,   /* index out of range: IndexError */
  KC_ENOMEM = 3,   /* allocation failed: MemoryError */
  KC_EINTERNAL = 4 /* anything else: RuntimeError */
} kc_status;

/* A dense buffer. Shape and strides count elements, not bytes. Generated code requires row-major
 * contiguous buffers (the runtime makes them so) and checks rank, dtype and static dimensions. */
typedef struct kc_tensor {
  void *data;
  int64_t shape[KC_MAX_RANK];
  int64_t strides[KC_MAX_RANK];
  int32_t dtype;
  int32_t rank;
} kc_tensor;

/* A range task: process items [begin, end). */
typedef void (*kc_task_fn)(void *ctx, int64_t begin, int64_t end);

/* A Keras LSTM layer's time loop, float32: for t in 0..steps-1
 *   z = xproj[t] + bias + h W_rec      (batch, 4 units), Keras's gate order i, f, c, o
 *   i, f, o = rec(z_i), rec(z_f), rec(z_o);  c = f c + i tanh(z_c);  h = o tanh(c)
 * xproj (steps, batch, 4 units) holds x_t W (the input projection, one GEMM before the loop);
 * bias (4 units) may be NULL; w_rec is Keras's recurrent_kernel, (units, 4 units) row-major;
 * h_seq (steps, batch, units) may be NULL; c_out may be c0 and h_out h0. */
typedef struct kc_lstm_args {
  int64_t steps, batch, units;
  const float *xproj, *bias, *w_rec, *h0, *c0;
  float *h_seq, *h_out, *c_out;
  int32_t hard_sigmoid; /* rec: 0 sigmoid, 1 Keras's hard_sigmoid clip(0.2 x + 0.5, 0, 1) */
  int32_t cache_w_rec;  /* w_rec may be packed once and kept across calls (kc_api.pack_cached) */
} kc_lstm_args;

/* A GEMM epilogue: called on the block C[item][i0:i1, j0:j1] of a finished product. */
typedef void (*kc_epilogue_fn)(void *ctx, int64_t item, int64_t i0, int64_t i1, int64_t j0,
                               int64_t j1);

/* Strided batched matrix product C[b] = op(A[b]) * op(B[b]) (C is overwritten). Leading dimensions
 * and batch strides are in elements; a batch stride of 0 broadcasts that operand. */
typedef struct kc_gemm_args {
  int32_t dtype; /* KC_FLOAT32 or KC_FLOAT64 */
  int32_t trans_a, trans_b;
  int64_t m, n, k, batch;
  const void *a;
  int64_t lda, stride_a;
  const void *b;
  int64_t ldb, stride_b;
  void *c;
  int64_t ldc, stride_c;
} kc_gemm_args;

/* Services the host passes to generated code: threads, memory and the hand-tuned kernels. Generated
 * code never links the kernel library directly, so it needs no heavy headers and no link step. */
typedef struct kc_api {
  uint32_t abi_version;
  uint32_t size; /* sizeof(kc_api) of the provider */
  int32_t (*num_threads)(void);
  /* Runs fn over [0, n) split in chunks of at least grain items, on all pool threads. Reentrant:
   * a call made while the pool is busy (another Python thread) runs on the calling thread. */
  void (*parallel_for)(int64_t n, int64_t grain, kc_task_fn fn, void *ctx);
  void *(*alloc)(size_t bytes); /* 64-byte aligned; NULL on failure */
  void (*free)(void *ptr);
  int32_t (*gemm)(const kc_gemm_args *args);
  /* Members from here on may be missing in an older provider: test with KC_API_HAS. */
  /* Prints message and the tensor (K.print_tensor); the Python runtime writes to sys.stderr. */
  void (*print)(const char *message, const kc_tensor *tensor);
  /* GEMM with op(B) packed once and reused (an RNN's recurrent weights across its steps):
   * gemm_packed_size(args) bytes (0: this shape is not computed from packed panels), filled by
   * gemm_pack(args, packed) from args->b. The layout is the kernel library's own (it depends on
   * the CPU). */
  int64_t (*gemm_packed_size)(const kc_gemm_args *args);
  int32_t (*gemm_pack)(const kc_gemm_args *args, void *packed);
  /* gemm(args), from gemm_pack's panels when packed is not NULL, and with a fused epilogue when
   * epilogue is not NULL: it is called once for every block C[item][i0:i1, j0:j1] as soon as
   * that block's values are final, on the thread that computed them (while they are in its
   * cache), and may rewrite them in place (bias, activation, scaling, residual add). */
  int32_t (*gemm_ex)(const kc_gemm_args *args, const void *packed, kc_epilogue_fn epilogue,
                     void *ctx);
  /* A Keras LSTM layer's whole time loop (kc_lstm_args). */
  int32_t (*lstm)(const struct kc_lstm_args *args);
  /* Packed weights kept across calls. pack_cached(args, &handle): gemm_pack's panels of args->b
   * from the library's cache, packed there if the cache holds none for this B (same memory and
   * layout, not written since); NULL when this shape has no packed form or the cache is full
   * or busy (then pass NULL to gemm_ex). A non-NULL result stays valid until
   * pack_release(handle). Only for B that is a variable's (or constant's) memory: whoever writes
   * such memory calls weights_written(data, bytes) afterwards, which makes the panels packed
   * from it stale; weights_written(NULL, 0), all of them (for memory that may hold other
   * values at an address used before: a new model's weights). */
  const void *(*pack_cached)(const kc_gemm_args *args, void **handle);
  void (*pack_release)(void *handle);
  void (*weights_written)(const void *data, int64_t bytes);
  /* pack_cached for any layout: the `bytes` that fill(ctx, out) packs from the src_bytes at
   * src, whose layout form[0..7] names (form[0]: a code of its own; the kernel library's are
   * below 100, generated code's 100 and up; then whatever the layout depends on). */
  const void *(*pack_cached_with)(const void *src, int64_t src_bytes, const int64_t *form,
                                  int64_t bytes, int32_t (*fill)(void *ctx, void *out), void *ctx,
                                  void **handle);
} kc_api;

/* Whether the kc_api table `api` provides member `field`. */
#define KC_API_HAS(api, field) \
  ((api)->size >= offsetof(kc_api, field) + sizeof(((kc_api *)0)->field) && (api)->field)

/* One call of a compiled function. The caller fills inputs, constants and variables, calls
 * shapes() to learn output shapes, allocates outputs, then calls run(). Variables are updated in
 * place by run(). On failure both return a kc_status and leave a message in error. */
typedef struct kc_call {
  const kc_api *api;
  const kc_tensor *inputs;
  int32_t n_inputs;
  const kc_tensor *consts;
  int32_t n_consts;
  kc_tensor *variables;
  int32_t n_variables;
  kc_tensor *outputs;
  int32_t n_outputs;
  char error[KC_ERROR_CAP];
  /* NULL, or one double per top-level kernel of the function (in plan order): run() adds the
   * seconds each kernel took, loops counting as one kernel (Function.profile) */
  double *profile;
} kc_call;

typedef int32_t (*kc_entry_fn)(kc_call *call);

/* What a generated library exports through kc_get_module(). */
typedef struct kc_module {
  uint32_t abi_version;
  const char *key; /* the cache key the library was built for */
  int32_t n_inputs, n_consts, n_variables, n_outputs;
  kc_entry_fn shapes;
  kc_entry_fn run;
  int32_t n_kernels; /* top-level kernels: kc_call.profile's length */
} kc_module;

/* Symbols every generated library exports. */
typedef uint32_t (*kc_abi_version_fn)(void);
typedef const kc_module *(*kc_get_module_fn)(void);

/* The kernel library's entry: its kc_api table. */
KC_EXPORT const kc_api *kcomp_kernels_api(void);

#ifdef __cplusplus
}
#endif

#endif /* KCOMP_ABI_H */
