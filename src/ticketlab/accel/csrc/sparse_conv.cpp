// A Conv2d of K stacked copies whose weights are stored as their kept entries only, computed as a direct sparse
// convolution (Park et al. 2017, "Faster CNNs with direct sparse convolutions"). Each sample's input is padded and
// split into stride phases in a thread's cache-resident scratch (build_stack; layout and offsets: batching/
// conv_layout.py), so that every kept entry (o, c, ky, kx) is one offset `off` into the sample's flat stack of
// planes and output plane o is
//   out[o, i] = sum over o's kept entries of  w * in[off + i],   i < L (the output rows, each `wq` wide)
// a sum of shifted input planes: each kept weight costs one broadcast and a run of contiguous multiply-adds, no
// im2col. The input's gradient is the same sum over the transposed entries (input plane <- output gradient planes,
// shifted back, with zero margins); the kept values' gradient is a dot product per entry. Performance: chunks of up
// to 16 vectors of a plane in registers; a row's entries in blocks of input planes that fit in L1 together; in the
// compact layout (rows as wide as the input, dividing 32), taps past a row's end masked off per entry rather than
// read from padding columns, so no junk outputs are computed. A ReLU after the convolution, and a 2x2 max-pool after
// that, are applied as the output is written and undone as its gradient is read (GradSource): a batched activation is
// too large for the caches, so passes of their own would cost about as much as the convolution. Every output element is
// summed by one thread in a fixed order (the entries' and samples' order), so the numbers do not depend on the thread
// count.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "vec_sums.h"

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t V = Vec::size();
constexpr int64_t MAX_NV = 16;  // vectors of a plane's chunk held in registers at once (of 32 on AVX-512)
#if defined(CPU_CAPABILITY_AVX512)
constexpr bool MASKED_LOADS = true;
#else
constexpr bool MASKED_LOADS = false;
#endif
constexpr int64_t SHORT_CHUNK = 8;  // chunks of up to this many vectors are summed or read for several samples at once

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A plane of `length` outputs is computed in chunks of `nv` vectors (equal sizes, the last one padded): the caller
// allocates `padded` outputs per plane and inputs that stay in bounds for them.
struct Plan {
  int64_t nv, chunks;
  int64_t padded() const { return nv * chunks * V; }
};

Plan plan_of(int64_t length) {
  const int64_t vectors = std::max<int64_t>(1, ceil_div(length, V));
  const int64_t chunks = ceil_div(vectors, MAX_NV);
  return {ceil_div(vectors, chunks), chunks};
}

// f(nv) with the chunk's vector count as a compile-time constant (its loops unroll, its accumulators stay in
// registers)
template <typename F>
void with_nv(int64_t nv, const F& f) {
  switch (nv) {
#define TICKETLAB_NV(n) case n: f(std::integral_constant<int64_t, n>{}); break;
    TICKETLAB_NV(1) TICKETLAB_NV(2) TICKETLAB_NV(3) TICKETLAB_NV(4) TICKETLAB_NV(5) TICKETLAB_NV(6)
    TICKETLAB_NV(7) TICKETLAB_NV(8) TICKETLAB_NV(9) TICKETLAB_NV(10) TICKETLAB_NV(11) TICKETLAB_NV(12)
    TICKETLAB_NV(13) TICKETLAB_NV(14) TICKETLAB_NV(15) TICKETLAB_NV(16)
#undef TICKETLAB_NV
    default: TORCH_CHECK(false, "sparse_conv: no chunk of ", nv, " vectors");
  }
}

// Kept entries grouped by row (an output plane forward, an input plane for the input's gradient) over the rows of
// all copies, and within a row by blocks of the planes they read (so that a block's inputs stay in L1 while it is
// summed): block b of row r holds entries ptr[r * blocks + b]..ptr[r * blocks + b + 1], reading the input at off[p]
// with weight values[p] (for the input's gradient, the values in the order of the transposed entries).
struct Entries {
  const int64_t* ptr;
  const int64_t* off;
  const int32_t* mask;  // per entry, the lanes to read (compact layout: taps past a row's end; fmadd_at), or none
  int64_t rows_per_copy, blocks, copies;
  int64_t begin(int64_t row, int64_t block = 0) const { return ptr[row * blocks + block]; }
};

Entries entries_of(const at::Tensor& ptr, int64_t blocks, const at::Tensor& off, const at::Tensor& mask,
                   int64_t rows_per_copy) {
  TORCH_CHECK(ptr.scalar_type() == at::kLong && ptr.is_contiguous() && off.scalar_type() == at::kLong &&
              off.is_contiguous(), "sparse_conv: row pointers and offsets must be contiguous int64");
  TORCH_CHECK(rows_per_copy > 0 && blocks > 0 && (ptr.numel() - 1) % (rows_per_copy * blocks) == 0 &&
              ptr.numel() > 1, "sparse_conv: the row pointers do not split into copies of ", rows_per_copy,
              " rows of ", blocks, " blocks");
  TORCH_CHECK(ptr.data_ptr<int64_t>()[ptr.numel() - 1] == off.numel(),
              "sparse_conv: row pointers and offsets differ in entries");
  // That every read stays inside its sample is checked once, where the offsets are made (conv_layout.py,
  // Layout.check_reads): a check per call cost as much as a small layer's convolution of one sample.
  const bool masked = mask.numel() > 0;
  TORCH_CHECK(!masked || (mask.scalar_type() == at::kInt && mask.is_contiguous() && mask.numel() == off.numel()),
              "sparse_conv: the lane masks must be int32, one per entry");
  TORCH_CHECK(!masked || MASKED_LOADS, "sparse_conv: lane masks need AVX-512");
  return {ptr.data_ptr<int64_t>(), off.data_ptr<int64_t>(), masked ? mask.data_ptr<int32_t>() : nullptr,
          rows_per_copy, blocks, (ptr.numel() - 1) / (rows_per_copy * blocks)};
}

// acc + w * p[0, V) in the lanes whose bit in m is set (MASKED), acc elsewhere, for vector j of a chunk: m holds two
// lane masks, for the even vectors (low half) and the odd ones (high half), which differ for rows 32 wide. One
// multiply-add with its load folded in (a masked load and a multiply-add cost a fifth more)
template <bool MASKED>
inline Vec fmadd_at(const Vec& w, const float* p, const Vec& acc, int32_t m, int64_t j) {
  if constexpr (MASKED) {
#if defined(CPU_CAPABILITY_AVX512)
    const uint32_t lanes = j & 1 ? static_cast<uint32_t>(m) >> 16 : static_cast<uint32_t>(m);
    return _mm512_mask3_fmadd_ps(w, _mm512_loadu_ps(p), acc, static_cast<__mmask16>(lanes));
#else
    TORCH_CHECK(false, "sparse_conv: lane masks need AVX-512");  // not reached: refused by entries_of
#endif
  }
  return at::vec::fmadd(w, Vec::loadu(p), acc);
}

// in + offset, opaque to the compiler: else it may hoist `in + j * V` for all of a chunk's vectors out of the entries'
// loop, more pointers than registers (spilled and reloaded per entry, half the speed), instead of addressing each
// vector as one register plus a constant
inline const float* entry_at(const float* in, int64_t offset) {
  const float* x = in + offset;
  asm("" : "+r"(x));
  return x;
}

void check_float(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              "sparse_conv: ", what, " must be a contiguous float32 CPU tensor");
}

// For each of NS samples q (their inputs `in_step`, their outputs `out_step` floats apart): out_q[0, NV*V) = (out_q
// if `more`, else 0) + the sum over entries p in [p, end) of w(p) * in_q[off[p] + (0, NV*V)], in the entries' order.
// Short chunks take two samples at once (summed_samples): one entry's offset, weight and mask serve both, and their
// accumulators are enough independent chains for the multiply-adds' latency.
template <int64_t NV, int64_t NS, bool MASKED>
__attribute__((always_inline)) inline void chunk_sum(const float* in, int64_t in_step, const Entries& e,
                                                     const float* values, int64_t p, int64_t end, float* out,
                                                     int64_t out_step, bool more) {
  const int64_t* off = e.off;  // locals: the loop must not reload them
  const int32_t* mask = e.mask;
  Vec a[NS][NV];
#pragma GCC unroll 16  // all loops over the chunk's vectors: its accumulators must stay in registers
  for (int64_t q = 0; q < NS; q++)
#pragma GCC unroll 16
    for (int64_t j = 0; j < NV; j++) a[q][j] = more ? Vec::loadu(out + q * out_step + j * V) : Vec(0.f);
  for (; p < end; p++) {
    const float* x = entry_at(in, off[p]);
    const Vec w(values[p]);
    const int32_t m = MASKED ? mask[p] : 0;
#pragma GCC unroll 16
    for (int64_t q = 0; q < NS; q++)
#pragma GCC unroll 16
      for (int64_t j = 0; j < NV; j++) a[q][j] = fmadd_at<MASKED>(w, x + q * in_step + j * V, a[q][j], m, j);
  }
#pragma GCC unroll 16
  for (int64_t q = 0; q < NS; q++)
#pragma GCC unroll 16
    for (int64_t j = 0; j < NV; j++) a[q][j].store(out + q * out_step + j * V);
}

using ticketlab_sums::reduce4;
using ticketlab_sums::sum;

// Samples whose dot products kept_grad takes at once, for chunks of NV vectors: as many as registers allow
constexpr int64_t samples_at_once(int64_t nv) { return nv <= 3 ? 4 : nv <= 5 ? 3 : nv <= SHORT_CHUNK ? 2 : 1; }
// Samples whose chunks forward and input_grad sum at once (chunk_sum), for chunks of NV vectors
constexpr int64_t summed_samples(int64_t nv) { return nv <= SHORT_CHUNK ? 2 : 1; }
constexpr int64_t ACC_BYTES = 512 * 1024;  // kept_grad's lane-wise sums per task (one sample at a time)

// The dot products of g[q][0, NV*V) and in[q][off[p] + (0, NV*V)] summed over the NS samples q, for the entries p
// in [from, end) of one row, added to their sums: lane-wise into acc[p - from] for one sample (reduced by the caller
// at the end), else reduced here into dw[p - from] (the accumulators of samples read at once would not fit in cache).
// Four entries at a time: independent multiply-add chains (one per entry and sample, or two per entry for one
// sample).
template <int64_t NV, int64_t NS, bool MASKED>
inline void chunk_dots(const float* const* g, const float* const* in, const int64_t* off, const int32_t* mask,
                       int64_t from, int64_t end, Vec* acc, float* dw) {
  constexpr int64_t CH = NS == 1 ? 2 : NS;  // chains per entry
  Vec gv[NS][NV];
  for (int64_t q = 0; q < NS; q++)
    for (int64_t j = 0; j < NV; j++) gv[q][j] = Vec::loadu(g[q] + j * V);
  const auto dots = [&](int64_t p, auto count, Vec* sums) {  // entries p, p + 1, .. (count of them)
    constexpr int64_t E = decltype(count)::value;
    const float* x[NS][E];
    int32_t m[E];
    for (int64_t k = 0; k < E; k++) {
      m[k] = MASKED ? mask[p + k] : 0;
      for (int64_t q = 0; q < NS; q++) x[q][k] = entry_at(in[q], off[p + k]);
    }
    Vec s[E][CH];
    for (int64_t k = 0; k < E; k++)
      for (int64_t t = 0; t < CH; t++) s[k][t] = Vec(0.f);
#pragma GCC unroll 16  // all of it: the accumulators and gradient vectors must stay in registers
    for (int64_t j = 0; j < NV; j++)
#pragma GCC unroll 4
      for (int64_t k = 0; k < E; k++)
#pragma GCC unroll 4
        for (int64_t q = 0; q < NS; q++) {
          Vec& chain = s[k][NS == 1 ? j & 1 : q];
          chain = fmadd_at<MASKED>(gv[q][j], x[q][k] + j * V, chain, m[k], j);
        }
    for (int64_t k = 0; k < E; k++) {
      sums[k] = s[k][0];
      for (int64_t t = 1; t < CH; t++) sums[k] = sums[k] + s[k][t];
    }
  };
  int64_t p = from;
  for (; p + 3 < end; p += 4) {
    Vec sums[4];
    dots(p, std::integral_constant<int64_t, 4>{}, sums);
    if constexpr (NS == 1) {
      for (int64_t k = 0; k < 4; k++) acc[p - from + k] = acc[p - from + k] + sums[k];
    } else {
      float part[4];
      reduce4(sums[0], sums[1], sums[2], sums[3], part);
      for (int64_t k = 0; k < 4; k++) dw[p - from + k] += part[k];
    }
  }
  for (; p < end; p++) {
    Vec total;
    dots(p, std::integral_constant<int64_t, 1>{}, &total);
    if constexpr (NS == 1)
      acc[p - from] = acc[p - from] + total;
    else
      dw[p - from] += sum(total);
  }
}

}  // namespace

// The outputs computed per plane of `length` outputs (a multiple of the chunk size): the inputs the offsets read
// must reach that far.
int64_t padded_length(int64_t length) { return plan_of(length).padded(); }

// The outputs summed at once (a chunk): its inputs and those of a block of planes should fit in L1.
int64_t chunk_length(int64_t length) { return plan_of(length).nv * V; }

// Whether lane masks (the compact layout) are available: AVX-512
bool masked_loads() { return MASKED_LOADS; }

// The samples whose chunks kept_grad reads at once
int64_t grad_samples(int64_t length) { return samples_at_once(plan_of(length).nv); }

// The samples whose chunks forward and input_grad sum at once
int64_t sum_samples(int64_t length) { return summed_samples(plan_of(length).nv); }

namespace {

// One layer's shapes at one input size, as conv_layout.py's Layout gives them (in this order): the input (C, H, W),
// stride, the padding before rows and columns, the phase planes (hq, wq), the output (O, ho, wo); backward, the phase
// rows r0.. (back_rows of them) that cover the input, and the zero rows above and below the output's gradient; the
// zeros before the planes, and the phases read (bit p: phase p; a 1x1 kernel of stride 2 reads one of four).
struct Geometry {
  int64_t C, H, W, sy, sx, top, left, hq, wq, O, ho, wo, r0, back_rows, top_rows, below, guard, phases;
  int64_t stack() const { return guard + sy * sx * C * hq * wq; }  // a sample's padded, phase-split input
  int64_t length() const { return ho * wq; }  // outputs per plane, junk columns included
  int64_t grad_plane() const { return (top_rows + ho + below) * wq; }  // an output gradient plane with its margin
};

Geometry geometry_of(const std::vector<int64_t>& v) {
  TORCH_CHECK(v.size() == 18, "sparse_conv: the geometry takes 18 numbers");
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16],
          v[17]};
}

void check_sample(const at::Tensor& t, int64_t a, int64_t b, int64_t c, const char* what) {
  check_float(t, what);
  TORCH_CHECK(t.dim() == 4 && t.size(1) == a && t.size(2) == b && t.size(3) == c, "sparse_conv: ", what,
              " must be (samples, ", a, ", ", b, ", ", c, "), not ", t.sizes());
}

// A thread's scratch of n floats, 64-byte aligned, zero where first made: the planes built in it keep their margins
// zero, only their inside is written, sample after sample
float* scratch(at::Tensor& t, int64_t n) {
  if (t.numel() < n) t = at::zeros({n}, at::kFloat);
  return t.data_ptr<float>();
}

// dst[0, n) = src[0, n), plus `add` if ADD, then max(0, .) if RELU; with `gate`, zero where gate <= 0 (ReLU's
// backward: gate is the ReLU's output; a NaN output passes the gradient, as in torch's threshold_backward).
// Vectorised (rows are short: 8-32 values)
template <bool ADD = false, bool RELU = false>
inline Vec row_op(Vec v, float add, const Vec* gate) {
  if (ADD) v = v + Vec(add);
  if (RELU) v = at::vec::maximum(v, Vec(0.f));
  if (gate) v = Vec::blendv(v, Vec(0.f), *gate <= Vec(0.f));
  return v;
}

template <bool ADD = false, bool RELU = false>
inline void copy_row(const float* src, float* dst, int64_t n, float add = 0.f, const float* gate = nullptr) {
  int64_t i = 0;
  for (; i + V <= n; i += V) {
    const Vec g = gate ? Vec::loadu(gate + i) : Vec(0.f);
    row_op<ADD, RELU>(Vec::loadu(src + i), add, gate ? &g : nullptr).store(dst + i);
  }
  if (i == n) return;
#if defined(CPU_CAPABILITY_AVX512)
  const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
  const Vec g = gate ? Vec(_mm512_maskz_loadu_ps(m, gate + i)) : Vec(0.f);
  const Vec v = row_op<ADD, RELU>(Vec(_mm512_maskz_loadu_ps(m, src + i)), add, gate ? &g : nullptr);
  _mm512_mask_storeu_ps(dst + i, m, v);
#else
  for (; i < n; i++) {
    float v = ADD ? src[i] + add : src[i];
    if (RELU) v = std::max(v, 0.f);
    dst[i] = gate && gate[i] <= 0.f ? 0.f : v;
  }
#endif
}

// Brings memory ranges into L2 a few cache lines per step of a computation: the next samples' inputs while the
// current ones are summed, so that reading them from main memory (where a batched activation lives) overlaps the
// multiply-adds instead of following them
class Prefetcher {
 public:
  // the ranges (start, bytes) over `steps` steps
  void start(std::initializer_list<std::pair<const void*, int64_t>> ranges, int64_t steps) {
    count_ = 0;
    int64_t lines = 0;
    for (const auto& [from, bytes] : ranges) {
      if (!from || bytes <= 0) continue;
      at_[count_] = static_cast<const char*>(from);
      end_[count_] = at_[count_] + bytes;
      count_++;
      lines += ceil_div(bytes, 64);
    }
    per_step_ = ceil_div(lines, std::max<int64_t>(steps, 1));
    range_ = 0;
  }
  void step() {
    for (int64_t k = 0; k < per_step_ && range_ < count_; k++) {
      __builtin_prefetch(at_[range_], 0, 2);
      at_[range_] += 64;
      if (at_[range_] >= end_[range_]) range_++;
    }
  }

 private:
  const char *at_[4], *end_[4];
  int64_t count_ = 0, range_ = 0, per_step_ = 0;
};

// dst[0, n) = src[0, n) + add, then max(0, .) if RELU, written past the caches (non-temporal stores), if dst is
// 64-byte aligned and n a whole number of vectors (else false, nothing written). A layer's output or input gradient
// goes to main memory (eight copies' activations do not fit in the caches), where a store that first reads the line
// it writes moves twice the bytes: those reads were a sixth of a forward call on 32x32 planes. The caller ends its
// thread's stores with end_streams
template <bool RELU>
bool stream_plane(const float* src, float* dst, int64_t n, float add) {
#if defined(CPU_CAPABILITY_AVX512)
  if (n % V || reinterpret_cast<uintptr_t>(dst) % 64) return false;
  for (int64_t i = 0; i < n; i += V) _mm512_stream_ps(dst + i, row_op<true, RELU>(Vec::loadu(src + i), add, nullptr));
  return true;
#else
  return false;
#endif
}

// orders a thread's non-temporal stores before whatever follows (they are weakly ordered)
void end_streams() {
#if defined(CPU_CAPABILITY_AVX512)
  _mm_sfence();
#endif
}

// the lanes l < 16 with lo <= base + l < hi, as a mask
inline uint32_t lanes(int64_t base, int64_t lo, int64_t hi) {
  const int64_t from = std::max<int64_t>(lo - base, 0), to = std::min<int64_t>(hi - base, 16);
  return to > from ? ((1u << to) - 1) & ~((1u << from) - 1) : 0u;
}

// row[xq] = xr[xq * 2 + px - left] for xq < wq where that column is inside the input row (W values), else 0:
// one phase of a row of stride 2, 16 values at a time (two loads de-interleaved)
void phase_row2(const float* xr, int64_t W, int64_t px, int64_t left, float* row, int64_t wq) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t xq = 0; xq < wq; xq += 16) {
    const int64_t base = 2 * xq + px - left;  // the input column of lane 0
    const __m512 a = _mm512_maskz_loadu_ps(lanes(base, 0, W), xr + base);
    const __m512 b = _mm512_maskz_loadu_ps(lanes(base + 16, 0, W), xr + base + 16);
    _mm512_mask_storeu_ps(row + xq, lanes(xq, 0, wq), _mm512_permutex2var_ps(a, even, b));
  }
#else
  for (int64_t xq = 0; xq < wq; xq++) {
    const int64_t xx = xq * 2 + px - left;
    if (xx >= 0 && xx < W) row[xq] = xr[xx];
  }
#endif
}

// to[xq * 2 + px - left] = row[xq] where that column is inside the input row (W values): the inverse of phase_row2,
// 8 values at a time (spread to every other lane, stored under a mask)
void unphase_row2(const float* row, int64_t wq, int64_t px, int64_t left, float* to, int64_t W) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i spread = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const uint32_t parity = px ? 0xAAAAu : 0x5555u;
  for (int64_t xq = 0; xq < wq; xq += 8) {
    const int64_t base = 2 * xq - left;  // the input column of lane 0
    const __m512 v = _mm512_maskz_loadu_ps(lanes(xq, 0, wq) & 0xFF, row + xq);
    _mm512_mask_storeu_ps(to + base, lanes(base, 0, W) & parity, _mm512_permutexvar_ps(spread, v));
  }
#else
  for (int64_t xq = 0; xq < wq; xq++) {
    const int64_t xx = xq * 2 + px - left;
    if (xx >= 0 && xx < W) to[xx] = row[xq];
  }
#endif
}

// The inside of a sample's padded phase stack (its margins are zero, `scratch`), the phases read only:
// stack[((py * sx + px) * C + c) * hq * wq + yq * wq + xq] = x[c, yq * sy + py - top, xq * sx + px - left]
void build_stack(const Geometry& g, const float* x, float* stack) {
  for (int64_t phase = 0; phase < g.sy * g.sx; phase++) {
    if (!(g.phases >> phase & 1)) continue;
    const int64_t py = phase / g.sx, px = phase % g.sx;
    for (int64_t c = 0; c < g.C; c++) {
      float* plane = stack + g.guard + (phase * g.C + c) * g.hq * g.wq;
      for (int64_t yq = 0; yq < g.hq; yq++) {
        const int64_t y = yq * g.sy + py - g.top;
        if (y < 0 || y >= g.H) continue;
        const float* xr = x + (c * g.H + y) * g.W;
        float* row = plane + yq * g.wq;
        if (g.sx == 1) {
          copy_row(xr, row + g.left, g.W);
        } else if (g.sx == 2) {
          phase_row2(xr, g.W, px, g.left, row, g.wq);
        } else {
          for (int64_t xq = 0; xq < g.wq; xq++) {
            const int64_t xx = xq * g.sx + px - g.left;
            if (xx >= 0 && xx < g.W) row[xq] = xr[xx];
          }
        }
      }
    }
  }
}

// a computed output plane (ho rows wq wide) cropped to (ho, wo), plus the bias if `bias`, then the ReLU if RELU
template <bool RELU>
void crop(const Geometry& g, const float* plane, const float* bias, float* y) {
  if (g.wq == g.wo && stream_plane<RELU>(plane, y, g.ho * g.wo, bias ? *bias : 0.f)) return;
  for (int64_t r = 0; r < g.ho; r++) {
    if (bias)
      copy_row<true, RELU>(plane + r * g.wq, y + r * g.wo, g.wo, *bias);
    else
      copy_row<false, RELU>(plane + r * g.wq, y + r * g.wo, g.wo);
  }
}

// The ReLU and 2x2 max-pool (stride 2, floor) after the convolution, of a computed plane (ho rows wq wide) plus the
// bias: y[i, j] = max(0, the window's maximum), where[i, j] = the window's position (0..3, row-major) of its first
// maximum, as torch's max_pool2d picks it (ties routed elsewhere would move gradients)
void crop_pooled(const Geometry& g, const float* plane, const float* bias, float* y, uint8_t* where) {
  const int64_t hp = g.ho / 2, wp = g.wo / 2;
  const float add = bias ? *bias : 0.f;
  for (int64_t i = 0; i < hp; i++) {
    int64_t j = 0;
#if defined(CPU_CAPABILITY_AVX512)
    // 16 windows at a time: their four positions de-interleaved from two rows (a scalar loop took as long as the
    // convolution's sums on 32x32 planes)
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512 zero = _mm512_setzero_ps(), shift = _mm512_set1_ps(add);
    for (; j < wp; j += 16) {
      const __mmask16 out = static_cast<__mmask16>(lanes(j, 0, wp));
      __m512 v[4];
      for (int row = 0; row < 2; row++) {
        const float* r = plane + (2 * i + row) * g.wq + 2 * j;
        const __m512 a = _mm512_maskz_loadu_ps(lanes(2 * j, 0, g.wq), r);
        const __m512 b = _mm512_maskz_loadu_ps(lanes(2 * j + 16, 0, g.wq), r + 16);
        v[2 * row] = _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), shift);
        v[2 * row + 1] = _mm512_add_ps(_mm512_permutex2var_ps(a, odd, b), shift);
      }
      __m512 best = v[0];
      __m512i at = _mm512_setzero_si512();
      for (int q = 1; q < 4; q++) {  // the first maximum; a NaN wins (as the scalar loop below)
        const __mmask16 take =
            _mm512_cmp_ps_mask(v[q], best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[q], v[q], _CMP_UNORD_Q);
        best = _mm512_mask_mov_ps(best, take, v[q]);
        at = _mm512_mask_mov_epi32(at, take, _mm512_set1_epi32(q));
      }
      const __mmask16 keep =
          _mm512_cmp_ps_mask(best, zero, _CMP_GT_OQ) | _mm512_cmp_ps_mask(best, best, _CMP_UNORD_Q);
      _mm512_mask_storeu_ps(y + i * wp + j, out, _mm512_maskz_mov_ps(keep, best));
      _mm_mask_storeu_epi8(where + i * wp + j, out, _mm512_cvtepi32_epi8(at));
    }
#endif
    for (; j < wp; j++) {
      const float* top = plane + 2 * i * g.wq + 2 * j;
      const float v[4] = {top[0] + add, top[1] + add, top[g.wq] + add, top[g.wq + 1] + add};
      int best = 0;
      for (int q = 1; q < 4; q++)
        if (v[q] > v[best] || std::isnan(v[q])) best = q;
      y[i * wp + j] = v[best] > 0.f || std::isnan(v[best]) ? v[best] : 0.f;
      where[i * wp + j] = static_cast<uint8_t>(best);
    }
  }
}

// Where the kernels read the output's gradient: gy itself, zeroed where a fused ReLU's output is <= 0 (`gate`),
// or, with a fused max-pool (`where`), the pooled gradient routed to each window's maximum
struct GradSource {
  const float* gy;
  const float* gate;  // the fused ReLU's (pooled) output, or nullptr
  const uint8_t* where;  // the fused max-pool's choices, or nullptr
  int64_t size;  // gy's elements per plane

  // the inside of output gradient plane `plane` (sample * O + o) as the kernels read it (its margins are zero,
  // `scratch`): `above` zero rows, then ho rows wq wide
  void fill(const Geometry& g, int64_t plane, int64_t above, float* out) const {
    const float* from = gy + plane * size;
    const float* on = gate ? gate + plane * size : nullptr;
    if (!where) {
      for (int64_t y = 0; y < g.ho; y++) copy_row(from + y * g.wo, out + (above + y) * g.wq, g.wo, 0.f,
                                                  on ? on + y * g.wo : nullptr);
      return;
    }
    const uint8_t* at = where + plane * size;
    const int64_t hp = g.ho / 2, wp = g.wo / 2;
    for (int64_t y = 2 * hp; y < g.ho; y++) std::fill_n(out + (above + y) * g.wq, g.wo, 0.f);  // an odd last row
    for (int64_t i = 0; i < hp; i++) {
      float* top = out + (above + 2 * i) * g.wq;
      int64_t j = 0;
#if defined(CPU_CAPABILITY_AVX512)
      // 16 windows at a time: each gradient to its window's position, interleaved back into two rows
      const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const __m512i high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
      for (; j < wp; j += 16) {
        const __mmask16 in = static_cast<__mmask16>(lanes(j, 0, wp));
        const int64_t w = i * wp + j;
        const __m512 grad = _mm512_maskz_loadu_ps(in, from + w);
        const __mmask16 pass = in & ~_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(in, on + w), _mm512_setzero_ps(),
                                                        _CMP_LE_OQ);  // a NaN output passes, as in torch
        const __m512i position = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(in, at + w));
        __m512 v[4];
        for (int q = 0; q < 4; q++)
          v[q] = _mm512_maskz_mov_ps(pass & _mm512_cmpeq_epi32_mask(position, _mm512_set1_epi32(q)), grad);
        for (int row = 0; row < 2; row++) {
          float* r = top + row * g.wq + 2 * j;
          _mm512_mask_storeu_ps(r, lanes(2 * j, 0, 2 * wp), _mm512_permutex2var_ps(v[2 * row], low, v[2 * row + 1]));
          _mm512_mask_storeu_ps(r + 16, lanes(2 * j + 16, 0, 2 * wp),
                                _mm512_permutex2var_ps(v[2 * row], high, v[2 * row + 1]));
        }
      }
#endif
      for (; j < wp; j++) {
        const int64_t w = i * wp + j;
        float* window[4] = {top + 2 * j, top + 2 * j + 1, top + g.wq + 2 * j, top + g.wq + 2 * j + 1};
        for (int q = 0; q < 4; q++) *window[q] = q == at[w] && !(on[w] <= 0.f) ? from[w] : 0.f;
      }
      if (g.wo % 2) top[g.wo - 1] = top[g.wq + g.wo - 1] = 0.f;  // an odd last column
    }
  }

  // starts `ahead` on what filling planes plane..plane + count reads (and `more`)
  void prefetch(Prefetcher& ahead, int64_t plane, int64_t count, int64_t steps,
                std::pair<const void*, int64_t> more = {nullptr, 0}) const {
    ahead.start({{gy + plane * size, 4 * count * size}, {gate ? gate + plane * size : nullptr, 4 * count * size},
                 {where ? where + plane * size : nullptr, count * size}, more}, steps);
  }
};

// The output's gradient gy (N, O, ho, wo), or (N, O, ho / 2, wo / 2) with a fused max-pool (`where`: uint8, shaped as
// gy, or no elements); relu_out: the fused ReLU's (pooled) output, shaped as gy, or no elements
GradSource grad_source_of(const Geometry& g, const at::Tensor& gy, const at::Tensor& relu_out,
                          const at::Tensor& where) {
  const bool pooled = where.numel() > 0;
  check_sample(gy, g.O, pooled ? g.ho / 2 : g.ho, pooled ? g.wo / 2 : g.wo, "the output's gradient");
  const bool gated = relu_out.numel() > 0;
  if (gated) {
    check_float(relu_out, "the ReLU's output");
    TORCH_CHECK(relu_out.sizes() == gy.sizes(), "sparse_conv: the ReLU's output must be shaped as the gradient");
  }
  TORCH_CHECK(!pooled || (gated && where.scalar_type() == at::kByte && where.is_contiguous() &&
                          where.sizes() == gy.sizes()),
              "sparse_conv: a fused max-pool needs the ReLU's output and its choices (uint8) shaped as the gradient");
  return {gy.data_ptr<float>(), gated ? relu_out.data_ptr<float>() : nullptr,
          pooled ? where.data_ptr<uint8_t>() : nullptr, gy.size(2) * gy.size(3)};
}

// an input plane's gradient (phase rows r0.., wq wide) into the input's gradient gx (C, H, W) of the sample
void fold(const Geometry& g, int64_t plane, const float* from, float* gx) {
  const int64_t phase = plane / g.C, c = plane % g.C, py = phase / g.sx, px = phase % g.sx;
  const bool whole = g.sy == 1 && g.sx == 1 && g.wq == g.W && g.r0 == g.top;  // the plane's rows are gx's rows
  if (whole && stream_plane<false>(from, gx + c * g.H * g.W, g.H * g.W, 0.f)) return;
  for (int64_t yq = 0; yq < g.back_rows; yq++) {
    const int64_t y = (g.r0 + yq) * g.sy + py - g.top;
    if (y < 0 || y >= g.H) continue;
    const float* row = from + yq * g.wq;
    float* to = gx + (c * g.H + y) * g.W;
    if (g.sx == 1) {
      copy_row(row + g.left, to, g.W);
      continue;
    }
    if (g.sx == 2) {
      unphase_row2(row, g.wq, px, g.left, to, g.W);
      continue;
    }
    for (int64_t xq = 0; xq < g.wq; xq++) {
      const int64_t xx = xq * g.sx + px - g.left;
      if (xx >= 0 && xx < g.W) to[xx] = row[xq];
    }
  }
}

// Tasks (samples, block of rows) for `samples` samples (or groups of them) of `rows` rows: enough of them for the
// threads, consecutive ones sharing their samples (whose planes are built once per thread). The split changes no
// number.
int64_t row_block(int64_t samples, int64_t rows) {
  const int64_t wanted = 8 * at::get_num_threads();
  return samples >= wanted ? rows : std::max<int64_t>(1, rows * samples / wanted);
}

// out_q[r, :] = sum over the entries of rows r0..r1 (of row `first` on, over all copies) of w * in_q[off + i] for the
// NS samples q (inputs `in_step`, outputs `out_step` floats apart), then done(q, r, out_q row): chunk by chunk, so that
// a chunk's inputs stay in cache over the rows
template <int64_t NV, int64_t NS, typename Done>
void shifted_rows(const Plan& plan, const Entries& e, const float* values, const float* in, int64_t in_step,
                  int64_t first, int64_t r0, int64_t r1, float* out, int64_t stride, int64_t out_step,
                  Prefetcher& ahead, const Done& done) {
  for (int64_t c = 0; c < plan.chunks; c++) {
    for (int64_t b = 0; b < e.blocks; b++) {  // a block's planes (this chunk of them) stay in L1 over the rows
      for (int64_t r = r0; r < r1; r++) {
        ahead.step();
        const int64_t row = first + r, p = e.begin(row, b), end = e.begin(row, b + 1);
        if (b > 0 && p == end) continue;
        float* o = out + (r - r0) * stride + c * NV * V;
        if (e.mask)
          chunk_sum<NV, NS, true>(in + c * NV * V, in_step, e, values, p, end, o, out_step, b > 0);
        else
          chunk_sum<NV, NS, false>(in + c * NV * V, in_step, e, values, p, end, o, out_step, b > 0);
      }
    }
  }
  for (int64_t q = 0; q < NS; q++)
    for (int64_t r = r0; r < r1; r++) done(q, r, out + q * out_step + (r - r0) * stride);
}

// The groups of NS consecutive samples of one copy that forward and input_grad sum together: group i of all
// copies' groups holds samples first(i)..first(i) + count(i) (the last of a copy may hold fewer: its other slots sum
// whatever their buffers hold, for nothing). The grouping depends on the copies' sizes only, so no number depends on
// the thread count.
struct SampleGroups {
  int64_t per_copy, ns, per_copy_groups, count_all;
  int64_t first(int64_t i) const { return i / per_copy_groups * per_copy + i % per_copy_groups * ns; }
  int64_t count(int64_t i) const { return std::min(ns, (i / per_copy_groups + 1) * per_copy - first(i)); }
};

SampleGroups sample_groups(int64_t samples, int64_t copies, int64_t ns) {
  const int64_t per_copy = samples / copies, groups = ceil_div(per_copy, ns);
  return {per_copy, ns, groups, copies * groups};
}

}  // namespace

// y (N, O, ho, wo) = the convolution of x (N, C, H, W) with the kept values (rows: the copies' output channels, in
// the values' order, `off`: where each reads the sample's padded phase stack), plus bias (K, O) if it has entries,
// then max(0, .) if `relu`, then a 2x2 max-pool (stride 2) if `pool`: fused in, no pass of their own over the output.
// Returns y (pooled: (N, O, ho / 2, wo / 2)) and, pooled, each window's choice (uint8, as y; else no elements)
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& values, const at::Tensor& bias,
                                const at::Tensor& ptr, int64_t blocks, const at::Tensor& off, const at::Tensor& masks,
                                const std::vector<int64_t>& geometry, bool relu, bool pool) {
  const Geometry g = geometry_of(geometry);
  check_sample(x, g.C, g.H, g.W, "the input");
  check_float(values, "values");
  const Plan plan = plan_of(g.length());
  const int64_t N = x.size(0), O = g.O, Lp = plan.padded();
  const Entries e = entries_of(ptr, blocks, off, masks, O);
  TORCH_CHECK(N % e.copies == 0 && values.numel() == off.numel(), "sparse_conv: samples or values do not match");
  const bool has_bias = bias.numel() > 0;
  if (has_bias) check_float(bias, "bias");
  TORCH_CHECK(!has_bias || bias.numel() == e.copies * O, "sparse_conv: the bias must be (copies, out channels)");
  TORCH_CHECK(!pool || (relu && g.ho >= 2 && g.wo >= 2), "sparse_conv: a fused max-pool follows a fused ReLU");
  const int64_t yh = pool ? g.ho / 2 : g.ho, yw = pool ? g.wo / 2 : g.wo;
  at::Tensor y = at::empty({N, O, yh, yw}, x.options());
  at::Tensor where = at::empty({pool ? N : 0, O, yh, yw}, x.options().dtype(at::kByte));
  uint8_t* wp = pool ? where.data_ptr<uint8_t>() : nullptr;
  const float *xp = x.data_ptr<float>(), *w = values.data_ptr<float>();
  const float* b = has_bias ? bias.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  with_nv(plan.nv, [&](auto nv) {
    constexpr int64_t NV = decltype(nv)::value, NS = summed_samples(NV);
    const SampleGroups groups = sample_groups(N, e.copies, NS);
    const int64_t block = row_block(groups.count_all, O), tasks = ceil_div(O, block);
    at::parallel_for(0, groups.count_all * tasks, 1, [&](int64_t lo, int64_t hi) {
      at::Tensor stack_buffer, out_buffer;
      float* stacks = scratch(stack_buffer, NS * g.stack());
      float* out = scratch(out_buffer, NS * block * Lp);
      Prefetcher ahead;
      const int64_t sample = g.C * g.H * g.W;
      for (int64_t task = lo, built = -1; task < hi; task++) {
        const int64_t group = task / tasks, r0 = task % tasks * block, r1 = std::min(O, r0 + block);
        const int64_t n = groups.first(group), ns = groups.count(group), first = n / groups.per_copy * O;
        if (group != built) {
          for (int64_t q = 0; q < ns; q++) build_stack(g, xp + (n + q) * sample, stacks + q * g.stack());
          built = group;
          const bool next = group + 1 < groups.count_all;
          ahead.start({{next ? xp + groups.first(group + 1) * sample : nullptr,
                        next ? 4 * groups.count(group + 1) * sample : 0}}, plan.chunks * e.blocks * (r1 - r0));
        }
        shifted_rows<NV, NS>(plan, e, w, stacks, g.stack(), first, r0, r1, out, Lp, block * Lp, ahead,
                             [&](int64_t q, int64_t r, const float* plane) {
          if (q >= ns) return;
          const int64_t at = ((n + q) * O + r) * yh * yw;
          const float* bias_r = b ? b + first + r : nullptr;
          if (pool)
            crop_pooled(g, plane, bias_r, yp + at, wp + at);
          else
            relu ? crop<true>(g, plane, bias_r, yp + at) : crop<false>(g, plane, bias_r, yp + at);
        });
      }
      end_streams();
    });
  });
  return {y, where};
}

// The input's gradient gx (N, C, H, W) from the output's gradient (grad_source_of: gy, and a fused ReLU's output and
// max-pool's choices, if any): each input plane (phase, channel) sums the output gradient planes of its transposed
// entries (colptr, their values in that order), read at off_back in the sample's output gradient planes padded with
// zero margins (GradSource)
at::Tensor input_grad(const at::Tensor& gy, const at::Tensor& values, const at::Tensor& colptr, int64_t blocks,
                      const at::Tensor& off_back, const at::Tensor& masks, const std::vector<int64_t>& geometry,
                      const at::Tensor& relu_out, const at::Tensor& where) {
  const Geometry g = geometry_of(geometry);
  const GradSource source = grad_source_of(g, gy, relu_out, where);
  check_float(values, "values");
  const Plan plan = plan_of(g.back_rows * g.wq);
  const int64_t N = gy.size(0), R = g.sy * g.sx * g.C, Lp = plan.padded(), P = g.grad_plane();
  const Entries e = entries_of(colptr, blocks, off_back, masks, R);
  TORCH_CHECK(N % e.copies == 0 && values.numel() == off_back.numel(), "sparse_conv: samples or values differ");
  at::Tensor gx = at::empty({N, g.C, g.H, g.W}, gy.options());  // each element written once (fold)
  const float* w = values.data_ptr<float>();
  float* gxp = gx.data_ptr<float>();
  with_nv(plan.nv, [&](auto nv) {
    constexpr int64_t NV = decltype(nv)::value, NS = summed_samples(NV);
    const SampleGroups groups = sample_groups(N, e.copies, NS);
    const int64_t block = row_block(groups.count_all, R), tasks = ceil_div(R, block);
    at::parallel_for(0, groups.count_all * tasks, 1, [&](int64_t lo, int64_t hi) {
      at::Tensor grad_buffer, out_buffer;
      float* grads = scratch(grad_buffer, NS * g.O * P);
      float* out = scratch(out_buffer, NS * block * Lp);
      Prefetcher ahead;
      for (int64_t task = lo, built = -1; task < hi; task++) {
        const int64_t group = task / tasks, r0 = task % tasks * block, r1 = std::min(R, r0 + block);
        const int64_t n = groups.first(group), ns = groups.count(group);
        if (group != built) {
          for (int64_t q = 0; q < ns; q++)
            for (int64_t o = 0; o < g.O; o++)
              source.fill(g, (n + q) * g.O + o, g.top_rows, grads + (q * g.O + o) * P);
          built = group;
          if (group + 1 < groups.count_all)
            source.prefetch(ahead, groups.first(group + 1) * g.O, groups.count(group + 1) * g.O,
                            plan.chunks * e.blocks * (r1 - r0));
        }
        shifted_rows<NV, NS>(plan, e, w, grads, g.O * P, n / groups.per_copy * R, r0, r1, out, Lp, block * Lp, ahead,
                             [&](int64_t q, int64_t r, const float* plane) {
          if (q < ns) fold(g, r, plane, gxp + (n + q) * g.C * g.H * g.W);
        });
      }
      end_streams();
    });
  });
  return gx;
}

// The gradients of the kept values (in their order) and of the bias (K, O): d values[p] = sum over the samples n of
// p's copy and the outputs i of gy[n, o, i] * stack_n[off[p] + i], o being p's output channel
std::vector<at::Tensor> kept_grad(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& ptr, int64_t blocks,
                                  const at::Tensor& off, const at::Tensor& masks,
                                  const std::vector<int64_t>& geometry, const at::Tensor& relu_out,
                                  const at::Tensor& where) {
  const Geometry g = geometry_of(geometry);
  const GradSource source = grad_source_of(g, gy, relu_out, where);
  check_sample(x, g.C, g.H, g.W, "the input");
  const Plan plan = plan_of(g.length());
  const int64_t N = x.size(0), R = g.O, Lp = plan.padded(), P = ceil_div(Lp, g.wq) * g.wq;
  const Entries e = entries_of(ptr, blocks, off, masks, R);
  TORCH_CHECK(N % e.copies == 0 && gy.size(0) == N, "sparse_conv: the samples do not match");
  at::Tensor grad = at::empty({off.numel()}, x.options()), grad_bias = at::empty({e.copies, R}, x.options());
  const float* xp = x.data_ptr<float>();
  float *dw = grad.data_ptr<float>(), *db = grad_bias.data_ptr<float>();
  const int64_t per_copy = N / e.copies, sample = g.C * g.H * g.W;
  // tasks (copy, block of rows), each over all the copy's samples: few, since each builds all their stacks; one
  // sample at a time: blocks whose lane-wise sums fit in L2 (ACC_BYTES)
  const int64_t per_row = std::max<int64_t>(1, off.numel() / (e.copies * R));
  const int64_t fits = plan_of(g.length()).nv <= SHORT_CHUNK ? R : std::max<int64_t>(1, ACC_BYTES / (64 * per_row));
  const int64_t block = std::min(ceil_div(R, ceil_div(2 * at::get_num_threads(), e.copies)), fits);
  const int64_t tasks = ceil_div(R, block);
  with_nv(plan.nv, [&](auto nv) {
    constexpr int64_t NV = decltype(nv)::value, NS = samples_at_once(NV);
    at::parallel_for(0, e.copies * tasks, 1, [&](int64_t lo, int64_t hi) {
      at::Tensor stack_buffer, grad_buffer;
      float* stacks = scratch(stack_buffer, NS * g.stack());
      float* grads = scratch(grad_buffer, NS * block * P);
      std::vector<Vec> acc, bias_acc;
      Prefetcher ahead;
      for (int64_t task = lo; task < hi; task++) {
        const int64_t k = task / tasks, r0 = task % tasks * block, r1 = std::min(R, r0 + block);
        if (r0 >= r1) continue;
        const int64_t first = e.begin(k * R + r0), last = e.begin(k * R + r1);
        std::fill(dw + first, dw + last, 0.f);
        if (NS == 1) acc.assign(last - first, Vec(0.f));
        bias_acc.assign(r1 - r0, Vec(0.f));
        for (int64_t n = k * per_copy, ns; n < (k + 1) * per_copy; n += ns) {
          ns = std::min(NS, (k + 1) * per_copy - n);
          for (int64_t q = 0; q < NS; q++) {  // the last group of a copy: missing samples are zeros
            if (q < ns)
              build_stack(g, xp + (n + q) * sample, stacks + q * g.stack());
            else
              std::fill(stacks + q * g.stack(), stacks + (q + 1) * g.stack(), 0.f);
            for (int64_t r = r0; r < r1; r++) {
              float* plane = grads + (q * block + r - r0) * P;
              if (q >= ns) {
                std::fill(plane, plane + P, 0.f);
                continue;
              }
              source.fill(g, (n + q) * R + r, 0, plane);
              Vec& total = bias_acc[r - r0];  // the bias's gradient, in a fixed order too
              for (int64_t i = 0; i < Lp; i += V) total = total + Vec::loadu(plane + i);
            }
          }
          const int64_t next = n + ns, next_ns = std::min(NS, (k + 1) * per_copy - next);
          if (next_ns > 0)  // the next samples' inputs, and their gradients' rows (of the first only, if not all)
            source.prefetch(ahead, next * R + r0, r1 - r0 == R ? next_ns * R : r1 - r0,
                            plan.chunks * e.blocks * (r1 - r0), {xp + next * sample, 4 * next_ns * sample});
          for (int64_t c = 0; c < plan.chunks; c++) {
            const float* in[NS];
            for (int64_t q = 0; q < NS; q++) in[q] = stacks + q * g.stack() + c * NV * V;
            for (int64_t b = 0; b < e.blocks; b++) {  // a block's planes (this chunk of them) stay in L1 over the rows
              for (int64_t r = r0; r < r1; r++) {
                ahead.step();
                const int64_t row = k * R + r, p = e.begin(row, b), end = e.begin(row, b + 1);
                const float* gr[NS];
                for (int64_t q = 0; q < NS; q++) gr[q] = grads + (q * block + r - r0) * P + c * NV * V;
                if (p == end) continue;
                if (e.mask)
                  chunk_dots<NV, NS, true>(gr, in, e.off, e.mask, p, end, acc.data() + (p - first), dw + p);
                else
                  chunk_dots<NV, NS, false>(gr, in, e.off, e.mask, p, end, acc.data() + (p - first), dw + p);
              }
            }
          }
        }
        if (NS == 1)
          for (int64_t p = first; p < last; p++) dw[p] = sum(acc[p - first]);
        for (int64_t r = r0; r < r1; r++) db[k * R + r] = sum(bias_acc[r - r0]);
      }
    });
  });
  return {grad, grad_bias};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("padded_length", &padded_length, "the outputs computed per plane of `length` outputs");
  m.def("chunk_length", &chunk_length, "the outputs of a plane summed at once");
  m.def("grad_samples", &grad_samples, "the samples whose chunks kept_grad reads at once");
  m.def("sum_samples", &sum_samples, "the samples whose chunks forward and input_grad sum at once");
  m.def("masked_loads", &masked_loads, "whether lane masks (the compact layout) are available");
  m.def("forward", &forward, "stacked sparse Conv2d forward (float32, CPU)");
  m.def("input_grad", &input_grad, "the input's gradient of a stacked sparse Conv2d (float32, CPU)");
  m.def("kept_grad", &kept_grad, "the gradients of the kept values and the bias (float32, CPU)");
}
