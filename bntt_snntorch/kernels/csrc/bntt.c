/* The synapse -> BNTT -> leaky block's loops on the CPU (bntt_snntorch/kernels/c_bntt.py binds them).

   Every formula is the definition's (bntt_snntorch/definition.py), written out as C functions in the header
   "definition.h" that kernels/c_definition.py generates for one variant of the neuron, surrogate and mode
   (THROUGH_TIME there: whether the backward carries the gradient from step t + 1 to step t). What is written
   here is only the loops around them: which values a thread reads, in which order it sums them, and what it
   keeps. A sequence is (T, B, C, L), L the spatial size. Each kernel returns 0, or BNTT_NO_MEMORY where an
   allocation failed. */
#include "common.h"
#include "definition.h"

/* -- statistics ------------------------------------------------------------------------------------------ */

/* Step t's batch mean and biased variance of channel c, xt the step (B, C, L): each row's sum in float, the
   rows' in double, then the squared deviations from the rounded mean the same way (two passes). */
static void channel_moments(const float* xt, int64_t B, int64_t C, int64_t L, int64_t c, float* mean, float* var) {
  const double count = (double)(B * L);
  double total = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* row = xt + (b * C + c) * L;
    float acc = 0.0f;
    #pragma omp simd reduction(+:acc)
    for (int64_t s = 0; s < L; s++) acc += row[s];
    total += acc;
  }
  const float mu = batch_mean(total, count);
  double squares = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* row = xt + (b * C + c) * L;
    float acc = 0.0f;
    #pragma omp simd reduction(+:acc)
    for (int64_t s = 0; s < L; s++) acc += squared_deviation(row[s], mu);
    squares += acc;
  }
  *mean = mu;
  *var = batch_variance(squares, count);
}

/* The same for little or no spatial extent, vectorised over a block of n = cn * L values (cn channels) that lie
   contiguous in each of the B samples of xs (a sample every N values): per-element sums over the batch in
   double, then per channel; mean / var get the block's cn values, mu each element's channel mean (total,
   squares: n doubles of scratch). */
static void block_moments(const float* xs, int64_t B, int64_t N, int64_t n, int64_t L, double* total,
                          double* squares, float* mu, float* mean, float* var) {
  const double count = (double)(B * L);
  for (int64_t j = 0; j < n; j++) total[j] = squares[j] = 0.0;
  for (int64_t b = 0; b < B; b++)
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) total[j] += xs[b * N + j];
  for (int64_t c = 0; c < n / L; c++) {
    double sum = 0.0;
    for (int64_t s = 0; s < L; s++) sum += total[c * L + s];
    mean[c] = batch_mean(sum, count);
    for (int64_t s = 0; s < L; s++) mu[c * L + s] = mean[c];
  }
  for (int64_t b = 0; b < B; b++)
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) squares[j] += squared_deviation(xs[b * N + j], mu[j]);
  for (int64_t c = 0; c < n / L; c++) {
    double sum = 0.0;
    for (int64_t s = 0; s < L; s++) sum += squares[c * L + s];
    var[c] = batch_variance(sum, count);
  }
}

int bntt_stats(const float* x, float* mean, float* var, int64_t T, int64_t B, int64_t C, int64_t L) {
  #pragma omp parallel for collapse(2) schedule(static)
  for (int64_t t = 0; t < T; t++)
    for (int64_t c = 0; c < C; c++) channel_moments(x + t * B * C * L, B, C, L, c, mean + t * C + c, var + t * C + c);
  return 0;
}

/* The same for little or no spatial extent (L small): a step's values as one block. */
int bntt_stats_flat(const float* x, float* mean, float* var, int64_t T, int64_t B, int64_t C, int64_t L) {
  const int64_t N = C * L;
  int failed = 0;
  #pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; t++) {
    double* total = checked_malloc(sizeof(double) * N, &failed);
    double* squares = checked_malloc(sizeof(double) * N, &failed);
    float* mu = checked_malloc(sizeof(float) * N, &failed);
    if (total && squares && mu) block_moments(x + t * B * N, B, N, N, L, total, squares, mu, mean + t * C, var + t * C);
    free(total);
    free(squares);
    free(mu);
  }
  return failed ? BNTT_NO_MEMORY : 0;
}

/* -- coefficients and running statistics ----------------------------------------------------------------- */

/* Step-channel tc's normaliser and coefficients from its batch variance and mean (w NULL: no gamma). */
static void step_coefficients(float mean, float var, const float* w, int64_t tc, double eps, float scale,
                              float* rstd, float* k, float* shift) {
  rstd[tc] = inverse_std(var, eps);
  coefficients(mean, rstd[tc], w ? w[tc] : 1.0f, scale, k + tc, shift + tc);
}

/* Step-channel tc's running statistics moved toward its batch mean and variance (rm NULL: nothing to update). */
static void update_running(float* rm, float* rv, int64_t tc, float mean, float var, float momentum, float unbias) {
  if (!rm) return;
  rm[tc] = running_update(rm[tc], mean, momentum);
  rv[tc] = running_update(rv[tc], unbiased_variance(var, unbias), momentum);
}

/* (T, C) per-channel values -> (T, C * L): each repeated for the channel's L positions (NULL if out of memory). */
static float* expand(const float* v, int64_t T, int64_t C, int64_t L, int* failed) {
  float* out = checked_malloc(sizeof(float) * T * C * L, failed);
  if (out)
    for (int64_t tc = 0; tc < T * C; tc++)
      for (int64_t s = 0; s < L; s++) out[tc * L + s] = v[tc];
  return out;
}

/* -- forward ----------------------------------------------------------------------------------------------- */

/* One element's step of the forward loops: the current cur into membrane *mr, the spike into *st. */
BNTT_INLINE void neuron_update(float cur, float beta, float theta, float g, float* mr, float* st) {
  float h, membrane, spike;
  forward_step(cur, *mr, beta, theta, g, &h, &membrane, &spike);
  *st = spike;
  *mr = membrane;
}

/* Rows are chunks of a channel's spatial positions, taken in memory order so that every pass streams. */
int bntt_forward(const float* x, const float* k, const float* shift, const float* m0, float* spk, float* mem_last,
                 const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
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
      for (int64_t j = 0; j < n; j++) neuron_update(normalise(xt[j], kt, sh), beta, theta, g, mr + j, st + j);
    }
    if (mem_last)
      for (int64_t j = 0; j < n; j++) mem_last[off + j] = mr[j];
    RESTORE_SUBNORMALS
  }
  return 0;
}

/* Little or no spatial extent: a row is a chunk of one sample's C * L values, each element with its own
   channel's coefficients (expanded per element first). */
int bntt_forward_flat(const float* x, const float* k, const float* shift, const float* m0, float* spk,
                      float* mem_last, const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N, chunks = (N + CHUNK - 1) / CHUNK;
  int failed = 0;
  float* k_e = expand(k, T, C, L, &failed);
  float* shift_e = expand(shift, T, C, L, &failed);
  if (!failed) {
    #pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < B * chunks; row++) {
      const int64_t c0 = (row % chunks) * CHUNK, n = N - c0 < CHUNK ? N - c0 : CHUNK;
      const int64_t off = (row / chunks) * N + c0;
      FLUSH_SUBNORMALS
      float mr[CHUNK];
      for (int64_t j = 0; j < n; j++) mr[j] = m0 ? m0[off + j] : 0.0f;
      for (int64_t t = 0; t < T; t++) {
        const float* kt = k_e + t * N + c0;
        const float* sh = shift_e + t * N + c0;
        const float* xt = x + t * step + off;
        float* st = spk + t * step + off;
        #pragma omp simd
        for (int64_t j = 0; j < n; j++) neuron_update(normalise(xt[j], kt[j], sh[j]), beta, theta, g, mr + j, st + j);
      }
      if (mem_last)
        for (int64_t j = 0; j < n; j++) mem_last[off + j] = mr[j];
      RESTORE_SUBNORMALS
    }
  }
  free(k_e);
  free(shift_e);
  return failed ? BNTT_NO_MEMORY : 0;
}

/* Training's forward with its own statistics, a channel at a time: each step's batch mean and biased variance of
   the channel (channel_moments, as bntt_stats), its coefficients, then the step's neuron update of the channel's
   B rows; the channel's values are read from the cache for all three. w: (T, C) gammas or NULL (affine=False).
   rm, rv, counts: the running mean and variance (T, C) and num_batches_tracked (T,) to update, or NULL. */
int bntt_forward_stats(const float* x, const float* w, double eps, float scale, const float* m0, float* spk,
                       float* mem_last, float* mean, float* var, float* rstd, float* k, float* shift, float* rm,
                       float* rv, int64_t* counts, float momentum, float unbias, const float* params, int64_t T,
                       int64_t B, int64_t C, int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
  const int64_t step = B * C * L;
  int failed = 0;
  #pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    float* m = checked_malloc(sizeof(float) * B * L, &failed);
    if (!m) continue;
    FLUSH_SUBNORMALS
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < L; s++) m[b * L + s] = m0 ? m0[(b * C + c) * L + s] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
      const int64_t tc = t * C + c;
      channel_moments(x + t * step, B, C, L, c, mean + tc, var + tc);
      step_coefficients(mean[tc], var[tc], w, tc, eps, scale, rstd, k, shift);
      update_running(rm, rv, tc, mean[tc], var[tc], momentum, unbias);
      const float kt = k[tc], sh = shift[tc];
      for (int64_t b = 0; b < B; b++) {
        const float* xt = x + t * step + (b * C + c) * L;
        float* st = spk + t * step + (b * C + c) * L;
        float* mr = m + b * L;
        #pragma omp simd
        for (int64_t j = 0; j < L; j++) neuron_update(normalise(xt[j], kt, sh), beta, theta, g, mr + j, st + j);
      }
    }
    if (mem_last)
      for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < L; s++) mem_last[(b * C + c) * L + s] = m[b * L + s];
    free(m);
    RESTORE_SUBNORMALS
  }
  if (failed) return BNTT_NO_MEMORY;
  if (counts)
    for (int64_t t = 0; t < T; t++) counts[t] += 1;
  return 0;
}

/* The same for little or no spatial extent: a block of channels at a time (their C * L values contiguous in each
   sample, each element with its own channel's coefficients), sums per element over the batch (as
   bntt_stats_flat), then per channel. */
int bntt_forward_stats_flat(const float* x, const float* w, double eps, float scale, const float* m0, float* spk,
                            float* mem_last, float* mean, float* var, float* rstd, float* k, float* shift, float* rm,
                            float* rv, int64_t* counts, float momentum, float unbias, const float* params, int64_t T,
                            int64_t B, int64_t C, int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N;
  const int64_t threads = omp_get_max_threads();
  int64_t width = (CHUNK + L - 1) / L; /* channels a block: about CHUNK values, at least one block a thread */
  if (width > (C + threads - 1) / threads) width = (C + threads - 1) / threads;
  const int64_t blocks = (C + width - 1) / width;
  int failed = 0;
  #pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; blk++) {
    const int64_t c0 = blk * width, cn = C - c0 < width ? C - c0 : width, n = cn * L, e0 = c0 * L;
    double* total = checked_malloc(sizeof(double) * n, &failed);
    double* squares = checked_malloc(sizeof(double) * n, &failed);
    float* mu = checked_malloc(sizeof(float) * n, &failed);
    float* kt = checked_malloc(sizeof(float) * n, &failed);
    float* sh = checked_malloc(sizeof(float) * n, &failed);
    float* m = checked_malloc(sizeof(float) * B * n, &failed);
    if (total && squares && mu && kt && sh && m) {
      FLUSH_SUBNORMALS
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < n; j++) m[b * n + j] = m0 ? m0[b * N + e0 + j] : 0.0f;
      for (int64_t t = 0; t < T; t++) {
        const float* xs = x + t * step + e0;
        block_moments(xs, B, N, n, L, total, squares, mu, mean + t * C + c0, var + t * C + c0);
        for (int64_t c = 0; c < cn; c++) {
          const int64_t tc = t * C + c0 + c;
          step_coefficients(mean[tc], var[tc], w, tc, eps, scale, rstd, k, shift);
          update_running(rm, rv, tc, mean[tc], var[tc], momentum, unbias);
          for (int64_t s = 0; s < L; s++) {
            kt[c * L + s] = k[tc];
            sh[c * L + s] = shift[tc];
          }
        }
        for (int64_t b = 0; b < B; b++) {
          const float* xt = xs + b * N;
          float* st = spk + t * step + b * N + e0;
          float* mr = m + b * n;
          #pragma omp simd
          for (int64_t j = 0; j < n; j++) neuron_update(normalise(xt[j], kt[j], sh[j]), beta, theta, g, mr + j, st + j);
        }
      }
      if (mem_last)
        for (int64_t b = 0; b < B; b++)
          for (int64_t j = 0; j < n; j++) mem_last[b * N + e0 + j] = m[b * n + j];
      RESTORE_SUBNORMALS
    }
    free(total);
    free(squares);
    free(mu);
    free(kt);
    free(sh);
    free(m);
  }
  if (failed) return BNTT_NO_MEMORY;
  if (counts)
    for (int64_t t = 0; t < T; t++) counts[t] += 1;
  return 0;
}

/* -- backward ---------------------------------------------------------------------------------------------- */

/* A chunk's membranes recomputed step by step into mb (T * CHUNK floats), from the chunk's initial membranes m0r;
   the step's coefficients per channel (k_step 0: k[t * C + c]) or per element (k_step 1: k[t * N + c0 + j]). */
BNTT_INLINE void recompute_membranes(const float* x, const float* k, const float* shift, const float* m0r, float* mb,
                                float beta, float theta, float g, int64_t T, int64_t step, int64_t off, int64_t n,
                                int64_t coefficient_at, int64_t coefficient_stride, int64_t element_stride) {
  for (int64_t t = 0; t < T; t++) {
    const float* kt = k + t * coefficient_stride + coefficient_at;
    const float* sh = shift + t * coefficient_stride + coefficient_at;
    const float* xt = x + t * step + off;
    const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
    float* mt = mb + t * CHUNK;
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) {
      float h, spike;
      forward_step(normalise(xt[j], kt[j * element_stride], sh[j * element_stride]), mprev[j], beta, theta, g, &h,
                   mt + j, &spike);
    }
  }
}

/* One element's reverse step: returns dL/dcurrent; the carry to step t - 1 to *carry (in: the carry from
   step t + 1); the leak's and threshold's terms returned through beta_term / theta_term. */
BNTT_INLINE float reverse_step(float cur, float mp, float grad_spike, float beta, float theta, float g,
                                 float* carry, float* beta_term, float* theta_term) {
  float h, membrane, spike, delta_h, carry_out;
  forward_step(cur, mp, beta, theta, g, &h, &membrane, &spike);
  const float delta_m = THROUGH_TIME ? *carry : 0.0f;
  backward_step(grad_spike, delta_m, h, mp, beta, theta, g, surrogate_derivative(h - theta), &delta_h, &carry_out,
                beta_term, theta_term);
  *carry = carry_out;
  return delta_h;
}

/* The threads' sums added up: sum(dy) and sum(dy * (x - mean)) per (step, channel) (each thread's arrays hold
   `group` values a channel, consecutive: 1 for the spatial loops, L for the flat ones), their moments over `count`
   values (moments: T*C means of dy, then T*C of dy * xhat), and the beta / theta terms into part[0..1]. */
static void reduce_sums(const double* acc, int threads, int64_t group, const float* rstd, double count, int64_t TC,
                        float* sum_dy, float* sum_dy_xhat, float* part, float* moments) {
  const int64_t values = TC * group, sums = 2 * values + 2;
  for (int64_t i = 0; i < TC; i++) {
    double dy = 0.0, dyx = 0.0;
    for (int th = 0; th < threads; th++)
      for (int64_t s = 0; s < group; s++) {
        dy += acc[th * sums + i * group + s];
        dyx += acc[th * sums + values + i * group + s];
      }
    sum_dy[i] = (float)dy;
    gradient_moments(dy, dyx, rstd[i], count, sum_dy_xhat + i, moments + i, moments + TC + i);
  }
  double beta = 0.0, theta = 0.0;
  for (int th = 0; th < threads; th++) {
    beta += acc[th * sums + 2 * values];
    theta += acc[th * sums + 2 * values + 1];
  }
  part[0] = (float)beta;
  part[1] = (float)theta;
}

/* Recomputes each chunk's membranes, walks the steps back writing dL/dcurrent into dx and adding its
   per-(step, channel) sums, then turns it into batch norm's input gradient in place. */
int bntt_backward(const float* gs, const float* x, const float* k, const float* shift, const float* mean,
                  const float* rstd, const float* m0, float* dx, float* sum_dy, float* sum_dy_xhat, float* part,
                  const float* params, int64_t T, int64_t B, int64_t C, int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
  const int64_t step = B * C * L;
  const int64_t chunks = (L + CHUNK - 1) / CHUNK;
  const int64_t sums = 2 * T * C + 2; /* a thread's sums of dy and dy * (x - mean) per (step, channel), beta, theta */
  const int threads = omp_get_max_threads();
  int failed = 0;
  double* acc = checked_calloc((size_t)threads * sums, sizeof(double), &failed);
  float* moments = checked_malloc(sizeof(float) * 2 * T * C, &failed);
  if (failed) {
    free(acc);
    free(moments);
    return BNTT_NO_MEMORY;
  }
  /* rows in memory order (one chunk of a (b, c) row each), so every pass streams */
  #pragma omp parallel
  {
    double* sdy = acc + (size_t)omp_get_thread_num() * sums;
    double* sdyx = sdy + T * C;
    float* mb = checked_malloc(sizeof(float) * T * CHUNK, &failed);
    FLUSH_SUBNORMALS
    #pragma omp for schedule(static)
    for (int64_t row = 0; row < B * C * chunks; row++) {
      if (!mb) continue;
      const int64_t bc = row / chunks, s0 = (row % chunks) * CHUNK, c = bc % C;
      const int64_t n = L - s0 < CHUNK ? L - s0 : CHUNK;
      const int64_t off = bc * L + s0;
      const float* m0r = m0 ? m0 + off : ZEROS;
      recompute_membranes(x, k, shift, m0r, mb, beta, theta, g, T, step, off, n, c, C, 0);
      float carry[CHUNK];
      for (int64_t j = 0; j < n; j++) carry[j] = 0.0f;
      float a_beta = 0.0f, a_theta = 0.0f;
      for (int64_t t = T - 1; t >= 0; t--) {
        const float kt = k[t * C + c], sh = shift[t * C + c], mu = mean[t * C + c];
        const float* xt = x + t * step + off;
        const float* gt = gs + t * step + off;
        const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
        float* dt = dx + t * step + off;
        float a_dy = 0.0f, a_dyx = 0.0f;
        #pragma omp simd reduction(+:a_dy, a_dyx, a_beta, a_theta)
        for (int64_t j = 0; j < n; j++) {
          float beta_term, theta_term;
          const float delta_h = reverse_step(normalise(xt[j], kt, sh), mprev[j], gt[j], beta, theta, g, carry + j,
                                             &beta_term, &theta_term);
          dt[j] = delta_h;
          a_dy += delta_h;
          a_dyx += centred_gradient(delta_h, xt[j], mu);
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
  if (!failed) {
    reduce_sums(acc, threads, 1, rstd, (double)(B * L), T * C, sum_dy, sum_dy_xhat, part, moments);
    /* batch norm's input gradient in place of dy, streaming over the (t, b, c) rows */
    #pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < T * B * C; row++) {
      const int64_t t = row / (B * C), c = row % C, tc = t * C + c;
      const float kt = k[tc], mu = mean[tc], rs = rstd[tc];
      const float mean_dy = moments[tc], mean_dy_xhat = moments[T * C + tc];
      const float* xr = x + row * L;
      float* dr = dx + row * L;
      #pragma omp simd
      for (int64_t s = 0; s < L; s++) dr[s] = normalise_input_grad(dr[s], xr[s], kt, mu, rs, mean_dy, mean_dy_xhat);
    }
  }
  free(acc);
  free(moments);
  return failed ? BNTT_NO_MEMORY : 0;
}

/* Little or no spatial extent: a row is a chunk of one sample's C * L values, each element with its own channel's
   coefficients (expanded per element first) and its own per-thread sums (added up over the channel's L positions
   after). */
int bntt_backward_flat(const float* gs, const float* x, const float* k, const float* shift, const float* mean,
                       const float* rstd, const float* m0, float* dx, float* sum_dy,
                       float* sum_dy_xhat, float* part, const float* params, int64_t T, int64_t B, int64_t C,
                       int64_t L) {
  const float beta = clamp_leak(params[0]), theta = params[1], g = params[2];
  const int64_t N = C * L, step = B * N, chunks = (N + CHUNK - 1) / CHUNK;
  const int64_t sums = 2 * T * N + 2; /* a thread's sums per (step, element), then beta, theta */
  const int threads = omp_get_max_threads();
  int failed = 0;
  double* acc = checked_calloc((size_t)threads * sums, sizeof(double), &failed);
  float* moments = checked_malloc(sizeof(float) * 2 * T * C, &failed);
  float* k_e = expand(k, T, C, L, &failed);
  float* shift_e = expand(shift, T, C, L, &failed);
  float* mean_e = expand(mean, T, C, L, &failed);
  if (!failed) {
    #pragma omp parallel
    {
      double* sdy = acc + (size_t)omp_get_thread_num() * sums;
      double* sdyx = sdy + T * N;
      float* mb = checked_malloc(sizeof(float) * T * CHUNK, &failed);
      FLUSH_SUBNORMALS
      #pragma omp for schedule(static)
      for (int64_t row = 0; row < B * chunks; row++) {
        if (!mb) continue;
        const int64_t c0 = (row % chunks) * CHUNK, n = N - c0 < CHUNK ? N - c0 : CHUNK;
        const int64_t off = (row / chunks) * N + c0;
        const float* m0r = m0 ? m0 + off : ZEROS;
        recompute_membranes(x, k_e, shift_e, m0r, mb, beta, theta, g, T, step, off, n, c0, N, 1);
        float carry[CHUNK];
        for (int64_t j = 0; j < n; j++) carry[j] = 0.0f;
        float a_beta = 0.0f, a_theta = 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
          const float* kt = k_e + t * N + c0;
          const float* sh = shift_e + t * N + c0;
          const float* mu = mean_e + t * N + c0;
          const float* xt = x + t * step + off;
          const float* gt = gs + t * step + off;
          const float* mprev = t > 0 ? mb + (t - 1) * CHUNK : m0r;
          float* dt = dx + t * step + off;
          double* sdy_t = sdy + t * N + c0;
          double* sdyx_t = sdyx + t * N + c0;
          #pragma omp simd reduction(+:a_beta, a_theta)
          for (int64_t j = 0; j < n; j++) {
            float beta_term, theta_term;
            const float delta_h = reverse_step(normalise(xt[j], kt[j], sh[j]), mprev[j], gt[j], beta, theta, g,
                                               carry + j, &beta_term, &theta_term);
            dt[j] = delta_h;
            sdy_t[j] += delta_h;
            sdyx_t[j] += centred_gradient(delta_h, xt[j], mu[j]);
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
  }
  float* rstd_e = NULL;
  float* mean_dy_e = NULL;
  float* mean_dy_xhat_e = NULL;
  if (!failed) {
    reduce_sums(acc, threads, L, rstd, (double)(B * L), T * C, sum_dy, sum_dy_xhat, part, moments);
    rstd_e = expand(rstd, T, C, L, &failed);
    mean_dy_e = expand(moments, T, C, L, &failed);
    mean_dy_xhat_e = expand(moments + T * C, T, C, L, &failed);
  }
  if (!failed) {
    #pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < T * B; row++) {
      const int64_t t = row / B;
      const float* kt = k_e + t * N;
      const float* mu = mean_e + t * N;
      const float* rs = rstd_e + t * N;
      const float* mean_dy = mean_dy_e + t * N;
      const float* mean_dy_xhat = mean_dy_xhat_e + t * N;
      const float* xr = x + row * N;
      float* dr = dx + row * N;
      #pragma omp simd
      for (int64_t s = 0; s < N; s++)
        dr[s] = normalise_input_grad(dr[s], xr[s], kt[s], mu[s], rs[s], mean_dy[s], mean_dy_xhat[s]);
    }
  }
  free(acc);
  free(moments);
  free(k_e);
  free(shift_e);
  free(mean_e);
  free(rstd_e);
  free(mean_dy_e);
  free(mean_dy_xhat_e);
  return failed ? BNTT_NO_MEMORY : 0;
}
