// torch's fused CPU Adam/AdamW step for one float32 tensor (aten/src/ATen/native/cpu/FusedAdamKernel.cpp, torch
// 2.13: adam_math for float and adam_fused_step_impl's cache-line chunks), optionally with a 0/1 byte mask applied to
// the gradient in the same pass; the same bits as torch's step (of the masked gradient), compiled for the same CPU
// capability. Shared by masked_adam.cpp (masked training) and sparse_linear.cpp (the step fused into the sparse
// backward pass). Multiplying by a 1.0f or 0.0f mask is exact (done as a select, see below).
#pragma once
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>

namespace ticketlab_adam {

using Vec = at::vec::Vectorized<float>;

inline Vec load_mask(const uint8_t* k) {
#if defined(CPU_CAPABILITY_AVX512)
  return Vec(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k)))));
#else
  float mask[Vec::size()];
  for (int j = 0; j < Vec::size(); j++) mask[j] = static_cast<float>(k[j]);
  return Vec::loadu(mask);
#endif
}

inline void adam_math(float* param_ptr, const float* grad_ptr, float* exp_avg_ptr, float* exp_avg_sq_ptr,
                      const uint8_t* mask_ptr, double lr, double bias_correction1, double exp_avg_grad_coefficient,
                      double exp_avg_sq_grad_coefficient, double bias_correction2_sqrt, double eps,
                      double weight_decay, double beta2, bool adamw, int64_t size) {
  // Built with -ffp-contract=off: every fused multiply-add below is spelt out where torch's build contracts one.
  double step_size = lr / bias_correction1;
  int64_t d = 0;
  for (; d < size - (size % Vec::size()); d += Vec::size()) {
    Vec param_vec = Vec::loadu(param_ptr + d);
    // grad * mask as a select: a pruned entry's gradient becomes copysign(0, grad), exactly what grad * 0.0f gives
    Vec grad = Vec::loadu(grad_ptr + d);
    Vec grad_vec = mask_ptr ? Vec::blendv(grad & Vec(-0.f), grad, load_mask(mask_ptr + d) != Vec(0.f)) : grad;
    if (weight_decay != 0.f) {
      if (!adamw) {
        grad_vec = at::vec::fmadd(param_vec, Vec(float(weight_decay)), grad_vec);
      } else {
        param_vec = param_vec * Vec(float(1 - lr * weight_decay));
      }
    }
    Vec exp_avg_vec = Vec::loadu(exp_avg_ptr + d);
    // exp_avg.lerp_(grad, 1 - beta1)
    const Vec lerp_weight = Vec(float(exp_avg_grad_coefficient));
    auto mask = lerp_weight.abs() < Vec(0.5);
    auto coeff = Vec::blendv(lerp_weight - Vec(1), lerp_weight, mask);
    auto base = Vec::blendv(grad_vec, exp_avg_vec, mask);
    exp_avg_vec = at::vec::fmadd(coeff, grad_vec - exp_avg_vec, base);
    Vec exp_avg_sq_vec = at::vec::fmadd(Vec(float(exp_avg_sq_grad_coefficient)) * grad_vec, grad_vec,
                                        Vec::loadu(exp_avg_sq_ptr + d) * Vec(float(beta2)));
    exp_avg_vec.store(exp_avg_ptr + d);
    exp_avg_sq_vec.store(exp_avg_sq_ptr + d);
    Vec denom_vec = (exp_avg_sq_vec.sqrt() / Vec(float(bias_correction2_sqrt))) + Vec(float(eps));
    param_vec = param_vec + Vec(float(-step_size)) * exp_avg_vec / denom_vec;
    param_vec.store(param_ptr + d);
  }
  // torch's scalar loop for the last (size mod 16) entries is auto-vectorised by its compiler for the first 8 of
  // them (an 8-lane epilogue) where the second moment's multiply-add contracts as in the vector loop above; the rest
  // run scalar code that contracts it the other way. Both are reproduced.
  const int64_t epilogue_end = size - d >= 8 ? d + 8 : d;
  for (; d < size; d++) {
    float grad_val = !mask_ptr || mask_ptr[d] ? grad_ptr[d] : std::copysign(0.0f, grad_ptr[d]);
    if (weight_decay != 0.f) {
      if (!adamw) {
        grad_val = std::fma(param_ptr[d], float(weight_decay), grad_val);
      } else {
        param_ptr[d] = param_ptr[d] * float(1 - lr * weight_decay);
      }
    }
    if (std::abs(float(exp_avg_grad_coefficient)) < float(0.5)) {
      exp_avg_ptr[d] = std::fma(float(exp_avg_grad_coefficient), grad_val - exp_avg_ptr[d], exp_avg_ptr[d]);
    } else {
      exp_avg_ptr[d] = std::fma(-(grad_val - exp_avg_ptr[d]), float(1) - float(exp_avg_grad_coefficient), grad_val);
    }
    const float scaled = float(exp_avg_sq_grad_coefficient) * grad_val;
    exp_avg_sq_ptr[d] = d < epilogue_end ? std::fma(scaled, grad_val, exp_avg_sq_ptr[d] * float(beta2))
                                         : std::fma(exp_avg_sq_ptr[d], float(beta2), scaled * grad_val);
    float denom = std::sqrt(exp_avg_sq_ptr[d]) / float(bias_correction2_sqrt) + float(eps);
    param_ptr[d] = param_ptr[d] - float(step_size) * exp_avg_ptr[d] / denom;
  }
}

// The step of param (n entries) from its gradient; mask: nullptr, or n bytes (0: the gradient counts as zero).
inline void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, const uint8_t* mask,
                      int64_t n, double step, double lr, double beta1, double beta2, double weight_decay, double eps,
                      bool adamw) {
  // as torch: in double, to align with the unfused Adam
  double bias_correction1 = 1 - std::pow(beta1, step);
  double bias_correction2 = 1 - std::pow(beta2, step);
  double bias_correction2_sqrt = std::sqrt(bias_correction2);
  constexpr int64_t unit = 64 / sizeof(float);  // cache-line aligned chunks, as torch splits the work
  at::parallel_for(0, (n + unit - 1) / unit, 0, [&](int64_t begin, int64_t end) {
    begin *= unit;
    end = std::min(end * unit, n);
    adam_math(param + begin, grad + begin, exp_avg + begin, exp_avg_sq + begin, mask ? mask + begin : nullptr, lr,
              bias_correction1, 1 - beta1, 1 - beta2, bias_correction2_sqrt, eps, weight_decay, beta2, adamw,
              end - begin);
  });
}

}  // namespace ticketlab_adam
