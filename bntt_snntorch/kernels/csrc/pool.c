/* 2x2 average pooling, stride 2, of float32 (P, H, W) planes with H and W even, as torch's CPU kernel computes
   it (bntt_snntorch/kernels/c_pool.py binds these): a window summed from zero in row order and divided by 4;
   backward, 0 + grad / 4 for each of the window's four inputs. One loop over all row pairs of the batch. */
#include <stdint.h>

/* (P, H, W) -> (P, H / 2, W / 2): a row pair of the input gives a row of the output. */
int avg_pool_2x2(const float* x, float* y, int64_t P, int64_t H, int64_t W) {
  const int64_t w = W / 2, pairs = P * (H / 2);
  #pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < pairs; m++) {
    const float* r0 = x + m * 2 * W;
    const float* r1 = r0 + W;
    float* out = y + m * w;
    #pragma omp simd
    for (int64_t j = 0; j < w; j++) {
      float sum = 0.0f;
      sum += r0[2 * j];
      sum += r0[2 * j + 1];
      sum += r1[2 * j];
      sum += r1[2 * j + 1];
      out[j] = sum / 4.0f;
    }
  }
  return 0;
}

/* The input's gradient (P, H, W) from the output's (P, H / 2, W / 2). */
int avg_pool_2x2_backward(const float* g, float* dx, int64_t P, int64_t H, int64_t W) {
  const int64_t w = W / 2, pairs = P * (H / 2);
  #pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < pairs; m++) {
    float* r0 = dx + m * 2 * W;
    float* r1 = r0 + W;
    const float* grad = g + m * w;
    #pragma omp simd
    for (int64_t j = 0; j < w; j++) {
      const float share = 0.0f + grad[j] / 4.0f;
      r0[2 * j] = share;
      r0[2 * j + 1] = share;
      r1[2 * j] = share;
      r1[2 * j + 1] = share;
    }
  }
  return 0;
}
