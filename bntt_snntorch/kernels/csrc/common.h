/* What every loop of bntt_snntorch's C kernels shares: headers, the chunk a thread keeps of a row, the
   subnormal setting, checked allocations, and the C spelling of the definition's lerp primitive. */
#ifndef BNTT_COMMON_H
#define BNTT_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

/* Elements of a channel's row one thread keeps in its arrays at a time (the membranes of T steps of them
   are kept for the backward: T * CHUNK floats). */
#define CHUNK 256

/* The initial membrane where none is given (m0 NULL: zeros). */
static const float ZEROS[CHUNK] = {0};

#if defined(__SSE__)
#include <xmmintrin.h>
/* Subnormal floats as zero inside the loops (flush-to-zero, denormals-are-zero), each thread's setting
   restored after: gradients that decay below 1e-38 would otherwise run the slow microcode path. */
#define FLUSH_SUBNORMALS const unsigned int saved_csr = _mm_getcsr(); _mm_setcsr(saved_csr | 0x8040);
#define RESTORE_SUBNORMALS _mm_setcsr(saved_csr);
#else
#define FLUSH_SUBNORMALS
#define RESTORE_SUBNORMALS
#endif

/* Helpers called inside vectorised loops: always inlined, so that the loops vectorise around them. */
#define BNTT_INLINE static inline __attribute__((always_inline))

/* Status a kernel returns: 0, or BNTT_NO_MEMORY where an allocation failed (nothing was computed in full). */
#define BNTT_NO_MEMORY 1

/* malloc / calloc whose failure is recorded in *failed (shared by the threads of a parallel region). */
static inline void* checked_malloc(size_t bytes, int* failed) {
  void* p = malloc(bytes);
  if (!p) {
    #pragma omp atomic write
    *failed = 1;
  }
  return p;
}

static inline void* checked_calloc(size_t count, size_t size, int* failed) {
  void* p = calloc(count, size);
  if (!p) {
    #pragma omp atomic write
    *failed = 1;
  }
  return p;
}

/* The definition's lerp primitive (bntt_snntorch/definition.py) as torch's vectorised CPU kernel rounds it:
   one fused multiply-add from the nearer end. */
BNTT_INLINE float lerp_like_torch(float start, float end, float weight) {
  return fabsf(weight) < 0.5f ? fmaf(weight, end - start, start) : fmaf(weight - 1.0f, end - start, end);
}

#endif
