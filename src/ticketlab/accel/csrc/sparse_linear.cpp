// A Linear layer of K stacked copies whose weights are stored as their kept entries only (CSR over the K*O rows of
// all copies: rowptr (K*O+1, int64), col (nnz, int32), values (nnz, float32)), with the batch as the contiguous,
// vectorised inner dimension: activations are feature-major, x^T (K, F, B) -> y^T (K, O, B).
// Why hand-written: torch's sparse CSR/BSR kernels have no batched (K copies) form, no backward that yields the
// gradient of the kept values only, and were slower than dense at these sizes (docs/speed.md); numba versions of the
// same loops were slower than MKL's dense bmm. Every output element is computed by one thread in a fixed order, so the
// numbers do not depend on the thread count or on which other copies are in the batch.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>

#include "adam_math.h"
#include "vec_sums.h"

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t V = Vec::size();
constexpr int64_t NB = 4;  // vectors of the batch held in registers at once
constexpr int64_t GRAIN = 16;  // rows per task

// A CSR structure over the rows of all copies: row r (of copy r / rows_per_copy) holds entries rowptr[r]..rowptr[r+1]
// at columns col[p], with values values[p], or values[perm[p]] when the structure is the transpose of the values'.
struct Csr {
  const int64_t* rowptr;
  const int32_t* col;
  const int64_t* perm;
  int64_t rows_per_copy;
};

Csr csr_of(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor* perm, int64_t rows_per_copy) {
  TORCH_CHECK(rowptr.scalar_type() == at::kLong && rowptr.is_contiguous(), "sparse_linear: rowptr must be int64");
  TORCH_CHECK(col.scalar_type() == at::kInt && col.is_contiguous(), "sparse_linear: col must be int32");
  TORCH_CHECK(!perm || (perm->scalar_type() == at::kLong && perm->is_contiguous()), "sparse_linear: perm: int64");
  return {rowptr.data_ptr<int64_t>(), col.data_ptr<int32_t>(), perm ? perm->data_ptr<int64_t>() : nullptr,
          rows_per_copy};
}

void check_float(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              "sparse_linear: ", what, " must be a contiguous float32 CPU tensor");
}

// Batch-contiguous rows of activations or gradients, (K, R, B) or (R, B) shared by all copies, in any strides
// otherwise: a layer's input can be the transposed view of the previous layer's output, or of a gathered batch.
struct Rows {
  const float* data;
  int64_t copy_stride, row_stride;
  const float* at(int64_t copy, int64_t row) const { return data + copy * copy_stride + row * row_stride; }
};

Rows rows_of(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && (t.stride(-1) == 1 || t.size(-1) == 1),
              "sparse_linear: ", what, " must be a float32 CPU tensor with the batch contiguous");
  const bool shared = t.dim() == 2;
  return {t.data_ptr<float>(), shared ? 0 : t.stride(0), t.stride(shared ? 0 : 1)};
}

// The last vector of a batch block: full, or its first `n` entries (masked where the CPU has masks).
struct Last {
  int64_t n;
#if defined(CPU_CAPABILITY_AVX512)
  __mmask16 mask;
  explicit Last(int64_t n) : n(n), mask(static_cast<__mmask16>((1u << n) - 1)) {}
  Vec load(const float* p) const { return _mm512_maskz_loadu_ps(mask, p); }
  void store(const Vec& v, float* p) const { _mm512_mask_storeu_ps(p, mask, v); }
#else
  explicit Last(int64_t n) : n(n) {}
  Vec load(const float* p) const { return n == V ? Vec::loadu(p) : Vec::loadu(p, n); }
  void store(const Vec& v, float* p) const { if (n == V) v.store(p); else v.store(p, n); }
#endif
};

// vector j of the NV vectors of a batch block at p
template <int64_t NV>
inline Vec load(const float* p, const Last& last, int64_t j) {
  return j < NV - 1 ? Vec::loadu(p + j * V) : last.load(p + j * V);
}

// f(from, last, nv) for the blocks of <= NB vectors the batch splits into, with nv as a compile-time constant (so that
// the loops over a block's vectors unroll and its accumulators stay in registers)
template <typename F>
void for_blocks(int64_t batch, const F& f) {
  for (int64_t from = 0; from < batch; from += NB * V) {
    const int64_t n = std::min(NB * V, batch - from), nv = (n + V - 1) / V;
    const Last last(n - (nv - 1) * V);
    switch (nv) {
      case 1: f(from, last, std::integral_constant<int64_t, 1>{}); break;
      case 2: f(from, last, std::integral_constant<int64_t, 2>{}); break;
      case 3: f(from, last, std::integral_constant<int64_t, 3>{}); break;
      default: f(from, last, std::integral_constant<int64_t, NB>{});
    }
  }
}

using ticketlab_sums::reduce4;
using ticketlab_sums::sum;

// out[r, :] = bias[r] + sum over row r's entries p of value(p) * in[copy, col[p], :]; out (K, R, B) contiguous
// (then max(out, 0) if `relu`: as torch.relu, NaN kept)
template <bool PERM>
void spmm(const Csr& s, const float* values, const float* bias, const Rows& in, float* out, int64_t rows,
          int64_t batch, bool relu = false) {
  // batch blocks outermost: a block's slice of the input stays in cache while every output row reads it (large
  // batches: evaluation)
  for_blocks(batch, [&](int64_t from, const Last& last, auto nv) {
    constexpr int64_t NV = decltype(nv)::value;
    at::parallel_for(0, rows, GRAIN, [&](int64_t lo, int64_t hi) {
      const int64_t* rowptr = s.rowptr;  // locals: the loops below must not reload them
      const int32_t* col = s.col;
      const int64_t* perm = s.perm;
      const int64_t stride = in.row_stride;
      for (int64_t r = lo; r < hi; r++) {
        const float* in_copy = in.at(r / s.rows_per_copy, 0) + from;
        // two entries at a time into two sets of accumulators: independent multiply-add chains
        Vec acc[NV], acc2[NV];
        for (int64_t j = 0; j < NV; j++) acc[j] = Vec(bias ? bias[r] : 0.f), acc2[j] = Vec(0.f);
        int64_t p = rowptr[r];
        const int64_t end = rowptr[r + 1];
        for (; p + 1 < end; p += 2) {
          const float* in0 = in_copy + col[p] * stride;
          const float* in1 = in_copy + col[p + 1] * stride;
          const Vec w0(values[PERM ? perm[p] : p]), w1(values[PERM ? perm[p + 1] : p + 1]);
          for (int64_t j = 0; j < NV; j++) {
            acc[j] = at::vec::fmadd(w0, load<NV>(in0, last, j), acc[j]);
            acc2[j] = at::vec::fmadd(w1, load<NV>(in1, last, j), acc2[j]);
          }
        }
        if (p < end) {
          const float* in0 = in_copy + col[p] * stride;
          const Vec w0(values[PERM ? perm[p] : p]);
          for (int64_t j = 0; j < NV; j++) acc[j] = at::vec::fmadd(w0, load<NV>(in0, last, j), acc[j]);
        }
        float* o = out + r * batch + from;
        for (int64_t j = 0; j < NV; j++) {
          acc[j] = acc[j] + acc2[j];
          if (relu) acc[j] = at::vec::clamp_min(acc[j], Vec(0.f));
        }
        for (int64_t j = 0; j < NV - 1; j++) acc[j].store(o + j * V);
        last.store(acc[NV - 1], o + (NV - 1) * V);
      }
    });
  });
}

// dw[p] = <dy[r, :], in[copy, col[p], :]> for row r's entries p, and db[r] = the sum of dy[r, :]
void dot_rows(const Csr& s, const Rows& dy, const Rows& in, float* dw, float* db, int64_t rows, int64_t batch) {
  const int64_t O = s.rows_per_copy;
  at::parallel_for(0, rows, GRAIN, [&](int64_t lo, int64_t hi) {
    const int64_t* rowptr = s.rowptr;  // locals: the loops below must not reload them
    const int32_t* col = s.col;
    const int64_t stride = in.row_stride;
    for (int64_t r = lo; r < hi; r++) {
      const float* dr = dy.at(r / O, r % O);
      const float* in_copy = in.at(r / O, 0);
      Vec total(0.f);
      for_blocks(batch, [&](int64_t from, const Last& last, auto nv) {
        constexpr int64_t NV = decltype(nv)::value;
        Vec d[NV];
        for (int64_t j = 0; j < NV; j++) d[j] = load<NV>(dr + from, last, j), total = total + d[j];
        const auto dot = [&](int64_t p) {
          const float* xr = in_copy + col[p] * stride + from;
          Vec acc = d[0] * load<NV>(xr, last, 0);
          for (int64_t j = 1; j < NV; j++) acc = at::vec::fmadd(d[j], load<NV>(xr, last, j), acc);
          return acc;
        };
        int64_t p = rowptr[r];
        const int64_t end = rowptr[r + 1];
        for (; p + 3 < end; p += 4) {  // four entries at a time, reduced together
          float part[4];
          reduce4(dot(p), dot(p + 1), dot(p + 2), dot(p + 3), part);
          for (int64_t i = 0; i < 4; i++) dw[p + i] = from == 0 ? part[i] : dw[p + i] + part[i];
        }
        for (; p < end; p++) dw[p] = from == 0 ? sum(dot(p)) : dw[p] + sum(dot(p));
      });
      db[r] = sum(total);
    }
  });
}

// dy where the ReLU's output y is positive, else 0 (torch's threshold_backward: NaN outputs pass the gradient);
// dy (K, O, B) in any strides with the batch contiguous, y (K, O, B) contiguous; out contiguous
at::Tensor relu_grad(const Rows& dy, const at::Tensor& yt) {
  check_float(yt, "the ReLU's output");
  const int64_t O = yt.size(1), B = yt.size(2);
  at::Tensor out = at::empty_like(yt);
  const float* y = yt.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, yt.size(0) * O, GRAIN, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const float* d = dy.at(r / O, r % O);
      for (int64_t b = 0; b < B; b += V) {
        const int64_t n = std::min(V, B - b);
        const Vec yv = Vec::loadu(y + r * B + b, n);
        Vec::blendv(Vec::loadu(d + b, n), Vec(0.f), yv <= Vec(0.f)).store(o + r * B + b, n);
      }
    }
  });
  return out;
}

}  // namespace

// y^T (K, O, B) = bias + W x^T for x^T (K, F, B), or (F, B) seen by all K copies, W given by its kept values in CSR
// order; `relu`: then max(y^T, 0), the ReLU after the layer fused in
at::Tensor forward(const at::Tensor& xt, const at::Tensor& values, const at::Tensor& bias, const at::Tensor& rowptr,
                   const at::Tensor& col, int64_t out_features, bool relu) {
  const Rows x = rows_of(xt, "x^T");
  check_float(values, "values");
  const bool shared = xt.dim() == 2;
  const int64_t K = (rowptr.numel() - 1) / out_features, O = out_features;
  const int64_t F = xt.size(shared ? 0 : 1), B = xt.size(shared ? 1 : 2);
  TORCH_CHECK(shared || xt.size(0) == K, "sparse_linear: x^T has other copies than the weights");
  const bool has_bias = bias.numel() > 0;
  if (has_bias) check_float(bias, "bias");
  at::Tensor yt = at::empty({K, O, B}, xt.options());
  spmm<false>(csr_of(rowptr, col, nullptr, O), values.data_ptr<float>(), has_bias ? bias.data_ptr<float>() : nullptr,
              x, yt.data_ptr<float>(), K * O, B, relu);
  return yt;
}

// The gradients of the kept values (d values[p] = <dy^T[r, :], x^T[copy, col[p], :]>) and of the bias (dy^T summed
// over the batch); the input's, if asked, through the transposed structure (colptr, row, perm: dx^T = W^T dy^T).
// relu_yt: the output y^T of a fused ReLU (forward's `relu`), whose gradient is taken first; empty: none.
std::vector<at::Tensor> backward(const at::Tensor& dyt, const at::Tensor& xt, const at::Tensor& values,
                                 const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& colptr,
                                 const at::Tensor& row, const at::Tensor& perm, bool input_grad,
                                 const at::Tensor& relu_yt) {
  const Rows x = rows_of(xt, "x^T");
  const at::Tensor dyt_in = relu_yt.numel() > 0 ? relu_grad(rows_of(dyt, "dy^T"), relu_yt) : dyt;
  const Rows dy = rows_of(dyt_in, "dy^T");
  const int64_t K = xt.size(0), F = xt.size(1), B = xt.size(2), O = dyt.size(1);
  const Csr s = csr_of(rowptr, col, nullptr, O);
  at::Tensor dvalues = at::empty_like(values);
  at::Tensor dbias = at::empty({K, O}, xt.options());
  dot_rows(s, dy, x, dvalues.data_ptr<float>(), dbias.data_ptr<float>(), K * O, B);
  if (!input_grad) return {dvalues, dbias};
  check_float(values, "values");
  TORCH_CHECK(colptr.numel() == K * F + 1, "sparse_linear: colptr does not match the copies and columns");
  at::Tensor dxt = at::empty({K, F, B}, xt.options());
  spmm<true>(csr_of(colptr, row, &perm, F), values.data_ptr<float>(), nullptr, dy, dxt.data_ptr<float>(), K * F, B);
  return {dvalues, dbias, dxt};
}

// backward, then the Adam/AdamW step of the kept values and the bias (if it has entries) from their gradients, in
// place, with their moments (exp_avg, exp_avg_sq): torch's fused step, the same bits (adam_math.h). The input's
// gradient is taken before the step; returns [dx^T] if asked, else nothing. Fusing the step saves torch.optim's
// per-step work (1.05-1.07x per batched LeNet-300-100 step, docs/speed.md).
std::vector<at::Tensor> backward_step(const at::Tensor& dyt, const at::Tensor& xt, const at::Tensor& values,
                                      const at::Tensor& bias, const at::Tensor& rowptr, const at::Tensor& col,
                                      const at::Tensor& colptr, const at::Tensor& row, const at::Tensor& perm,
                                      bool input_grad, const at::Tensor& relu_yt, const at::Tensor& values_exp_avg,
                                      const at::Tensor& values_exp_avg_sq, const at::Tensor& bias_exp_avg,
                                      const at::Tensor& bias_exp_avg_sq, double step, double lr, double beta1,
                                      double beta2, double weight_decay, double eps, bool adamw) {
  const std::vector<at::Tensor> grads = backward(dyt, xt, values, rowptr, col, colptr, row, perm, input_grad,
                                                 relu_yt);
  const auto adam = [&](const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                        const at::Tensor& exp_avg_sq) {
    for (const auto* t : {&param, &exp_avg, &exp_avg_sq}) {
      check_float(*t, "a stepped tensor");
      TORCH_CHECK(t->numel() == grad.numel(), "sparse_linear: a parameter and its moments differ in size");
    }
    ticketlab_adam::adam_step(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg.data_ptr<float>(),
                              exp_avg_sq.data_ptr<float>(), nullptr, grad.numel(), step, lr, beta1, beta2,
                              weight_decay, eps, adamw);
  };
  adam(values, grads[0], values_exp_avg, values_exp_avg_sq);
  if (bias.numel() > 0) adam(bias, grads[1], bias_exp_avg, bias_exp_avg_sq);
  if (input_grad) return {grads[2]};
  return {};
}

// Rows `index` of x (N, F), feature-major, for `copies` copies of B = M / copies rows each:
// out (copies, F, Bp)[k, f, b] = x[index[k * B + b], f], where Bp is B rounded up to whole cache lines, so that every
// copy's slice of a feature starts one (the kernels' vector loads then do not straddle two; the padding is never
// read), and each copy's input is one block of memory (fewer pages for the kernels' scattered reads than features
// interleaving the copies: 1.1x faster forward). 16 rows at a time: their 16 values of a feature make one cache line
// of the output. A batch gathered so is the layout the kernels read, as a (K, B, F) view; gathering rows and then
// transposing them moved the batch through memory twice.
at::Tensor gather_feature_major(const at::Tensor& x, const at::Tensor& index, int64_t copies) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() == 2 && index.scalar_type() == at::kLong && index.is_contiguous(),
              "sparse_linear: gather_feature_major takes x (N, F) and int64 indices");
  const int64_t N = x.size(0), F = x.size(1), M = index.numel();
  TORCH_CHECK(copies > 0 && M % copies == 0, "sparse_linear: the indices do not split into the copies");
  constexpr int64_t LINE = 64 / sizeof(float);
  const int64_t B = M / copies, Bp = (B + LINE - 1) / LINE * LINE;
  const int64_t* idx = index.data_ptr<int64_t>();
  for (int64_t m = 0; m < M; m++) TORCH_CHECK(idx[m] >= 0 && idx[m] < N, "sparse_linear: index out of range");
  at::Tensor out = at::empty({copies, F, Bp}, x.options());
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t chunks = (B + LINE - 1) / LINE;  // per copy
  at::parallel_for(0, copies * chunks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t chunk = lo; chunk < hi; chunk++) {
      const int64_t k = chunk / chunks, b0 = chunk % chunks * LINE, n = std::min(LINE, B - b0);
      const float* rows[LINE];
      for (int64_t i = 0; i < n; i++) rows[i] = src + idx[k * B + b0 + i] * F;
      float* to = dst + k * F * Bp + b0;
      for (int64_t f = 0; f < F; f++)
        for (int64_t i = 0; i < n; i++) to[f * Bp + i] = rows[i][f];
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gather_feature_major", &gather_feature_major, "rows of x, feature-major (float32, CPU)");
  m.def("forward", &forward, "stacked CSR Linear forward, feature-major (float32, CPU)");
  m.def("backward", &backward, "stacked CSR Linear backward: kept values, bias, input (float32, CPU)");
  m.def("backward_step", &backward_step, "backward, then the fused Adam/AdamW step of values and bias (CPU)");
}
