// Runs one function of a kcomp artifact on tensors read from a file and writes its outputs.
//   consumer INPUTS.kct OUTPUTS.kct [FUNCTION] [REPEATS] [WEIGHTS]
// Tensor files: "KCT1", uint32 count, then per tensor int32 dtype, int32 rank, int64 dims, data
// (kcomp.aot.tensorfile). It prints how long create() took (loading and checking the weights);
// with REPEATS > 1 it times every call of run() and prints the median, minimum and 90th
// percentile, in microseconds. WEIGHTS overrides the artifact's own weights file.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include KC_HEADER

#define KC_CAT2(a, b) a##_##b
#define KC_CAT(a, b) KC_CAT2(a, b)
#define API(fn) KC_CAT(KC_ARTIFACT, fn)

namespace {

struct Tensor {
  kc_tensor t{};
  std::vector<unsigned char> data;
};

size_t itemsize(int32_t dtype) {
  switch (dtype) {
    case KC_BOOL: case KC_INT8: case KC_UINT8: return 1;
    case KC_INT16: case KC_UINT16: case KC_FLOAT16: return 2;
    case KC_INT32: case KC_UINT32: case KC_FLOAT32: return 4;
    default: return 8;
  }
}

void finish(Tensor &x) {  // contiguous strides and data pointer
  int64_t stride = 1;
  for (int32_t d = x.t.rank - 1; d >= 0; --d) {
    x.t.strides[d] = stride;
    stride *= x.t.shape[d];
  }
  x.t.data = x.data.data();
}

std::vector<Tensor> read_tensors(const char *path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4];
  uint32_t count = 0;
  if (!in.read(magic, 4) || std::memcmp(magic, "KCT1", 4) || !in.read((char *)&count, 4))
    throw std::runtime_error(std::string("not a tensor file: ") + path);
  std::vector<Tensor> out(count);
  for (auto &x : out) {
    in.read((char *)&x.t.dtype, 4);
    in.read((char *)&x.t.rank, 4);
    if (x.t.rank < 0 || x.t.rank > KC_MAX_RANK) throw std::runtime_error("bad rank");
    int64_t n = 1;
    for (int32_t d = 0; d < x.t.rank; ++d) {
      in.read((char *)&x.t.shape[d], 8);
      n *= x.t.shape[d];
    }
    x.data.resize(n * itemsize(x.t.dtype));
    in.read((char *)x.data.data(), x.data.size());
    if (!in) throw std::runtime_error(std::string("truncated tensor file: ") + path);
    finish(x);
  }
  return out;
}

void write_tensors(const char *path, const std::vector<Tensor> &ts) {
  std::ofstream out(path, std::ios::binary);
  const uint32_t count = ts.size();
  out.write("KCT1", 4);
  out.write((const char *)&count, 4);
  for (const auto &x : ts) {
    out.write((const char *)&x.t.dtype, 4);
    out.write((const char *)&x.t.rank, 4);
    out.write((const char *)x.t.shape, 8 * x.t.rank);
    out.write((const char *)x.data.data(), x.data.size());
  }
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s INPUTS.kct OUTPUTS.kct [FUNCTION] [REPEATS] [WEIGHTS]\n",
                 argv[0]);
    return 2;
  }
  try {
    const auto c0 = std::chrono::steady_clock::now();
    API(model) *model = API(create)(argc > 5 ? argv[5] : nullptr);
    const double create_ms = std::chrono::duration<double, std::milli>(
        std::chrono::steady_clock::now() - c0).count();
    if (!model) {
      std::fprintf(stderr, "create: %s\n", API(error)(nullptr));
      return 1;
    }
    const int32_t f = argc > 3 ? API(function_index)(argv[3]) : 0;
    if (f < 0) {
      std::fprintf(stderr, "no function %s\n", argv[3]);
      return 1;
    }
    std::vector<Tensor> inputs = read_tensors(argv[1]);
    std::vector<kc_tensor> in;
    for (auto &x : inputs) in.push_back(x.t);
    std::vector<Tensor> outputs(API(output_count)(f));
    std::vector<kc_tensor> out(outputs.size());
    if (API(output_shapes)(model, f, in.data(), out.data())) {
      std::fprintf(stderr, "shapes: %s\n", API(error)(model));
      return 1;
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      outputs[i].t = out[i];
      int64_t n = 1;
      for (int32_t d = 0; d < out[i].rank; ++d) n *= out[i].shape[d];
      outputs[i].data.resize(n * itemsize(out[i].dtype));
      finish(outputs[i]);
      out[i] = outputs[i].t;
    }
    const int repeats = argc > 4 ? std::max(1, std::atoi(argv[4])) : 1;
    std::vector<double> micros;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      if (API(run)(model, f, in.data(), out.data())) {
        std::fprintf(stderr, "run: %s\n", API(error)(model));
        return 1;
      }
      micros.push_back(std::chrono::duration<double, std::micro>(
                           std::chrono::steady_clock::now() - t0).count());
    }
    write_tensors(argv[2], outputs);
    std::printf("create_ms %.3f\n", create_ms);
    if (repeats > 1) {
      std::sort(micros.begin(), micros.end());
      std::printf("calls %d\nmedian_us %.3f\nmin_us %.3f\np90_us %.3f\n", repeats,
                  micros[micros.size() / 2], micros.front(), micros[micros.size() * 9 / 10]);
    }
    std::printf("ran %s: %zu inputs, %zu outputs\n", API(function_name)(f), inputs.size(),
                outputs.size());
    API(destroy)(model);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
