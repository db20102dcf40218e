/* kcomp CUDA ABI: the contract between generated CUDA libraries, the CUDA kernel library
 * (libkcomp_cuda, built on demand from csrc/cuda the first time a GPU is used) and the Python
 * runtime (kcomp/cuda, through ctypes).
 *
 * Plain C, like abi.h. Every pointer to tensor data here is a device pointer; shapes and
 * arguments live on the host. Work is queued on `stream` (a cudaStream_t; NULL is the legacy
 * default stream, which PyTorch and CuPy also use unless told otherwise) and is asynchronous:
 * a function returns once its kernels are queued. Errors in the arguments return a kc_status
 * and leave a message for kc_cuda_last_error(). Bump KC_CUDA_ABI_VERSION on any change.
 */
#ifndef KCOMP_CUDA_API_H
#define KCOMP_CUDA_API_H

#include "abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KC_CUDA_ABI_VERSION 4u

/* 16-bit brain float: a CUDA kernel-library dtype only (the IR has no bfloat16). */
#define KC_BFLOAT16 13

/* Activations a kernel can apply in its epilogue. */
typedef enum kc_act {
  KC_ACT_NONE = 0,
  KC_ACT_RELU = 1,
  KC_ACT_SIGMOID = 2,
  KC_ACT_TANH = 3,
  KC_ACT_HARD_SIGMOID = 4 /* clip(0.2 x + 0.5, 0, 1), Keras's */
} kc_act;

/* Float32 GEMM precision. EXACT keeps float32 accuracy (FFMA); TF32 uses the tensor cores with
 * 10-bit mantissas (relative error near 3e-4), only when the user allows it (KCOMP_CUDA_TF32). */
typedef enum kc_precision { KC_PREC_EXACT = 0, KC_PREC_TF32 = 1 } kc_precision;

/* C[b] = act(alpha * op(A[b]) op(B[b]) + bias) for every batch item b (kc_gemm_args: strides in
 * elements, batch stride 0 broadcasts). dtype: KC_FLOAT32, KC_FLOAT64, KC_FLOAT16 or KC_BFLOAT16;
 * A, B and C share it; 16-bit types accumulate in float32 on the tensor cores. bias: NULL, or n
 * values of C's type added to every row (a Dense layer's bias). */
typedef struct kc_cuda_gemm_args {
  kc_gemm_args g;
  int32_t precision; /* kc_precision, float32 only */
  int32_t act;       /* kc_act */
  const void *bias;
  float alpha;
} kc_cuda_gemm_args;

/* Reductions of x viewed as a contiguous (outer, n, inner) array over its middle axis, into y of
 * shape (outer, inner). Float32 in; y float32, or int64 for ARGMAX/ARGMIN (the first index of
 * the extreme, NaN counting as the extreme). n == 0: SUM 0, PROD 1, MEAN NaN, MAX/MIN/ARG*
 * return KC_EINVAL. VAR/STD are population moments (ddof 0), as Keras's. */
typedef enum kc_red_kind {
  KC_RED_SUM = 0,
  KC_RED_MEAN = 1,
  KC_RED_PROD = 2,
  KC_RED_MAX = 3,
  KC_RED_MIN = 4,
  KC_RED_VAR = 5,
  KC_RED_STD = 6,
  KC_RED_LOGSUMEXP = 7,
  KC_RED_ARGMAX = 8,
  KC_RED_ARGMIN = 9
} kc_red_kind;

typedef struct kc_cuda_reduce_args {
  int32_t kind; /* kc_red_kind */
  int32_t dtype; /* of x: KC_FLOAT32 */
  int64_t outer, n, inner;
  const void *x;
  void *y;
} kc_cuda_reduce_args;

/* A convolution as an implicit GEMM, float32, channels_last, 1 to 3 spatial dims (padded to 3
 * with leading size-1 dims): y (batch, od, oh, ow, o) = act(alpha * sum over taps and channels of
 * x (batch, d, h, w, c) * w (kd, kh, kw, c, o) + bias). The input patches are read where they lie
 * (no im2col buffer). gemm carries the product's view: m = batch * od * oh * ow, n = o,
 * k = kd * kh * kw * c, a = x (lda = k), b = w (ldb = o), c = y (ldc = o), batch 1, no transposes;
 * precision, act, bias and alpha as for kc_cuda_gemm. Padding: pd, ph, pw zeros before the
 * first element along each axis (and as many after as the output extents need). */
typedef struct kc_cuda_conv_args {
  kc_cuda_gemm_args gemm;
  int64_t d, h, w, c;      /* input extents */
  int64_t od, oh, ow;      /* output extents */
  int64_t kd, kh, kw;      /* taps */
  int64_t sd, sh, sw;      /* strides */
  int64_t pd, ph, pw;      /* leading padding */
  int64_t dd, dh, dw;      /* dilations */
} kc_cuda_conv_args;

/* y = softmax(x) over the middle axis of (outer, n, inner), float32; log_softmax when `log`. */
typedef struct kc_cuda_softmax_args {
  int64_t outer, n, inner;
  const float *x;
  float *y;
  int32_t log;
} kc_cuda_softmax_args;

/* A Keras recurrent layer's time loop, float32: for t in 0..steps-1, with x = xproj[t] (the
 * input projection x_t W + b of every step, computed before as one GEMM) and h = h_{t-1}:
 *   KC_RNN_LSTM   z = h w_rec (units, 4 units), Keras's gate order i, f, c, o:
 *                 c = rec(x_f + z_f) c + rec(x_i + z_i) act(x_c + z_c); h = rec(x_o + z_o) act(c)
 *   KC_RNN_GRU    (reset_after=True) z = h w_rec + b_rec (units, 3 units; gates z, r, h):
 *                 u = rec(x_z + z_z); r = rec(x_r + z_r); h = u h + (1 - u) act(x_h + r z_h)
 *   KC_RNN_GRU_RESET_BEFORE  (Keras's default GRU) z = h w_rec (units, 2 units; gates z, r):
 *                 u, r as above; h = u h + (1 - u) act(x_h + (r h) w_rec2), w_rec2 (units, units)
 *   KC_RNN_SIMPLE h = act(x + h w_rec), w_rec (units, units)
 * Row-major throughout: xproj (steps, batch, gates units) with 4, 3, 3, 1 gates; h0, h_out (and
 * an LSTM's c0, c_out; NULL for the other cells) (batch, units); h_seq (steps, batch, units), the
 * h of every step, may be NULL. b_rec (3 units) or NULL, KC_RNN_GRU only. act, recurrent_act:
 * kc_act values (Keras's defaults: tanh and sigmoid). Outputs must not overlap each other or
 * the inputs. */
typedef enum kc_rnn_cell {
  KC_RNN_LSTM = 0,
  KC_RNN_GRU = 1,
  KC_RNN_GRU_RESET_BEFORE = 2,
  KC_RNN_SIMPLE = 3
} kc_rnn_cell;

typedef struct kc_cuda_rnn_args {
  int32_t cell; /* kc_rnn_cell */
  int32_t act, recurrent_act;
  int64_t steps, batch, units;
  const float *xproj;
  const float *w_rec, *w_rec2;
  const float *b_rec;
  const float *h0, *c0;
  float *h_seq;
  float *h_out, *c_out;
} kc_cuda_rnn_args;

/* The services that generated CUDA code receives (it never links the kernel library). */
typedef struct kc_cuda_api {
  uint32_t abi_version;
  uint32_t size; /* sizeof(kc_cuda_api) of the provider */
  void *(*alloc)(size_t bytes); /* device memory, 256-byte aligned, from a caching pool */
  void (*free)(void *ptr);      /* stream-ordered on the legacy default stream */
  int32_t (*gemm)(const kc_cuda_gemm_args *args, void *stream);
  int32_t (*reduce)(const kc_cuda_reduce_args *args, void *stream);
  int32_t (*softmax)(const kc_cuda_softmax_args *args, void *stream);
  int32_t (*rnn)(const kc_cuda_rnn_args *args, void *stream);
  const char *(*last_error)(void); /* this thread's last message */
  /* K.print_tensor: message and a tensor in host memory, to the hook the host set with
   * kc_cuda_set_print (the Python runtime's writes to sys.stderr); nothing without one. */
  void (*print)(const char *message, const kc_tensor *tensor);
  int32_t (*conv)(const kc_cuda_conv_args *args, void *stream);
} kc_cuda_api;

typedef void (*kc_print_fn)(const char *message, const kc_tensor *tensor);

/* One call of a compiled CUDA function: as kc_call, tensors' data on the device. */
typedef struct kc_cuda_call {
  const kc_cuda_api *api;
  void *stream;
  const kc_tensor *inputs;
  int32_t n_inputs;
  const kc_tensor *consts;
  int32_t n_consts;
  kc_tensor *variables;
  int32_t n_variables;
  kc_tensor *outputs;
  int32_t n_outputs;
  char error[KC_ERROR_CAP];
} kc_cuda_call;

typedef int32_t (*kc_cuda_entry_fn)(kc_cuda_call *call);

/* What a generated CUDA library exports through kc_cuda_get_module(). */
typedef struct kc_cuda_module {
  uint32_t abi_version; /* KC_CUDA_ABI_VERSION */
  const char *key;
  int32_t n_inputs, n_consts, n_variables, n_outputs;
  kc_cuda_entry_fn shapes;
  kc_cuda_entry_fn run;
} kc_cuda_module;

/* ---- the kernel library's exports (also reached by Python through ctypes) ------------------ */
KC_EXPORT const kc_cuda_api *kc_cuda_get_api(void);
KC_EXPORT const char *kc_cuda_last_error(void);
KC_EXPORT void kc_cuda_set_print(kc_print_fn fn);
KC_EXPORT int32_t kc_cuda_gemm(const kc_cuda_gemm_args *args, void *stream);
KC_EXPORT int32_t kc_cuda_reduce(const kc_cuda_reduce_args *args, void *stream);
KC_EXPORT int32_t kc_cuda_softmax(const kc_cuda_softmax_args *args, void *stream);
KC_EXPORT int32_t kc_cuda_rnn(const kc_cuda_rnn_args *args, void *stream);
KC_EXPORT int32_t kc_cuda_conv(const kc_cuda_conv_args *args, void *stream);
/* device memory and copies; kind: 1 host to device, 2 device to host, 3 device to device */
KC_EXPORT void *kc_cuda_malloc(size_t bytes);
KC_EXPORT void kc_cuda_free(void *ptr);
KC_EXPORT int32_t kc_cuda_memcpy(void *dst, const void *src, size_t bytes, int32_t kind);
KC_EXPORT int32_t kc_cuda_memset(void *dst, int32_t value, size_t bytes);
KC_EXPORT int32_t kc_cuda_synchronize(void);
/* number of devices (0 when none or no driver); properties of the current device */
KC_EXPORT int32_t kc_cuda_device_count(void);
KC_EXPORT int32_t kc_cuda_device_info(int32_t *major, int32_t *minor, int32_t *sms,
                                      int64_t *global_bytes, char *name, int32_t name_cap);

#ifdef __cplusplus
}
#endif

#endif /* KCOMP_CUDA_API_H */
