// Horizontal sums of float vectors, shared by the sparse kernels (sparse_linear.cpp, sparse_conv.cpp): the weight
// gradients reduce one vector of lane-wise partial sums per kept entry.
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace ticketlab_sums {

using Vec = at::vec::Vectorized<float>;

inline float sum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v);
}

// the sums of four vectors' entries, into out[0..3]: one horizontal-add tree instead of four reductions
inline void reduce4(const Vec& a, const Vec& b, const Vec& c, const Vec& d, float* out) {
#if defined(CPU_CAPABILITY_AVX512)
  const auto to128 = [](__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  };
  _mm_storeu_ps(out, _mm_hadd_ps(_mm_hadd_ps(to128(a), to128(b)), _mm_hadd_ps(to128(c), to128(d))));
#else
  out[0] = sum(a), out[1] = sum(b), out[2] = sum(c), out[3] = sum(d);
#endif
}

}  // namespace ticketlab_sums
