// Packed weights kept across calls (kc_api.pack_cached). A compiled function whose matrix
// product reads a variable as B would otherwise pack B's panels again at every call: for a
// Dense layer at batch 1 that copy costs more than the product read from packed panels
// ((1,784)x(784,512) float32: 7.6 -> 4.9 us), and at batch 64 it is a sixth of the time. The
// fused LSTM keeps its recurrent weights here too (lstm_impl.h), and generated code its own
// layouts (pack_cached_with: a direct convolution's filter panels).
//
// An entry is found by what was packed (the weights' address and the packed form: kernel,
// layout, extents, strides, dtype) and knows the memory it was packed from. weights_written
// (set_value, a function that writes variables, each variable it wrote; a new executable or
// AOT model, all memory: its buffers may sit where freed ones were) marks the entries packed
// from that memory stale, and a stale entry is never used: it is packed again, in place, on its
// next use. Only the memory written counts: a Keras predict function that advances its random
// generator's state leaves the Dense kernels' panels valid. Entries in use are never repacked
// or freed; stale idle ones are freed, least recently used first, when the cache would
// outgrow KCOMP_PACK_CACHE_MB (default 256; 0 turns the cache off). When an entry cannot be
// had (the cache full of valid entries, one being packed by another thread), the caller packs
// for itself as before.
#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "kernels.h"

namespace kcomp {
namespace {

struct Entry {
  PackKey key;
  const char *begin, *end;  // the memory packed from
  int64_t bytes;
  void *packed;
  bool valid;    // packed from the memory's current values
  bool written;  // the memory was written while this entry was being packed
  int32_t users;
  uint64_t last_use;
};

struct Cache {
  std::mutex mu;
  std::vector<Entry *> entries;
  int64_t total = 0;
  uint64_t clock = 0;
};

Cache &cache() {
  static Cache *c = new Cache;  // never destroyed: calls may still run while the process exits
  return *c;
}

int64_t cap_bytes() {
  static const int64_t cap = [] {
    const int64_t fallback = int64_t(256) << 20;
    const char *s = std::getenv("KCOMP_PACK_CACHE_MB");
    if (!s || !*s) return fallback;
    char *end = nullptr;
    const long long mb = std::strtoll(s, &end, 10);
    return *end || mb < 0 ? fallback : int64_t(mb) << 20;
  }();
  return cap;
}

bool same_key(const PackKey &a, const PackKey &b) {
  if (a.src != b.src) return false;
  for (int i = 0; i < 8; ++i)
    if (a.form[i] != b.form[i]) return false;
  return true;
}

// Frees stale idle entries, least recently used first, until `bytes` more fit under the cap.
// Valid entries stay: weights that a model reads in turn and that do not all fit would
// otherwise evict each other at every call, each repacked into freshly mapped memory.
bool make_room(Cache &c, int64_t bytes) {
  while (c.total + bytes > cap_bytes()) {
    Entry *oldest = nullptr;
    for (Entry *e : c.entries)
      if (e->users == 0 && !e->valid && (!oldest || e->last_use < oldest->last_use)) oldest = e;
    if (!oldest) return false;
    c.total -= oldest->bytes;
    std::free(oldest->packed);
    c.entries.erase(std::find(c.entries.begin(), c.entries.end(), oldest));
    delete oldest;
  }
  return true;
}

int32_t fill_gemm(void *g, void *out) { return gemm_pack(static_cast<const kc_gemm_args *>(g), out); }

}  // namespace

void weights_written(const void *data, int64_t bytes) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const char *b = static_cast<const char *>(data), *e = b + (bytes > 0 ? bytes : 0);
  for (Entry *x : c.entries)
    if (!data || (x->begin < e && b < x->end)) {
      x->valid = false;
      x->written = true;
    }
}

const void *cached_pack(const PackKey &key, int64_t src_bytes, int64_t bytes,
                        int32_t (*fill)(void *, void *), void *ctx, void **handle) {
  *handle = nullptr;
  if (bytes <= 0 || bytes > cap_bytes()) return nullptr;
  Cache &c = cache();
  std::unique_lock<std::mutex> lock(c.mu);
  Entry *e = nullptr;
  for (Entry *x : c.entries)
    if (x->bytes == bytes && same_key(x->key, key)) {
      e = x;
      break;
    }
  if (e && e->valid) {  // a hit
    ++e->users;
    e->last_use = ++c.clock;
    *handle = e;
    return e->packed;
  }
  if (e && e->users) return nullptr;  // being packed, or stale and still read by another call
  if (!e) {
    if (!make_room(c, bytes)) return nullptr;
    void *mem = std::aligned_alloc(64, (static_cast<size_t>(bytes) + 63) & ~size_t(63));
    if (!mem) return nullptr;
    const char *src = static_cast<const char *>(key.src);
    e = new Entry{key, src, src + src_bytes, bytes, mem, false, false, 0, 0};
    c.entries.push_back(e);
    c.total += bytes;
  }
  e->valid = false;
  e->written = false;
  e->users = 1;
  e->last_use = ++c.clock;
  lock.unlock();
  const int32_t st = fill(ctx, e->packed);  // outside the lock: it may take the pool's threads
  lock.lock();
  if (st != KC_OK) {
    --e->users;
    return nullptr;
  }
  e->valid = !e->written;  // weights written meanwhile: this call's panels, nobody else's
  *handle = e;
  return e->packed;
}

const void *pack_cached(const kc_gemm_args *g, void **handle) {
  *handle = nullptr;
  const int32_t form = gemm_packing(g);
  if (!form) return nullptr;
  // the bytes B spans: k rows of n (op(B) = B^T: n rows of k), ldb apart, per batch item
  const int64_t esize = g->dtype == KC_FLOAT64 ? 8 : 4;
  const int64_t rows = g->trans_b ? g->n : g->k, cols = g->trans_b ? g->k : g->n;
  const int64_t span = ((rows - 1) * g->ldb + cols +
                        (g->stride_b ? (g->batch - 1) * g->stride_b : 0)) * esize;
  const PackKey key{g->b, {1, form, 2 * g->dtype + g->trans_b, g->n, g->k, g->ldb, g->stride_b,
                           g->stride_b ? g->batch : 0}};
  return cached_pack(key, span, gemm_packed_size(g), fill_gemm, const_cast<kc_gemm_args *>(g),
                     handle);
}

const void *pack_cached_with(const void *src, int64_t src_bytes, const int64_t *form,
                             int64_t bytes, int32_t (*fill)(void *, void *), void *ctx,
                             void **handle) {
  PackKey key{src, {}};
  for (int i = 0; i < 8; ++i) key.form[i] = form[i];
  return cached_pack(key, src_bytes, bytes, fill, ctx, handle);
}

void pack_release(void *handle) {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  --static_cast<Entry *>(handle)->users;
}

}  // namespace kcomp
