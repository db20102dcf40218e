// The kernel library's thread pool: one process-wide set of workers behind kc_api.parallel_for.
//
// The caller takes part in the work, so a pool of N threads starts N-1 workers. Workers spin
// briefly before sleeping, because generated functions issue kernels back to back and waking a
// sleeping thread costs tens of microseconds. Chunk c of a job is first offered to thread c
// (the caller is thread 0), so a kernel that splits the same data the same way at every call or
// every RNN step finds its part still in that core's cache; a thread that finishes its own
// chunk takes any chunk nobody has started (a descheduled worker does not stall the caller). A call made while the pool is busy (another Python
// thread calling a compiled function) runs on its own thread instead of waiting. After fork() the
// child starts with no workers and builds a fresh pool on first use.
#include "kernels.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kcomp {
namespace {

struct Job {
  kc_task_fn fn;
  void *ctx;
  int64_t n, chunks;
  std::unique_ptr<std::atomic<bool>[]> taken;  // per chunk
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  }
  int threads() const { return threads_; }

  void run(int64_t n, int64_t grain, kc_task_fn fn, void *ctx) {
    int64_t chunks = std::min<int64_t>(threads_, (n + grain - 1) / std::max<int64_t>(grain, 1));
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (chunks <= 1 || !busy.owns_lock()) {
      fn(ctx, 0, n);
      return;
    }
    // Each run publishes its own job object: a worker that wakes late holds a reference to the
    // job it saw, finds its chunks all taken and goes back to waiting, never touching a newer job.
    auto job = std::make_shared<Job>();
    job->fn = fn;
    job->ctx = ctx;
    job->n = n;
    job->chunks = chunks;
    job->taken.reset(new std::atomic<bool>[chunks]);
    for (int64_t c = 0; c < chunks; ++c) job->taken[c].store(false, std::memory_order_relaxed);
    // Spinning workers read the job without the mutex: one that saw the new generation and
    // then blocked on a mutex the caller still held would cost a futex sleep and wake per job
    // (about 1 us, measured on an RNN step at batch 1).
    std::atomic_store(&current_, job);
    {
      std::lock_guard<std::mutex> lk(mu_);  // sleepers check the generation under it
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(*job, 0);
    for (int spin = 0; job->done.load(std::memory_order_acquire) < chunks; ++spin) {
      if (spin < 4096) pause(); else std::this_thread::yield();
    }
  }

 private:
  // Runs chunk `self` if nobody has taken it, then any chunk left.
  static void work(Job &job, int64_t self) {
    for (int64_t i = 0; i < job.chunks; ++i) {
      const int64_t c = (self + i) % job.chunks;
      if (job.taken[c].load(std::memory_order_relaxed) ||
          job.taken[c].exchange(true, std::memory_order_acq_rel))
        continue;
      job.fn(job.ctx, job.n * c / job.chunks, job.n * (c + 1) / job.chunks);
      job.done.fetch_add(1, std::memory_order_release);
    }
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  void worker(int self) {
    uint64_t seen = 0;
    for (;;) {
      // Spin a little first: kernels of one call follow each other within microseconds.
      for (int spin = 0; spin < 20000; ++spin) {
        if (generation_.load(std::memory_order_acquire) != seen) break;
        pause();
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      std::shared_ptr<Job> job = std::atomic_load(&current_);
      if (job) work(*job, self);
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the one caller that owns the workers right now
  std::mutex mu_;    // taken to change generation_, so that sleepers miss no wake-up
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::shared_ptr<Job> current_;  // read and written with std::atomic_load/atomic_store
};

int default_threads() {
  if (const char *env = std::getenv("KCOMP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return std::min(n, 1024);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

std::mutex g_mu;
Pool *g_pool = nullptr;  // leaked on purpose: workers must not be joined during static destruction

void forget_pool_after_fork() {
  // The child has none of the parent's threads; drop the pool without touching it.
  g_pool = nullptr;
  new (&g_mu) std::mutex();
}

Pool &pool() {
  Pool *p = __atomic_load_n(&g_pool, __ATOMIC_ACQUIRE);
  if (p) return *p;
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_pool) {
    static bool atfork = (pthread_atfork(nullptr, nullptr, forget_pool_after_fork), true);
    (void)atfork;
    __atomic_store_n(&g_pool, new Pool(default_threads()),
                     __ATOMIC_RELEASE);
  }
  return *g_pool;
}

}  // namespace

int32_t num_threads() { return pool().threads(); }

void parallel_for(int64_t n, int64_t grain, kc_task_fn fn, void *ctx) {
  if (n <= 0) return;
  if (n <= grain) {
    fn(ctx, 0, n);
    return;
  }
  pool().run(n, grain, fn, ctx);
}

}  // namespace kcomp
