/*
 * Thread pool: workers are created on the first parallel call that needs them, wait on a
 * condition variable between calls (after a spin long enough to bridge the JS work between the
 * kernel calls of a decode step, so those calls do not pay a futex wake-up each). A job is cut into
 * several chunks per thread that the threads, the caller included, claim from a shared counter: a
 * thread that starts late (woken from sleep, or preempted by the garbage collector on a machine
 * with as many cores as threads) then does less of the job instead of the whole job waiting for
 * its fixed share.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "gf_internal.h"

#if GF_X86
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker (or the caller waiting for workers) spins before sleeping: longer than
 * the gaps between the native calls of one decode step (measured: 0.1-0.5 ms of JS each). */
#define SPIN_NS 2000000
/* Chunks per participating thread: enough to even out a late start, few enough that claiming
 * them costs nothing next to the work. */
#define CHUNKS_PER_THREAD 8

static pthread_mutex_t call_mutex = PTHREAD_MUTEX_INITIALIZER;
void gf_call_lock(void) { pthread_mutex_lock(&call_mutex); }
void gf_call_unlock(void) { pthread_mutex_unlock(&call_mutex); }

typedef struct {
  gf_task_fn fn;
  void *ctx;
  int64_t n, chunk;
  int active; /* workers (indices 1..active) that take part */
} job_t;

/* The next unclaimed chunk of the current job (reset before the job is published). */
static atomic_int_fast64_t next_chunk;

/*
 * Jobs are published seqlock-style: the generation is odd while the caller writes the job and
 * even once it is complete, so a spinning worker picks a job up without taking the mutex. (A
 * worker that blocks on the caller's mutex right when the caller posts gets woken onto the
 * caller's CPU and preempts it: the two halves of the job then run one after the other.) The
 * mutex and condition variables are only for workers and callers that have gone to sleep.
 */
static struct {
  pthread_mutex_t mutex;
  pthread_cond_t wake, done;
  int requested; /* threads in all, caller included (guarded by dispatch_mutex) */
  int running;   /* workers started */
  pthread_t workers[GF_MAX_THREADS];
  atomic_uint_fast64_t generation;
  atomic_int pending;        /* workers still busy with the current job */
  atomic_int sleepers;       /* workers waiting on `wake` */
  atomic_int caller_waiting; /* the caller waits on `done` */
  atomic_bool shutdown;
  job_t job;
} pool = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .requested = 1,
};
/* Serializes whole jobs (and resizing) in case two calls overlap. */
static pthread_mutex_t dispatch_mutex = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and runs chunks until none is left. */
static void run_chunks(const job_t *job, int index) {
  for (;;) {
    int64_t begin = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed) * job->chunk;
    if (begin >= job->n) return;
    job->fn(job->ctx, begin, GF_MIN(job->n, begin + job->chunk), index);
  }
}

static inline bool is_new(uint64_t generation, uint64_t seen) {
  return generation != seen && (generation & 1) == 0;
}

/* The generation current when each worker was created: a worker that first runs after the job
 * it was created for has been posted must still see that job as new. */
static uint64_t start_generation[GF_MAX_THREADS];

static void *worker_main(void *arg) {
  int index = (int)(intptr_t)arg; /* 1-based: the caller is 0 */
  uint64_t seen = start_generation[index];
  for (;;) {
    uint64_t generation = atomic_load_explicit(&pool.generation, memory_order_acquire);
    int64_t spin_until = now_ns() + SPIN_NS;
    for (int spins = 0; !is_new(generation, seen) && !atomic_load(&pool.shutdown);) {
      cpu_relax();
      if ((++spins & 255) == 0 && now_ns() > spin_until) break;
      generation = atomic_load_explicit(&pool.generation, memory_order_acquire);
    }
    if (!is_new(generation, seen) && !atomic_load(&pool.shutdown)) {
      pthread_mutex_lock(&pool.mutex);
      atomic_fetch_add(&pool.sleepers, 1);
      while (!is_new(generation = atomic_load(&pool.generation), seen) && !atomic_load(&pool.shutdown))
        pthread_cond_wait(&pool.wake, &pool.mutex);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.mutex);
    }
    if (atomic_load(&pool.shutdown)) return NULL;
    job_t job = pool.job;
    atomic_thread_fence(memory_order_acquire);
    seen = generation;
    /* Rewritten meanwhile: then this worker was not part of that job (the caller waits for
     * every participant before it posts the next one); pick up the newer job instead. */
    if (atomic_load(&pool.generation) != generation) continue;
    if (index > job.active) continue;
    run_chunks(&job, index);
    if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_waiting)) {
      pthread_mutex_lock(&pool.mutex);
      pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.mutex);
    }
  }
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.mutex);
  atomic_store(&pool.shutdown, true);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mutex);
  for (int i = 0; i < pool.running; i++) pthread_join(pool.workers[i], NULL);
  pool.running = 0;
  atomic_store(&pool.shutdown, false);
}

/* Starts workers up to the requested count; returns how many threads (caller included) run. */
static int ensure_workers(void) {
  while (pool.running < pool.requested - 1) {
    start_generation[pool.running + 1] = atomic_load(&pool.generation);
    if (pthread_create(&pool.workers[pool.running], NULL, worker_main,
                       (void *)(intptr_t)(pool.running + 1)) != 0)
      break; /* fewer threads than asked: still correct, just slower */
    pool.running++;
  }
  return pool.running + 1;
}

void gf_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > GF_MAX_THREADS) n = GF_MAX_THREADS;
  pthread_mutex_lock(&dispatch_mutex);
  if (n != pool.requested) {
    stop_workers();
    pool.requested = n;
  }
  pthread_mutex_unlock(&dispatch_mutex);
}

int gf_threads(void) {
  pthread_mutex_lock(&dispatch_mutex);
  int n = pool.requested;
  pthread_mutex_unlock(&dispatch_mutex);
  return n;
}

void gf_parallel_for(int64_t n, int64_t align, int64_t min_per_thread, gf_task_fn fn, void *ctx) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  if (min_per_thread < 1) min_per_thread = 1;
  pthread_mutex_lock(&dispatch_mutex);
  int64_t max_by_size = GF_MAX(1, n / min_per_thread);
  int threads = (int)GF_MIN((int64_t)pool.requested, max_by_size);
  if (threads > 1) threads = GF_MIN(threads, ensure_workers());
  int64_t per = (n + threads - 1) / threads;
  per = (per + align - 1) / align * align;
  threads = (int)((n + per - 1) / per); /* rounding up to `align` can leave the last ones idle */
  if (threads <= 1) {
    pthread_mutex_unlock(&dispatch_mutex);
    fn(ctx, 0, n, 0);
    return;
  }
  int64_t chunk = (per + CHUNKS_PER_THREAD - 1) / CHUNKS_PER_THREAD;
  chunk = (chunk + align - 1) / align * align;
  job_t job = {fn, ctx, n, chunk, threads - 1};
  atomic_store(&next_chunk, 0);
  uint64_t generation = atomic_load(&pool.generation);
  atomic_store(&pool.generation, generation + 1); /* odd: being written */
  atomic_thread_fence(memory_order_release);
  pool.job = job;
  atomic_store(&pool.pending, threads - 1);
  atomic_store(&pool.generation, generation + 2); /* even: published */
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.mutex);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mutex);
  }

  run_chunks(&job, 0);

  int64_t spin_until = now_ns() + SPIN_NS;
  for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0;) {
    cpu_relax();
    if ((++spins & 255) == 0 && now_ns() > spin_until) break;
  }
  if (atomic_load(&pool.pending) > 0) {
    pthread_mutex_lock(&pool.mutex);
    atomic_store(&pool.caller_waiting, 1);
    while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.mutex);
    atomic_store(&pool.caller_waiting, 0);
    pthread_mutex_unlock(&pool.mutex);
  }
  pthread_mutex_unlock(&dispatch_mutex);
}

/* ---- scratch ---- */
static struct {
  void *ptr;
  size_t bytes;
} scratch[GF_MAX_THREADS][GF_SCRATCH_SLOTS];

void *gf_scratch(int thread, int slot, size_t bytes) {
  if (bytes == 0) bytes = GF_ALIGN;
  if (scratch[thread][slot].bytes >= bytes) return scratch[thread][slot].ptr;
  size_t grown = GF_MAX(bytes, scratch[thread][slot].bytes * 2);
  grown = (grown + GF_ALIGN - 1) / GF_ALIGN * GF_ALIGN;
  void *p = aligned_alloc(GF_ALIGN, grown);
  if (!p) return NULL;
  free(scratch[thread][slot].ptr);
  scratch[thread][slot].ptr = p;
  scratch[thread][slot].bytes = grown;
  return p;
}
