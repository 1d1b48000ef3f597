"""The ``synapse -> BNTT -> leaky`` block on the CPU as C loops generated from the neuron definition.

The eager torch path runs a dozen small ops a step and layer in each direction; each is a dispatch and a
pass over a ``(B, C, ...)`` slice. Here each direction is one loop nest over the steps, the membrane kept
in a chunk of a channel's row: the formulas are :mod:`bntt_snntorch.definition`'s, written out as C
(:mod:`.c_definition`), and the source is built with the system's C compiler at first use (well under
a second; :mod:`.c_build` keeps the library beside TorchInductor's cache, one file per source). The loops
run on torch's own OpenMP threads (the library links the ``libgomp`` torch has loaded).

Four functions, the layout of :mod:`.triton_bntt` (a sequence ``(T, B, C, L)``, ``L`` the spatial size):

* :func:`batch_statistics` — each step's per-channel mean and biased variance (two passes);
* :func:`forward` — ``current = k * x + shift``, then the neuron, writing spikes only;
* :func:`forward_with_statistics` — training's forward: the two above and the coefficients between them, a
  channel (or a block of channels) at a time, so each value is read from memory once, not three times; the
  running statistics (:class:`RunningStatistics`) updated there too;
* :func:`backward` — recomputes the membranes of a chunk, walks the steps back writing ``dL/dcurrent``
  and adding its per-(step, channel) sums, then turns it into batch norm's input gradient in place.

Rows are chunks of a channel's spatial positions (convolutions of at least :data:`ROW_MIN` positions) or
of a sample's ``C * L`` values (small maps, and ``L = 1``: linear synapses; coefficients and sums per
element), taken in memory order so that every pass streams; sums are kept per thread and added up after.
Subnormal floats count as zero inside the loops, the statistics of training's one-pass forward included (a
decaying gradient would otherwise take the CPU's slow path; the difference is below 1e-38). float32 only;
:func:`supports` says why not where they do not apply.
"""

from __future__ import annotations

import ctypes
import math
import re
from functools import cache
from typing import NamedTuple

import torch

from .c_build import build
from .c_definition import C, Expr, code

#: Elements of a channel's row one thread keeps in its arrays at a time (the membranes of T steps of them
#: are kept for the backward: T * CHUNK floats).
CHUNK = 256

#: Channels with fewer spatial positions than this run the flat loops (rows across channels, coefficients per
#: element): a row of a few vectors would spend its time on per-row sums and loop set-up, not on the values.
#: Where the two cross (AVX-512 and AVX2 builds alike, one 2-core machine): the flat backward 1.2-6x faster
#: at 4x4, 6x6 and 2x2 maps, 1.7x slower at 8x8.
ROW_MIN = 64

_HEADER = """
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>
#define CHUNK {chunk}
/* The initial membrane where none is given (m0 NULL: zeros). */
static const float ZEROS[CHUNK] = {{0}};
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
"""

_MOMENTS = """
/* Step t's batch mean and biased variance of channel c, xt the step (B, C, L): each row's sum in float, the
   rows' in double, then the squared deviations from the rounded mean the same way (two passes). */
static void channel_moments(const float* xt, int64_t B, int64_t C, int64_t L, int64_t c, float* mean, float* var) {
  double total = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* row = xt + (b * C + c) * L;
    float acc = 0.0f;
    #pragma omp simd reduction(+:acc)
    for (int64_t s = 0; s < L; s++) acc += row[s];
    total += acc;
  }
  const float mu = (float)(total / (double)(B * L));
  double squares = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* row = xt + (b * C + c) * L;
    float acc = 0.0f;
    #pragma omp simd reduction(+:acc)
    for (int64_t s = 0; s < L; s++) { const float d = row[s] - mu; acc += d * d; }
    squares += acc;
  }
  *mean = mu;
  *var = (float)(squares / (double)(B * L));
}

/* The same for little or no spatial extent, vectorised over a block of n = cn * L values (cn channels) that lie
   contiguous in each of the B samples of xs (a sample every N values): per-element sums over the batch in
   double, then per channel; mean / var get the block's cn values, mu each element's channel mean (total,
   squares: n doubles of scratch). */
static void block_moments(const float* xs, int64_t B, int64_t N, int64_t n, int64_t L, double* total,
                          double* squares, float* mu, float* mean, float* var) {
  for (int64_t j = 0; j < n; j++) total[j] = squares[j] = 0.0;
  for (int64_t b = 0; b < B; b++)
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) total[j] += xs[b * N + j];
  for (int64_t c = 0; c < n / L; c++) {
    double sum = 0.0;
    for (int64_t s = 0; s < L; s++) sum += total[c * L + s];
    mean[c] = (float)(sum / (double)(B * L));
    for (int64_t s = 0; s < L; s++) mu[c * L + s] = mean[c];
  }
  for (int64_t b = 0; b < B; b++)
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      const float d = xs[b * N + j] - mu[j];
      squares[j] += d * d;
    }
  for (int64_t c = 0; c < n / L; c++) {
    double sum = 0.0;
    for (int64_t s = 0; s < L; s++) sum += squares[c * L + s];
    var[c] = (float)(sum / (double)(B * L));
  }
}
"""

_STATS = """
void bntt_stats(const float* x, float* mean, float* var, int64_t T, int64_t B, int64_t C, int64_t L) {
  #pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < T; t++)
    for (int64_t c = 0; c < C; c++) channel_moments(x + t * B * C * L, B, C, L, c, mean + t * C + c, var + t * C + c);
}

/* The same for little or no spatial extent (L small): a step's values as one block. */
void bntt_stats_flat(const float* x, float* mean, float* var, int64_t T, int64_t B, int64_t C, int64_t L) {
  const int64_t N = C * L;
  #pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; t++) {
    double* total = (double*)malloc(sizeof(double) * N);
    double* squares = (double*)malloc(sizeof(double) * N);
    float* mu = (float*)malloc(sizeof(float) * N);
    block_moments(x + t * B * N, B, N, N, L, total, squares, mu, mean + t * C, var + t * C);
    free(total);
    free(squares);
    free(mu);
  }
}
"""

_FORWARD = """
void bntt_forward(const float* x, const float* k, const float* shift, const float* m0, float* spk, float* mem_last,
                  const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t step = B * C * L;
  const int64_t chunks = (L + CHUNK - 1) / CHUNK;
  #pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * C * chunks; row++) {
    const int64_t bc = row / chunks, s0 = (row % chunks) * CHUNK, c = bc % C;
    const int64_t n = L - s0 < CHUNK ? L - s0 : CHUNK;
    const int64_t off = bc * L + s0;
    FLUSH_SUBNORMALS
    float mr[CHUNK];
    for (int64_t j = 0; j < n; j++) mr[j] = m0 ? m0[off + j] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
      const float kt = k[t * C + c], sh = shift[t * C + c];
      const float* xt = x + t * step + off;
      float* st = spk + t * step + off;
      #pragma omp simd
      for (int64_t j = 0; j < n; j++) {
        const float cur = {normalise};
        {neuron_update}
      }
    }
    if (mem_last)
      for (int64_t j = 0; j < n; j++) mem_last[off + j] = mr[j];
    RESTORE_SUBNORMALS
  }
}
"""

_FORWARD_STATS = """
/* Step-channel tc's coefficients from its batch statistics, rounded as bntt_scan.coefficients rounds them:
   rstd = 1 / sqrt(var + eps) in double, then float (batch norm's kernel); k = rstd * gamma * scale (w NULL: no
   gamma); shift = -mean * k. */
static void coefficients(float mean, float var, const float* w, int64_t tc, double eps, float scale, float* rstd,
                         float* k, float* shift) {
  const float rs = (float)(1.0 / sqrt((double)var + eps));
  k[tc] = w ? rs * (scale != 1.0f ? w[tc] * scale : w[tc]) : (scale != 1.0f ? rs * scale : rs);
  rstd[tc] = rs;
  shift[tc] = -mean * k[tc];
}
/* Step-channel tc's running statistics moved toward its batch mean and variance as batch norm moves them:
   running <- lerp(running, batch, momentum), the variance made unbiased first (var * unbias, rounded to float as
   torch's multiplication by a scalar rounds), lerp as torch's vectorised kernel computes it (one fused
   multiply-add). rm NULL: nothing to update. */
static inline float lerp_like_torch(float start, float end, float weight) {
  return fabsf(weight) < 0.5f ? fmaf(weight, end - start, start) : fmaf(weight - 1.0f, end - start, end);
}
static void running_update(float* rm, float* rv, int64_t tc, float mean, float var, float momentum, float unbias) {
  if (!rm) return;
  rm[tc] = lerp_like_torch(rm[tc], mean, momentum);
  rv[tc] = lerp_like_torch(rv[tc], var * unbias, momentum);
}
/* Training's forward with its own statistics, a channel at a time: each step's batch mean and biased variance of
   the channel (channel_moments, as bntt_stats), its coefficients, then the step's neuron update of the channel's
   B rows; the channel's values are read from the cache for all three. w: (T, C) gammas or NULL (affine=False).
   rm, rv, counts: the running mean and variance (T, C) and num_batches_tracked (T,) to update (running_update,
   and + 1), or NULL. */
void bntt_forward_stats(const float* x, const float* w, double eps, float scale, const float* m0, float* spk,
                        float* mem_last, float* mean, float* var, float* rstd, float* k, float* shift,
                        float* rm, float* rv, int64_t* counts, float momentum, float unbias,
                        const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t step = B * C * L;
  #pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    FLUSH_SUBNORMALS
    float* m = (float*)malloc(sizeof(float) * B * L);
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < L; s++) m[b * L + s] = m0 ? m0[(b * C + c) * L + s] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
      const int64_t tc = t * C + c;
      channel_moments(x + t * step, B, C, L, c, mean + tc, var + tc);
      coefficients(mean[tc], var[tc], w, tc, eps, scale, rstd, k, shift);
      running_update(rm, rv, tc, mean[tc], var[tc], momentum, unbias);
      const float kt = k[tc], sh = shift[tc];
      for (int64_t b = 0; b < B; b++) {
        const float* xt = x + t * step + (b * C + c) * L;
        float* st = spk + t * step + (b * C + c) * L;
        float* mr = m + b * L;
        #pragma omp simd
        for (int64_t j = 0; j < L; j++) {
          const float cur = {normalise};
          {neuron_update}
        }
      }
    }
    if (mem_last)
      for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < L; s++) mem_last[(b * C + c) * L + s] = m[b * L + s];
    free(m);
    RESTORE_SUBNORMALS
  }
  if (counts)
    for (int64_t t = 0; t < T; t++) counts[t] += 1;
}

/* The same for little or no spatial extent (L < ROW_MIN): a block of channels at a time (their C * L values
   contiguous in each sample, each element with its own channel's coefficients), sums per element over the batch
   (as bntt_stats_flat), then per channel. */
void bntt_forward_stats_flat(const float* x, const float* w, double eps, float scale, const float* m0, float* spk,
                             float* mem_last, float* mean, float* var, float* rstd, float* k, float* shift,
                             float* rm, float* rv, int64_t* counts, float momentum, float unbias,
                             const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N;
  const int64_t threads = omp_get_max_threads();
  int64_t width = (CHUNK + L - 1) / L;  /* channels a block: about CHUNK values, at least one block a thread */
  if (width > (C + threads - 1) / threads) width = (C + threads - 1) / threads;
  const int64_t blocks = (C + width - 1) / width;
  #pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; blk++) {
    FLUSH_SUBNORMALS
    const int64_t c0 = blk * width, cn = C - c0 < width ? C - c0 : width, n = cn * L, e0 = c0 * L;
    double* total = (double*)malloc(sizeof(double) * n);
    double* squares = (double*)malloc(sizeof(double) * n);
    float* mu = (float*)malloc(sizeof(float) * n);
    float* kt = (float*)malloc(sizeof(float) * n);
    float* sh = (float*)malloc(sizeof(float) * n);
    float* m = (float*)malloc(sizeof(float) * B * n);
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < n; j++) m[b * n + j] = m0 ? m0[b * N + e0 + j] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
      const float* xs = x + t * step + e0;
      block_moments(xs, B, N, n, L, total, squares, mu, mean + t * C + c0, var + t * C + c0);
      for (int64_t c = 0; c < cn; c++) {
        const int64_t tc = t * C + c0 + c;
        coefficients(mean[tc], var[tc], w, tc, eps, scale, rstd, k, shift);
        running_update(rm, rv, tc, mean[tc], var[tc], momentum, unbias);
        for (int64_t s = 0; s < L; s++) { kt[c * L + s] = k[tc]; sh[c * L + s] = shift[tc]; }
      }
      for (int64_t b = 0; b < B; b++) {
        const float* xt = xs + b * N;
        float* st = spk + t * step + b * N + e0;
        float* mr = m + b * n;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) {
          const float xv = xt[j];
          const float cur = {flat_normalise};
          {neuron_update}
        }
      }
    }
    if (mem_last)
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < n; j++) mem_last[b * N + e0 + j] = m[b * n + j];
    free(total); free(squares); free(mu); free(kt); free(sh); free(m);
    RESTORE_SUBNORMALS
  }
  if (counts)
    for (int64_t t = 0; t < T; t++) counts[t] += 1;
}
"""

# Both backward loops' first part: a chunk's membranes recomputed step by step into ``mb``, then the reverse
# walk's accumulators zeroed; ``{coefficients}`` declares the step's ``kt`` / ``sh`` (per channel or per element).
_RECOMPUTE = """      for (int64_t t = 0; t < T; t++) {
        {coefficients}
        const float* xt = x + t * step + off;
        const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
        float* mt = mb + t * CHUNK;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) {
          const float xv = xt[j];
          const float cur = {normalise};
          const float mp = mprev[j];
          {forward_step}
          mt[j] = membrane;
        }
      }
      float carry[CHUNK];
      for (int64_t j = 0; j < n; j++) carry[j] = 0.0f;
      float a_beta = 0.0f, a_theta = 0.0f;"""

_BACKWARD = """
void bntt_backward(const float* gs, const float* x, const float* k, const float* shift, const float* mean,
                   const float* rstd, const float* m0, float* dx, float* sum_dy, float* sum_dy_xhat, float* part,
                   const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t step = B * C * L;
  const int64_t chunks = (L + CHUNK - 1) / CHUNK;
  const int64_t sums = 2 * T * C + 2;  /* a thread's sums of dy and dy * (x - mean) per (step, channel), beta, theta */
  const int threads = omp_get_max_threads();
  double* acc = (double*)calloc((size_t)threads * sums, sizeof(double));
  /* rows in memory order (one chunk of a (b, c) row each), so every pass streams */
  #pragma omp parallel
  {
    double* sdy = acc + (size_t)omp_get_thread_num() * sums;
    double* sdyx = sdy + T * C;
    float* mb = (float*)malloc(sizeof(float) * T * CHUNK);
    FLUSH_SUBNORMALS
    #pragma omp for schedule(static)
    for (int64_t row = 0; row < B * C * chunks; row++) {
      const int64_t bc = row / chunks, s0 = (row % chunks) * CHUNK, c = bc % C;
      const int64_t n = L - s0 < CHUNK ? L - s0 : CHUNK;
      const int64_t off = bc * L + s0;
      const float* m0r = m0 ? m0 + off : ZEROS;
{recompute}
      for (int64_t t = T - 1; t >= 0; t--) {
        const float kt = k[t * C + c], sh = shift[t * C + c], mu = mean[t * C + c];
        const float* xt = x + t * step + off;
        const float* gt = gs + t * step + off;
        const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
        float* dt = dx + t * step + off;
        float a_dy = 0.0f, a_dyx = 0.0f;
        #pragma omp simd reduction(+:a_dy, a_dyx, a_beta, a_theta)
        for (int64_t j = 0; j < n; j++) {
          const float xv = xt[j];
          const float cur = {normalise};
          const float mp = mprev[j];
          const float h = {charge};
          const float slope = {slope};
          const float grad_spike = gt[j], delta_m = {delta_m};
          {backward_step}
          dt[j] = delta_h;
          carry[j] = carry_out;
          a_dy += delta_h;
          a_dyx += delta_h * (xv - mu);
          a_beta += beta_term;
          a_theta += theta_term;
        }
        sdy[t * C + c] += a_dy;
        sdyx[t * C + c] += a_dyx;
      }
      sdyx[T * C] += a_beta;
      sdyx[T * C + 1] += a_theta;
    }
    RESTORE_SUBNORMALS
    free(mb);
  }
  float* moments = (float*)malloc(sizeof(float) * 2 * T * C);
  reduce_sums(acc, threads, 1, rstd, (double)(B * L), T * C, sum_dy, sum_dy_xhat, part, moments);
  free(acc);
  /* batch norm's input gradient in place of dy, streaming over the (t, b, c) rows */
  #pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < T * B * C; row++) {
    const int64_t t = row / (B * C), c = row % C, tc = t * C + c;
    const float kt = k[tc], mu = mean[tc], rs = rstd[tc];
    const float mean_dy = moments[tc], mean_dy_xhat = moments[T * C + tc];
    const float* xr = x + row * L;
    float* dr = dx + row * L;
    #pragma omp simd
    for (int64_t s = 0; s < L; s++) dr[s] = {input_grad};
  }
  free(moments);
}
"""


# Layers with little or no spatial extent (L < ROW_MIN, a linear synapse's L = 1): a row is a chunk of one
# sample's C * L values, each element with its own channel's coefficients (expanded per element first) and its
# own per-thread sums (added up over the channel's L positions after).
_FLAT = """
/* (T, C) per-channel values -> (T, C * L): each repeated for the channel's L positions. */
static float* expand(const float* v, int64_t T, int64_t C, int64_t L) {
  float* out = (float*)malloc(sizeof(float) * T * C * L);
  for (int64_t tc = 0; tc < T * C; tc++)
    for (int64_t s = 0; s < L; s++) out[tc * L + s] = v[tc];
  return out;
}

void bntt_forward_flat(const float* x, const float* k_tc, const float* shift_tc, const float* m0, float* spk,
                       float* mem_last, const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N, chunks = (N + CHUNK - 1) / CHUNK;
  float* k = expand(k_tc, T, C, L);
  float* shift = expand(shift_tc, T, C, L);
  #pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * chunks; row++) {
    const int64_t c0 = (row % chunks) * CHUNK, n = N - c0 < CHUNK ? N - c0 : CHUNK;
    const int64_t off = (row / chunks) * N + c0;
    FLUSH_SUBNORMALS
    float mr[CHUNK];
    for (int64_t j = 0; j < n; j++) mr[j] = m0 ? m0[off + j] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
      const float* kt = k + t * N + c0;
      const float* sh = shift + t * N + c0;
      const float* xt = x + t * step + off;
      float* st = spk + t * step + off;
      #pragma omp simd
      for (int64_t j = 0; j < n; j++) {
        const float xv = xt[j];
        const float cur = {normalise};
        {neuron_update}
      }
    }
    if (mem_last)
      for (int64_t j = 0; j < n; j++) mem_last[off + j] = mr[j];
    RESTORE_SUBNORMALS
  }
  free(k);
  free(shift);
}

void bntt_backward_flat(const float* gs, const float* x, const float* k_tc, const float* shift_tc,
                        const float* mean_tc, const float* rstd_tc, const float* m0, float* dx, float* sum_dy,
                        float* sum_dy_xhat, float* part, const float* params, int64_t T, int64_t B, int64_t C,
                        int64_t L) {
  const float beta = fminf(fmaxf(params[0], 0.0f), 1.0f), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N, chunks = (N + CHUNK - 1) / CHUNK;
  const int64_t sums = 2 * T * N + 2;  /* a thread's sums per (step, element), then beta, theta */
  const int threads = omp_get_max_threads();
  double* acc = (double*)calloc((size_t)threads * sums, sizeof(double));
  float* k = expand(k_tc, T, C, L);
  float* shift = expand(shift_tc, T, C, L);
  float* mean = expand(mean_tc, T, C, L);
  #pragma omp parallel
  {
    double* sdy = acc + (size_t)omp_get_thread_num() * sums;
    double* sdyx = sdy + T * N;
    float* mb = (float*)malloc(sizeof(float) * T * CHUNK);
    FLUSH_SUBNORMALS
    #pragma omp for schedule(static)
    for (int64_t row = 0; row < B * chunks; row++) {
      const int64_t c0 = (row % chunks) * CHUNK, n = N - c0 < CHUNK ? N - c0 : CHUNK;
      const int64_t off = (row / chunks) * N + c0;
      const float* m0r = m0 ? m0 + off : ZEROS;
{recompute}
      for (int64_t t = T - 1; t >= 0; t--) {
        const float* kt = k + t * N + c0;
        const float* sh = shift + t * N + c0;
        const float* mu = mean + t * N + c0;
        const float* xt = x + t * step + off;
        const float* gt = gs + t * step + off;
        const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
        float* dt = dx + t * step + off;
        double* sdy_t = sdy + t * N + c0;
        double* sdyx_t = sdyx + t * N + c0;
        #pragma omp simd reduction(+:a_beta, a_theta)
        for (int64_t j = 0; j < n; j++) {
          const float xv = xt[j];
          const float cur = {normalise};
          const float mp = mprev[j];
          const float h = {charge};
          const float slope = {slope};
          const float grad_spike = gt[j], delta_m = {delta_m};
          {backward_step}
          dt[j] = delta_h;
          carry[j] = carry_out;
          sdy_t[j] += delta_h;
          sdyx_t[j] += delta_h * (xv - mu[j]);
          a_beta += beta_term;
          a_theta += theta_term;
        }
      }
      sdyx[T * N] += a_beta;
      sdyx[T * N + 1] += a_theta;
    }
    RESTORE_SUBNORMALS
    free(mb);
  }
  float* moments = (float*)malloc(sizeof(float) * 2 * T * C);
  reduce_sums(acc, threads, L, rstd_tc, (double)(B * L), T * C, sum_dy, sum_dy_xhat, part, moments);
  free(acc);
  float* rstd = expand(rstd_tc, T, C, L);
  float* mean_dy_e = expand(moments, T, C, L);
  float* mean_dy_xhat_e = expand(moments + T * C, T, C, L);
  #pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < T * B; row++) {
    const int64_t t = row / B;
    const float* kt = k + t * N;
    const float* mu = mean + t * N;
    const float* rs = rstd + t * N;
    const float* mean_dy = mean_dy_e + t * N;
    const float* mean_dy_xhat = mean_dy_xhat_e + t * N;
    const float* xr = x + row * N;
    float* dr = dx + row * N;
    #pragma omp simd
    for (int64_t s = 0; s < N; s++) dr[s] = {input_grad};
  }
  free(moments);
  free(rstd);
  free(mean_dy_e);
  free(mean_dy_xhat_e);
  free(k);
  free(shift);
  free(mean);
}
"""

_BACKWARD = _BACKWARD.replace(
    "{recompute}", _RECOMPUTE.replace("{coefficients}", "const float kt = k[t * C + c], sh = shift[t * C + c];")
)
_FLAT = _FLAT.replace(
    "{recompute}",
    _RECOMPUTE.replace(
        "{coefficients}", "const float* kt = k + t * N + c0;\n        const float* sh = shift + t * N + c0;"
    ),
)

_REDUCE = """
/* The threads' sums added up: sum(dy) and sum(dy * xhat) per (step, channel) (each thread's arrays hold `group`
   values a channel, consecutive: 1 for the spatial loops, L for the flat ones), their means over `count`
   values (moments: T*C means of dy, then T*C of dy * xhat), and the beta / theta terms into part[0..1]. */
static void reduce_sums(const double* acc, int threads, int64_t group, const float* rstd, double count,
                        int64_t TC, float* sum_dy, float* sum_dy_xhat, float* part, float* moments) {
  const int64_t values = TC * group, sums = 2 * values + 2;
  for (int64_t i = 0; i < TC; i++) {
    double dy = 0.0, dyx = 0.0;
    for (int th = 0; th < threads; th++)
      for (int64_t s = 0; s < group; s++) {
        dy += acc[th * sums + i * group + s];
        dyx += acc[th * sums + values + i * group + s];
      }
    sum_dy[i] = (float)dy;
    sum_dy_xhat[i] = (float)dyx * rstd[i];
    moments[i] = (float)(dy / count);
    moments[TC + i] = (float)((double)sum_dy_xhat[i] / count);
  }
  double beta = 0.0, theta = 0.0;
  for (int th = 0; th < threads; th++) {
    beta += acc[th * sums + 2 * values];
    theta += acc[th * sums + 2 * values + 1];
  }
  part[0] = (float)beta;
  part[1] = (float)theta;
}
"""


def _assign(names: tuple[str, ...], values) -> str:
    return " ".join(f"const float {name} = {code(value)};" for name, value in zip(names, values))


def source(
    codes: tuple[int, bool, int], surrogate: tuple[int, float, float], training: bool, through_time: bool = True
) -> str:
    """The C source of the forward and backward loops for variant ``codes`` = ``(RESET, DELAYED, SAME)``,
    surrogate ``(SURR, a, b)``, batch norm in training (the statistics' dependence on ``x``) or not, and
    the gradient through time or (``through_time=False``, the online rules) through each step's own input."""
    RESET, DELAYED, SAME = codes
    SURR, a, b = surrogate
    e = Expr
    beta, theta, g = e("beta"), e("theta"), e("g")
    normalise = code(C.normalise(e("xt[j]"), e("kt"), e("sh")))
    forward_step = _assign(("h", "membrane", "spike"), C.forward_step(e("cur"), e("mp"), beta, theta, g, *codes))
    # the forward loops' step of one element: membrane row ``mr``, spike row ``st``
    neuron_update = f"const float mp = mr[j]; {forward_step} st[j] = spike; mr[j] = membrane;"
    r = C.previous_reset(e("mp"), theta, DELAYED, SAME)
    charge = code(C.charge(e("cur"), e("mp"), r, beta, theta, RESET, DELAYED))
    slope = code(C.surrogate_derivative(e("h") - theta, a, b, SURR))
    backward_step = _assign(
        ("delta_h", "carry_out", "beta_term", "theta_term"),
        C.backward_step(e("grad_spike"), e("delta_m"), e("h"), e("mp"), beta, theta, g, e("slope"), *codes),
    )
    input_grad = code(
        C.normalise_input_grad(
            e("dr[s]"), e("xr[s]"), e("kt"), e("mu"), e("rs"), e("mean_dy"), e("mean_dy_xhat"), training
        )
    )

    def fill(template: str, **parts) -> str:
        for name, text in parts.items():
            template = template.replace("{" + name + "}", text)
        return template

    def indexed(expression: str, index: str) -> str:  # the coefficients per element (the flat loops)
        for name in ("kt", "sh", "mu", "rs", "mean_dy_xhat", "mean_dy"):
            expression = re.sub(rf"\b{name}\b(?!\[)", f"{name}[{index}]", expression)
        return expression

    loops = dict(
        normalise=normalise.replace("xt[j]", "xv"),
        forward_step=forward_step,
        neuron_update=neuron_update,
        charge=charge,
        slope=slope,
        backward_step=backward_step,
        input_grad=input_grad,
        delta_m="carry[j]" if through_time else "0.0f",
    )
    flat = {**loops, "normalise": indexed(loops["normalise"], "j"), "input_grad": indexed(input_grad, "s")}
    return (
        _HEADER.format(chunk=CHUNK)
        + _MOMENTS
        + _REDUCE
        + fill(_FORWARD, normalise=normalise, neuron_update=neuron_update)
        + fill(_FORWARD_STATS, normalise=normalise, neuron_update=neuron_update, flat_normalise=flat["normalise"])
        + fill(_BACKWARD, **loops)
        + fill(_FLAT, **flat)
    )


@cache
def library(
    codes: tuple[int, bool, int], surrogate: tuple[int, float, float], training: bool, through_time: bool = True
) -> ctypes.CDLL:
    """The loops of :func:`source` built (once per source; a library built before is loaded)."""
    lib = build(source(codes, surrogate, training, through_time))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.bntt_forward.argtypes = [ptr] * 7 + [i64] * 4
    lib.bntt_forward_stats.argtypes = [ptr, ptr, ctypes.c_double, ctypes.c_float] + [ptr] * 11 + [
        ctypes.c_float, ctypes.c_float, ptr] + [i64] * 4  # fmt: skip
    lib.bntt_forward_stats_flat.argtypes = lib.bntt_forward_stats.argtypes
    lib.bntt_backward.argtypes = [ptr] * 12 + [i64] * 4
    lib.bntt_forward_flat.argtypes = [ptr] * 7 + [i64] * 4
    lib.bntt_backward_flat.argtypes = [ptr] * 12 + [i64] * 4
    return lib


@cache
def _statistics_library() -> ctypes.CDLL:
    lib = build(_HEADER.format(chunk=CHUNK) + _MOMENTS + _STATS)
    lib.bntt_stats.argtypes = lib.bntt_stats_flat.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 4
    return lib


def supports(x_seq: torch.Tensor, p) -> str | None:
    """Why these loops cannot run a block fed ``x_seq`` ``(T, B, C, ...)`` with neuron parameters ``p``, or None."""
    if x_seq.device.type != "cpu" or x_seq.dtype != torch.float32:
        return f"the C loops take float32 CPU input, got {x_seq.dtype} on {x_seq.device.type}"
    if p.beta.numel() != 1 or p.threshold.numel() != 1:
        return "the C loops take a scalar beta and threshold"
    return None


def _layout(x: torch.Tensor) -> tuple[int, int, int, int]:
    T, B, C = x.shape[:3]
    return T, B, C, math.prod(x.shape[3:])


def _pointer(t: torch.Tensor | None) -> int:
    """The tensor's address for the loops; 0 (NULL) for None."""
    return 0 if t is None else t.data_ptr()


def batch_statistics(x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's per-channel mean and biased variance of ``x_seq`` ``(T, B, C, ...)`` (float32 ``(T, C)`` each)."""
    x = x_seq.detach().contiguous()
    T, B, C, L = _layout(x)
    mean, var = torch.empty(T, C, dtype=torch.float32), torch.empty(T, C, dtype=torch.float32)
    lib = _statistics_library()
    (lib.bntt_stats_flat if L < ROW_MIN else lib.bntt_stats)(_pointer(x), _pointer(mean), _pointer(var), T, B, C, L)
    return mean, var


def forward(x, k, shift, mem0, params, codes, surrogate, training, through_time=True, last=True):
    """Spikes ``(T, B, C, ...)`` and (``last``; else None) the last membrane ``(B, C, ...)`` from membrane
    ``mem0`` (float32, contiguous; None: zeros); ``x``, ``k``, ``shift`` contiguous, ``k``, ``shift``:
    ``(T, C)``; ``params`` = ``[beta, theta, g]`` (float32); ``codes``: the variant's ``(RESET, DELAYED,
    SAME)``; ``surrogate``, ``training``, ``through_time``: the library the backward will use (built here,
    so that a build failure shows in the forward)."""
    T, B, C, L = _layout(x)
    spk = torch.empty_like(x)
    mem = torch.empty(x.shape[1:], dtype=torch.float32) if last else None
    lib = library(codes, surrogate, training, through_time)
    pointers = map(_pointer, (x, k, shift, mem0, spk, mem, params))
    (lib.bntt_forward_flat if L < ROW_MIN else lib.bntt_forward)(*pointers, T, B, C, L)
    return spk, mem


def backward(grad_spk, x, k, shift, mean, rstd, mem0, params, codes, surrogate, training: bool, through_time=True):
    """``(dL/dx, sum(dy * xhat) (T, C), sum(dy) (T, C), dL/dbeta (of the clamped beta), dL/dtheta)`` from the
    spikes' gradient (``dy = dL/dcurrent``) for the forward from ``mem0`` (None: zeros); ``dL/dx`` includes
    the statistics' dependence on ``x`` in training. ``surrogate``: ``(SURR, a, b)``; ``through_time=False``:
    each step's gradient through its own input only (no carry from step t + 1)."""
    T, B, C, L = _layout(x)
    grad_spk = grad_spk.contiguous().float()
    grad_x = torch.empty_like(x)
    sum_dy, sum_dy_xhat, part = (
        torch.empty(T, C, dtype=torch.float32),
        torch.empty(T, C, dtype=torch.float32),
        torch.empty(2, dtype=torch.float32),
    )
    lib = library(codes, surrogate, training, through_time)
    pointers = map(_pointer, (grad_spk, x, k, shift, mean, rstd, mem0, grad_x, sum_dy, sum_dy_xhat, part, params))
    (lib.bntt_backward_flat if L < ROW_MIN else lib.bntt_backward)(*pointers, T, B, C, L)
    return grad_x, sum_dy_xhat, sum_dy, part[0], part[1]


class RunningStatistics(NamedTuple):
    """Batch norm's running statistics for :func:`forward_with_statistics` to update in its pass: ``mean`` and
    ``var`` ``(T, C)`` float32, ``counts`` ``(T,)`` int64 (``num_batches_tracked``), all contiguous and written in
    place; ``momentum``; ``count``: the values a channel of a step (the variance is made unbiased with it)."""

    mean: torch.Tensor
    var: torch.Tensor
    counts: torch.Tensor
    momentum: float
    count: int


def forward_with_statistics(x, weight, eps, scale, mem0, params, codes, surrogate, through_time=True, last=True,
                            running: RunningStatistics | None = None):  # fmt: skip
    """Training's forward with its own batch statistics, in one pass over each channel (read once from memory
    for the statistics, the coefficients and the neuron): ``(spikes, last membrane (None unless last), mean,
    var, rstd, k, shift)``, the last five ``(T, C)``, each equal to :func:`batch_statistics`, then
    :func:`~.bntt_scan.loop_arguments`' coefficients, then :func:`forward` (the same arithmetic, in the same
    order). ``weight``: the gammas ``(T, C)`` (float32, contiguous) or None (``affine=False``); ``eps``,
    ``scale``: batch norm's and the block's input scale; ``running``: running statistics updated in the same
    pass as batch norm updates them (bit for bit :meth:`~bntt_snntorch.BatchNormTT.record_statistics`), or
    None; the rest as :func:`forward`'s."""
    T, B, C, L = _layout(x)
    if weight is not None and (tuple(weight.shape) != (T, C) or weight.dtype != torch.float32):
        raise ValueError(
            f"expected float32 gammas of shape (T, C) = {(T, C)}, got {weight.dtype} {tuple(weight.shape)}"
        )
    spk = torch.empty_like(x)
    mem = torch.empty(x.shape[1:], dtype=torch.float32) if last else None
    mean, var, rstd, k, shift = (torch.empty(T, C, dtype=torch.float32) for _ in range(5))
    lib = library(codes, surrogate, True, through_time)
    pointers = map(_pointer, (mem0, spk, mem, mean, var, rstd, k, shift))
    tables, factors = (None, None, None), (0.0, 1.0)
    if running is not None:
        tables, factors = running[:3], (running.momentum, running.count / (running.count - 1))
    run = lib.bntt_forward_stats_flat if L < ROW_MIN else lib.bntt_forward_stats
    run(_pointer(x), _pointer(weight), float(eps), float(scale), *pointers, *map(_pointer, tables), *factors,
        _pointer(params), T, B, C, L)  # fmt: skip
    return spk, mem, mean, var, rstd, k, shift
