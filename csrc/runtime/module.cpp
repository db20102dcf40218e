// kcomp._runtime: the only translation unit that sees Python. It loads generated libraries
// (dlopen + ABI and key checks), validates and converts call arguments, allocates outputs and runs
// the native entry with the GIL released. Built once, at pip install.
#include <dlfcn.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kcomp/abi.h"

extern "C" const char *kcomp_kernels_isa(void);

namespace py = pybind11;

namespace {

// numpy type numbers (NPY_TYPES) for the kc_dtype codes, indexed by kc_dtype.
int numpy_num(int32_t kc) {
  switch (kc) {
    case KC_BOOL: return py::dtype::of<bool>().num();
    case KC_INT8: return py::dtype::of<int8_t>().num();
    case KC_INT16: return py::dtype::of<int16_t>().num();
    case KC_INT32: return py::dtype::of<int32_t>().num();
    case KC_INT64: return py::dtype::of<int64_t>().num();
    case KC_UINT8: return py::dtype::of<uint8_t>().num();
    case KC_UINT16: return py::dtype::of<uint16_t>().num();
    case KC_UINT32: return py::dtype::of<uint32_t>().num();
    case KC_UINT64: return py::dtype::of<uint64_t>().num();
    case KC_FLOAT16: return py::dtype("float16").num();
    case KC_FLOAT32: return py::dtype::of<float>().num();
    case KC_FLOAT64: return py::dtype::of<double>().num();
    default: throw std::invalid_argument("unknown kc_dtype " + std::to_string(kc));
  }
}

[[noreturn]] void raise_status(int32_t status, const std::string &msg) {
  switch (status) {
    case KC_EINVAL: throw py::value_error(msg);
    case KC_EINDEX: throw py::index_error(msg);
    case KC_ENOMEM: PyErr_SetString(PyExc_MemoryError, msg.c_str()); throw py::error_already_set();
    default: throw std::runtime_error(msg);
  }
}

// A loaded generated library. Never dlclose()d: compiled functions may outlive any one owner, and
// entries in the cache are immutable, so keeping the mapping is always safe.
struct Library {
  std::string path;
  const kc_module *mod = nullptr;

  // suffix: an ahead-of-time artifact holds several functions, exported as kc_get_module<suffix>
  Library(const std::string &p, const std::string &key, const std::string &suffix) : path(p) {
    void *h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) throw std::runtime_error(std::string("cannot load ") + p + ": " + dlerror());
    auto ver = reinterpret_cast<kc_abi_version_fn>(dlsym(h, ("kc_abi_version" + suffix).c_str()));
    auto get = reinterpret_cast<kc_get_module_fn>(dlsym(h, ("kc_get_module" + suffix).c_str()));
    if (!ver || !get) throw std::runtime_error(p + " is not a kcomp library (missing kc_get_module)");
    if (ver() != KC_ABI_VERSION)
      throw std::runtime_error(p + " was built for kcomp ABI " + std::to_string(ver()) +
                               ", this runtime speaks ABI " + std::to_string(KC_ABI_VERSION));
    mod = get();
    if (!mod || mod->abi_version != KC_ABI_VERSION || !mod->shapes || !mod->run)
      throw std::runtime_error(p + ": malformed kc_module");
    if (key != mod->key)
      throw std::runtime_error(p + " reports cache key " + std::string(mod->key) + ", expected " + key);
  }
  std::string key() const { return mod->key; }
};

// Large outputs come from recycled blocks. A fresh numpy array of 64 MiB is a new mmap whose
// pages fault in, zeroed, while the kernel writes them (a 4096x4096 softmax spent 4.5 of its
// 5.5 ms so); a block goes back to the pool when its array and every view of it are gone, and
// the next call's output of about that size reuses it. Bounded in blocks and bytes: a returned
// block evicts the oldest ones, so that the sizes in use now stay (when the pool kept its first
// eight blocks instead, a process that had called many functions faulted every large output in
// again: K.relu of 4096x4096 16 ms instead of 2.7 ms).
class OutputPool {
 public:
  static OutputPool &get() {
    static OutputPool *pool = new OutputPool;  // never destroyed: arrays may outlive exit order
    return *pool;
  }

  py::array take(const py::dtype &dt, const std::vector<py::ssize_t> &shape) {
    size_t bytes = static_cast<size_t>(dt.itemsize());
    for (py::ssize_t e : shape) bytes *= static_cast<size_t>(e);
    if (bytes < kMinBytes) return py::array(dt, shape);
    void *h = reuse(bytes);
    if (!h) {
      h = std::aligned_alloc(64, kHeader + ((bytes + 4095) & ~size_t(4095)));
      if (!h) throw std::bad_alloc();
      capacity(h) = (bytes + 4095) & ~size_t(4095);
    }
    char *data = static_cast<char *>(h) + kHeader;
    py::capsule owner(data, [](void *p) { get().give(static_cast<char *>(p) - kHeader); });
    return py::array(dt, shape, data, owner);
  }

 private:
  static constexpr size_t kHeader = 64, kMinBytes = size_t(1) << 20;
  static constexpr size_t kMaxBytes = size_t(512) << 20;
  static constexpr size_t kMaxBlocks = 8;
  static size_t &capacity(void *h) { return *static_cast<size_t *>(h); }

  // the smallest free block that fits and wastes at most half; of equal ones the most recently
  // returned (its pages are the warmest; the oldest first made a function's own block go to
  // another caller whenever the pool held an older block of that size)
  void *reuse(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      const size_t cap = capacity(free_[i]);
      if (cap >= bytes && cap / 2 <= bytes &&
          (best == free_.size() || cap <= capacity(free_[best])))
        best = i;
    }
    if (best == free_.size()) return nullptr;
    void *h = free_[best];
    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
    total_ -= capacity(h);
    return h;
  }

  void give(void *h) {
    std::lock_guard<std::mutex> lock(mu_);
    if (capacity(h) > kMaxBytes) {
      std::free(h);
      return;
    }
    free_.push_back(h);
    total_ += capacity(h);
    while (free_.size() > kMaxBlocks || total_ > kMaxBytes) {  // the oldest go
      total_ -= capacity(free_.front());
      std::free(free_.front());
      free_.erase(free_.begin());
    }
  }

  std::mutex mu_;
  std::vector<void *> free_;  // block headers, oldest first
  size_t total_ = 0;
};

struct InputSpec {
  std::string name;
  int32_t dtype;
  int num;  // numpy type number
  py::dtype np_dtype;
  std::vector<int64_t> shape;  // -1: unknown
};

void fill_tensor(kc_tensor &t, const py::array &a, int32_t dtype) {
  std::memset(&t, 0, sizeof(t));
  t.data = const_cast<void *>(a.data());
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(a.ndim());
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.shape[d] = a.shape(d);
    t.strides[d] = stride;
    stride *= a.shape(d);
  }
}

std::string shape_str(const std::vector<int64_t> &s) {  // formatted like a Python tuple
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += s[i] < 0 ? "None" : std::to_string(s[i]);
  }
  return out + (s.size() == 1 ? ",)" : ")");
}

std::string array_shape_str(const py::array &a) {
  std::vector<int64_t> s(a.shape(), a.shape() + a.ndim());
  return shape_str(s);
}

// K.print_tensor from generated code: the message and the value, through Python's print to
// sys.stderr (as TensorFlow's print_tensor does), so it interleaves with the program's output.
void print_to_python(const char *message, const kc_tensor *t) {
  py::gil_scoped_acquire gil;
  try {
    std::vector<py::ssize_t> shape(t->shape, t->shape + t->rank);
    py::array view(py::dtype(numpy_num(t->dtype)), shape, t->data);  // copies the data
    py::print(message, view, py::arg("file") = py::module_::import("sys").attr("stderr"));
  } catch (py::error_already_set &e) {
    e.discard_as_unraisable("kcomp print_tensor");
  }
}

// The services generated code gets: the kernel library's, with Python printing.
const kc_api *runtime_api() {
  static const kc_api api = [] {
    kc_api a = *kcomp_kernels_api();
    a.size = sizeof(kc_api);
    a.print = print_to_python;
    return a;
  }();
  return &api;
}

// One compiled function bound to its constants and variables.
class Executable {
 public:
  Executable(std::shared_ptr<Library> lib, std::vector<py::tuple> inputs, std::vector<int32_t> output_dtypes,
             std::vector<py::array> consts, std::vector<int32_t> const_dtypes,
             std::vector<py::array> variables, std::vector<int32_t> variable_dtypes)
      : lib_(std::move(lib)), output_dtypes_(std::move(output_dtypes)) {
    const kc_module *m = lib_->mod;
    if (static_cast<size_t>(m->n_inputs) != inputs.size() ||
        static_cast<size_t>(m->n_outputs) != output_dtypes_.size() ||
        static_cast<size_t>(m->n_consts) != consts.size() ||
        static_cast<size_t>(m->n_variables) != variables.size())
      throw std::runtime_error(lib_->path + ": signature does not match the library");
    numpy_ = py::module_::import("numpy");
    for (auto &t : inputs) {
      InputSpec s;
      s.name = t[0].cast<std::string>();
      s.dtype = t[1].cast<int32_t>();
      s.num = numpy_num(s.dtype);
      s.np_dtype = py::dtype(s.num);
      s.shape = t[2].cast<std::vector<int64_t>>();
      specs_.push_back(std::move(s));
    }
    for (auto d : output_dtypes_) output_np_.push_back(py::dtype(numpy_num(d)));
    consts_.resize(consts.size());
    for (size_t i = 0; i < consts.size(); ++i) {
      keep_.push_back(consts[i]);
      fill_tensor(consts_[i], consts[i], const_dtypes[i]);
    }
    variables_.resize(variables.size());
    for (size_t i = 0; i < variables.size(); ++i) {
      py::array v = variables[i];
      if (!(v.flags() & py::array::c_style) || !v.writeable() || v.dtype().num() != numpy_num(variable_dtypes[i]))
        throw std::runtime_error("variable buffers must be writable, C-contiguous and of their dtype");
      keep_.push_back(v);
      fill_tensor(variables_[i], v, variable_dtypes[i]);
    }
    // its buffers may sit where freed ones were: packed panels cached for those are stale
    kcomp_kernels_api()->weights_written(nullptr, 0);
  }

  // profile: None, or a float64 array of n_kernels() to which each kernel's seconds are added
  py::list run(const py::sequence &args, const py::object &profile) {
    const size_t n = specs_.size();
    double *prof = nullptr;
    if (!profile.is_none()) {
      auto p = py::cast<py::array>(profile);
      if (p.dtype().num() != py::dtype::of<double>().num() || p.ndim() != 1 ||
          p.shape(0) != lib_->mod->n_kernels || !(p.flags() & py::array::c_style) || !p.writeable())
        throw py::value_error(name_ + ": profile must be a writable float64 array of " +
                              std::to_string(lib_->mod->n_kernels) + " elements");
      prof = static_cast<double *>(p.mutable_data());
    }
    if (static_cast<size_t>(py::len(args)) != n)
      throw py::value_error(name_ + " expects " + std::to_string(n) + " input" + (n == 1 ? "" : "s") +
                            ", got " + std::to_string(py::len(args)));
    std::vector<py::array> held(n);
    kc_call call;
    std::vector<kc_tensor> in(n), vars(variables_), outs(output_dtypes_.size());
    for (size_t i = 0; i < n; ++i) {
      held[i] = convert(i, args[i]);
      fill_tensor(in[i], held[i], specs_[i].dtype);
    }
    call.api = runtime_api();
    call.inputs = in.data();
    call.n_inputs = static_cast<int32_t>(n);
    call.consts = consts_.data();
    call.n_consts = static_cast<int32_t>(consts_.size());
    call.variables = vars.data();
    call.n_variables = static_cast<int32_t>(vars.size());
    call.outputs = outs.data();
    call.n_outputs = static_cast<int32_t>(outs.size());
    call.error[0] = 0;
    call.profile = prof;
    for (auto &o : outs) std::memset(&o, 0, sizeof(o));
    int32_t st = lib_->mod->shapes(&call);
    if (st != KC_OK) raise_status(st, name_ + ": " + call.error);
    py::list result;
    for (size_t i = 0; i < outs.size(); ++i) {
      std::vector<py::ssize_t> shape(outs[i].shape, outs[i].shape + outs[i].rank);
      py::array a = OutputPool::get().take(output_np_[i], shape);
      fill_tensor(outs[i], a, output_dtypes_[i]);
      result.append(a);
    }
    {
      py::gil_scoped_release nogil;
      st = lib_->mod->run(&call);
    }
    if (st != KC_OK) raise_status(st, name_ + ": " + call.error);
    return result;
  }

  void set_name(const std::string &n) { name_ = n; }
  int32_t n_kernels() const { return lib_->mod->n_kernels; }

 private:
  // Accepts an array whose dtype converts to the input's dtype without changing kind (float64 ->
  // float32 is allowed, float -> int is not), or Python numbers and lists that fit the dtype;
  // then requires the declared rank and static dims.
  py::array convert(size_t i, py::handle obj) {
    const InputSpec &s = specs_[i];
    py::array a;
    auto what = [&] { return name_ + ": input '" + s.name + "' (#" + std::to_string(i) + ")"; };
    if (py::isinstance<py::array>(obj)) {
      a = py::reinterpret_borrow<py::array>(obj);
      if (a.dtype().num() != s.num) {
        if (!numpy_.attr("can_cast")(a.dtype(), s.np_dtype, "same_kind").cast<bool>())
          throw py::value_error(what() + " has dtype " + py::str(a.dtype()).cast<std::string>() +
                                ", which does not convert to " + py::str(s.np_dtype).cast<std::string>() +
                                " without changing kind");
        a = a.attr("astype")(s.np_dtype);
      }
    } else {
      // Python values (Keras feeds the learning phase as the int 1): numpy checks they fit
      py::array probe = numpy_.attr("asarray")(obj);
      const char kind = probe.dtype().kind(), want = s.np_dtype.kind();
      if ((kind == 'f' && want != 'f') || kind == 'O' || kind == 'U' || kind == 'S')
        throw py::value_error(what() + " got a value of dtype " + py::str(probe.dtype()).cast<std::string>() +
                              ", which does not convert to " + py::str(s.np_dtype).cast<std::string>());
      try {
        a = numpy_.attr("asarray")(obj, s.np_dtype);
      } catch (py::error_already_set &e) {
        throw py::value_error(what() + ": " + std::string(e.what()));
      }
    }
    if (static_cast<size_t>(a.ndim()) != s.shape.size())
      throw py::value_error(name_ + ": input '" + s.name + "' (#" + std::to_string(i) + ") expects rank " +
                            std::to_string(s.shape.size()) + " " + shape_str(s.shape) + ", got shape " +
                            array_shape_str(a));
    for (size_t d = 0; d < s.shape.size(); ++d)
      if (s.shape[d] >= 0 && a.shape(d) != s.shape[d])
        throw py::value_error(name_ + ": input '" + s.name + "' (#" + std::to_string(i) + ") expects shape " +
                              shape_str(s.shape) + ", got " + array_shape_str(a));
    if (!(a.flags() & py::array::c_style)) a = numpy_.attr("ascontiguousarray")(a);
    return a;
  }

  std::shared_ptr<Library> lib_;
  std::vector<InputSpec> specs_;
  std::vector<int32_t> output_dtypes_;
  std::vector<py::dtype> output_np_;
  std::vector<kc_tensor> consts_, variables_;
  std::vector<py::array> keep_;
  py::module_ numpy_;
  std::string name_ = "compiled function";
};

}  // namespace

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "kcomp native runtime: loads generated libraries and calls them";
  m.attr("ABI_VERSION") = KC_ABI_VERSION;
  m.attr("MAX_RANK") = KC_MAX_RANK;
  m.def("kernels_isa", [] { return std::string(kcomp_kernels_isa()); },
        "Instruction set the kernel library dispatched to.");
  m.def("num_threads", [] { return kcomp_kernels_api()->num_threads(); },
        "Threads in the kernel library's pool.");
  m.def("weights_written", [](uintptr_t data, int64_t bytes) {
          kcomp_kernels_api()->weights_written(reinterpret_cast<const void *>(data), bytes);
        }, py::arg("data"), py::arg("bytes"),
        "Variable memory [data, data + bytes) was written outside compiled functions: the "
        "kernel library's packed panels of it are stale (kc_api.weights_written).");
  py::class_<Library, std::shared_ptr<Library>>(m, "Library")
      .def(py::init<const std::string &, const std::string &, const std::string &>(), py::arg("path"),
           py::arg("key"), py::arg("suffix") = "")
      .def_property_readonly("key", &Library::key)
      .def_readonly("path", &Library::path);
  py::class_<Executable>(m, "Executable")
      .def(py::init<std::shared_ptr<Library>, std::vector<py::tuple>, std::vector<int32_t>,
                    std::vector<py::array>, std::vector<int32_t>, std::vector<py::array>,
                    std::vector<int32_t>>(),
           py::arg("library"), py::arg("inputs"), py::arg("output_dtypes"), py::arg("consts"),
           py::arg("const_dtypes"), py::arg("variables"), py::arg("variable_dtypes"))
      .def("run", &Executable::run, py::arg("inputs"), py::arg("profile") = py::none())
      .def_property_readonly("n_kernels", &Executable::n_kernels)
      .def("set_name", &Executable::set_name);
}
