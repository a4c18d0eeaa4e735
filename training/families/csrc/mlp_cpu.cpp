// Fused CPU kernels for batched ReLU MLPs over stacked parameters [n_models, ...].
//
// They replace the thin layers' matmuls (the first layer has few inputs, the output layer few
// outputs), which MKL runs far below peak, together with the bias, activation and activation-
// backward passes around them: each kernel is one pass over a [n, B, H] activation. Every model is
// computed by one thread with the same code and summation order whatever n is (batch invariance).
// Requires float32, contiguous tensors and H % 16 == 0 (checked by the Python caller).
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <algorithm>
#include <vector>

namespace {
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));  // unaligned loads from float*
inline v16 ld(const float* p) { return *(const v16u*)p; }
inline void st(float* p, v16 v) { *(v16u*)p = v; }
inline v16 bc(float x) { return v16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
#ifndef TK
#define TK 4
#define TV 4
#endif
inline v16 relu(v16 v) { const v16 z = v16{}; return v > z ? v : z; }
inline float hsum(v16 v) {  // a fixed pairwise tree: 4 dependent adds, not 15
  float t[8];
  for (int l = 0; l < 8; ++l) t[l] = v[l] + v[l + 8];
  for (int l = 0; l < 4; ++l) t[l] += t[l + 4];
  for (int l = 0; l < 2; ++l) t[l] += t[l + 2];
  return t[0] + t[1];
}

inline void check(const at::Tensor& t, const char* what) {  // empty tensors stand for "not given"
  TORCH_CHECK(t.numel() == 0 || (t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous()),
              what, ": expected a contiguous float32 CPU tensor");
}

// rows i, i+1 (R = 2) or i (R = 1) of out[:, j0 : j0 + 16 NV] = relu(x @ wt + b)
template <int NV, int R>
inline void first_rows(const float* xi, int64_t d, const float* wt, int64_t H, const float* bm, float* oi) {
  v16 a[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) a[r][v] = ld(bm + 16 * v);
  for (int64_t k = 0; k < d; ++k) {
    const float* wk = wt + k * H;
    v16 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = ld(wk + 16 * v);
    for (int r = 0; r < R; ++r) {
      const v16 xv = bc(xi[r * d + k]);
      for (int v = 0; v < NV; ++v) a[r][v] += xv * w[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) st(oi + r * H + 16 * v, relu(a[r][v]));
}

template <int NV>
void first_block(const float* xm, int64_t B, int64_t d, const float* wt, int64_t H, const float* bm, float* om) {
  int64_t i = 0;
  for (; i + 2 <= B; i += 2) first_rows<NV, 2>(xm + i * d, d, wt, H, bm, om + i * H);
  for (; i < B; ++i) first_rows<NV, 1>(xm + i * d, d, wt, H, bm, om + i * H);
}

// out = relu(x @ w^T + b): x [n, B, d], w [n, H, d], b [n, H], out [n, B, H]
void first_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& out) {
  check(x, "x"); check(w, "w"); check(b, "b"); check(out, "out");
  const int64_t n = x.size(0), B = x.size(1), d = x.size(2), H = w.size(1);
  const float* X = x.data_ptr<float>();
  const float* W = w.data_ptr<float>();
  const float* Bi = b.data_ptr<float>();
  float* O = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t m0, int64_t m1) {
    std::vector<float> wt(d * H);
    for (int64_t m = m0; m < m1; ++m) {
      const float* wm = W + m * H * d;
      for (int64_t k = 0; k < d; ++k)
        for (int64_t j = 0; j < H; ++j) wt[k * H + j] = wm[j * d + k];
      const float* xm = X + m * B * d;
      const float* bm = Bi + m * H;
      float* om = O + m * B * H;
      int64_t j0 = 0;
      for (; j0 + 64 <= H; j0 += 64) first_block<4>(xm, B, d, wt.data() + j0, H, bm + j0, om + j0);
      for (; j0 < H; j0 += 16) first_block<1>(xm, B, d, wt.data() + j0, H, bm + j0, om + j0);
    }
  });
}

// The first layer's gradients from the gradient at its output: gw = g^T @ x [n, H, d] and, unless
// gb is empty, gb = the sum of g over B [n, H]. g [n, B, H], x [n, B, d]. Unless h is empty, g is
// first masked by the ReLU's output h [n, B, H] (g * (h > 0), never stored): g is then the
// gradient at the activation's output, e.g. g @ W of the layer above.
template <bool MASK>
inline v16 grad_at(const float* g, const float* h) {
  const v16 v = ld(g);
  if (!MASK) return v;
  return ld(h) > v16{} ? v : v16{};
}

// One KB x (16 NV) tile of the transposed weight gradient gwt [dp, H] (a per-thread buffer) over
// rows [i0, i1), accumulated in registers onto what gwt holds (zero at i0 == 0).
template <bool MASK, bool BIAS, int KB, int NV>
void first_backward_tile(const float* gm, const float* hm, const float* xp, int64_t i0, int64_t i1, int64_t H,
                         int64_t dp, int64_t kb, int64_t j0, float* gwt, float* gbm) {
  v16 a[KB][NV], sb[NV];
  const bool bias = BIAS && kb == 0;
  for (int k = 0; k < KB; ++k)
    for (int v = 0; v < NV; ++v) a[k][v] = i0 == 0 ? v16{} : ld(gwt + (kb + k) * H + j0 + 16 * v);
  for (int v = 0; v < NV; ++v) sb[v] = i0 == 0 || !bias ? v16{} : ld(gbm + j0 + 16 * v);
  for (int64_t i = i0; i < i1; ++i) {
    v16 gv[NV];
    for (int v = 0; v < NV; ++v) gv[v] = grad_at<MASK>(gm + i * H + j0 + 16 * v, hm + i * H + j0 + 16 * v);
    const float* xi = xp + i * dp + kb;
    for (int k = 0; k < KB; ++k) {
      const v16 xv = bc(xi[k]);
      for (int v = 0; v < NV; ++v) a[k][v] += xv * gv[v];
    }
    if (bias)
      for (int v = 0; v < NV; ++v) sb[v] += gv[v];
  }
  for (int k = 0; k < KB; ++k)
    for (int v = 0; v < NV; ++v) st(gwt + (kb + k) * H + j0 + 16 * v, a[k][v]);
  if (bias)
    for (int v = 0; v < NV; ++v) st(gbm + j0 + 16 * v, sb[v]);
}

// Rows in chunks that stay in L1 while every tile passes over them.
template <bool MASK, bool BIAS>
void first_backward_model(const float* gm, const float* hm, const float* xp, int64_t B, int64_t H, int64_t d,
                          int64_t dp, float* gwt, float* gwm, float* gbm) {
  const int64_t rows = std::max<int64_t>(1, (MASK ? 4096 : 8192) / H);  // 16 KB of g (and of h)
  for (int64_t i0 = 0; i0 < B; i0 += rows) {
    const int64_t i1 = std::min(B, i0 + rows);
    for (int64_t kb = 0; kb < dp; kb += TK) {
      int64_t j0 = 0;
      for (; j0 + 16 * TV <= H; j0 += 16 * TV)
        first_backward_tile<MASK, BIAS, TK, TV>(gm, hm, xp, i0, i1, H, dp, kb, j0, gwt, gbm);
      for (; j0 < H; j0 += 16) first_backward_tile<MASK, BIAS, TK, 1>(gm, hm, xp, i0, i1, H, dp, kb, j0, gwt, gbm);
    }
  }
  for (int64_t j = 0; j < H; ++j)
    for (int64_t k = 0; k < d; ++k) gwm[j * d + k] = gwt[k * H + j];
}

void first_backward(const at::Tensor& g, const at::Tensor& h, const at::Tensor& x, const at::Tensor& gw,
                    const at::Tensor& gb) {
  check(g, "g"); check(h, "h"); check(x, "x"); check(gw, "gw"); check(gb, "gb");
  const int64_t n = g.size(0), B = g.size(1), H = g.size(2), d = x.size(2);
  const int64_t dp = (d + TK - 1) / TK * TK;
  const bool mask = h.numel() > 0, bias = gb.numel() > 0;
  const float* G = g.data_ptr<float>();
  const float* Hp = mask ? h.data_ptr<float>() : nullptr;
  const float* X = x.data_ptr<float>();
  float* GW = gw.data_ptr<float>();
  float* GB = bias ? gb.data_ptr<float>() : nullptr;
  at::parallel_for(0, n, 1, [&](int64_t m0, int64_t m1) {
    std::vector<float> xp(d == dp ? 0 : B * dp, 0.f), gwt(dp * H);  // x zero-padded to dp columns
    for (int64_t m = m0; m < m1; ++m) {
      const float* xm = X + m * B * d;
      if (d != dp)
        for (int64_t i = 0; i < B; ++i)
          for (int64_t k = 0; k < d; ++k) xp[i * dp + k] = xm[i * d + k];
      const float* xs = d == dp ? xm : xp.data();
      const float* gm = G + m * B * H;
      const float* hm = mask ? Hp + m * B * H : nullptr;
      float* gwm = GW + m * H * d;
      float* gbm = bias ? GB + m * H : nullptr;
      if (mask && bias) first_backward_model<true, true>(gm, hm, xs, B, H, d, dp, gwt.data(), gwm, gbm);
      else if (mask) first_backward_model<true, false>(gm, hm, xs, B, H, d, dp, gwt.data(), gwm, gbm);
      else if (bias) first_backward_model<false, true>(gm, hm, xs, B, H, d, dp, gwt.data(), gwm, gbm);
      else first_backward_model<false, false>(gm, hm, xs, B, H, d, dp, gwt.data(), gwm, gbm);
    }
  });
}

// Output-layer kernels are templated on the class count (OC > 0: known at compile time, so the
// per-class accumulators live in registers; OC == 0: any count up to 16, read at run time).
constexpr int OMAX = 16;

// The output layer, class-major, on the last hidden layer's activation h = relu(a + b), which is
// never stored (out_backward recomputes it); when b is empty, a is that activation already:
// out[m, o, i] = bo[m, o] + sum_j h[m, i, j] wo[m, o, j].
// a [n, B, H], b [n, H] or [0], wo [n, O, H], bo [n, O], out [n, O, B]
template <int OC>
void out_forward_models(int64_t m0, int64_t m1, int64_t B, int64_t H, int64_t O_, const float* A, const float* Bi,
                        const float* WO, const float* BO, float* OUT) {
  const int64_t O = OC > 0 ? OC : O_;
  for (int64_t m = m0; m < m1; ++m) {
    const float* am = A + m * B * H;
    const float* bm = Bi ? Bi + m * H : nullptr;
    const float* wom = WO + m * O * H;
    for (int64_t i = 0; i < B; ++i) {
      const float* ai = am + i * H;
      v16 s[OC > 0 ? OC : OMAX];
      for (int64_t o = 0; o < O; ++o) s[o] = v16{};
      for (int64_t j = 0; j < H; j += 16) {
        const v16 h = bm ? relu(ld(ai + j) + ld(bm + j)) : ld(ai + j);
        for (int64_t o = 0; o < O; ++o) s[o] += h * ld(wom + o * H + j);
      }
      for (int64_t o = 0; o < O; ++o) OUT[(m * O + o) * B + i] = BO[m * O + o] + hsum(s[o]);
    }
  }
}

void out_forward(const at::Tensor& a, const at::Tensor& b, const at::Tensor& wo, const at::Tensor& bo,
                 const at::Tensor& out) {
  check(a, "a"); check(b, "b"); check(wo, "wo"); check(bo, "bo"); check(out, "out");
  const int64_t n = a.size(0), B = a.size(1), H = a.size(2), O = wo.size(1);
  TORCH_CHECK(O <= OMAX, "out_forward: at most ", OMAX, " outputs");
  const float* A = a.data_ptr<float>();
  const float* Bi = b.numel() > 0 ? b.data_ptr<float>() : nullptr;
  const float* WO = wo.data_ptr<float>();
  const float* BO = bo.data_ptr<float>();
  float* OUT = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t m0, int64_t m1) {
    switch (O) {
      case 1: return out_forward_models<1>(m0, m1, B, H, O, A, Bi, WO, BO, OUT);
      case 2: return out_forward_models<2>(m0, m1, B, H, O, A, Bi, WO, BO, OUT);
      case 3: return out_forward_models<3>(m0, m1, B, H, O, A, Bi, WO, BO, OUT);
      case 4: return out_forward_models<4>(m0, m1, B, H, O, A, Bi, WO, BO, OUT);
      default: return out_forward_models<0>(m0, m1, B, H, O, A, Bi, WO, BO, OUT);
    }
  });
}

// Backward through the output layer and the last hidden ReLU, from g [n, B, O] (the loss gradient
// at the outputs) and the last hidden layer's pre-activation a [n, B, H] and bias b [n, H] (or,
// with b empty, its activation in a): the output weights' gradient gwo = g^T h [n, O, H] with
// h = relu(a + b); then a is overwritten with the gradient at the pre-activation,
// (g @ wo) * (h > 0), and gb [n, H] gets its sum over B (the hidden bias gradient).
template <int OC>
void out_backward_models(int64_t m0, int64_t m1, int64_t B, int64_t H, int64_t O_, const float* G, const float* WO,
                         float* A, const float* Bi, float* GWO, float* GB) {
  const int64_t O = OC > 0 ? OC : O_;
  for (int64_t m = m0; m < m1; ++m) {
    const float* gm = G + m * B * O;
    const float* wom = WO + m * O * H;
    float* am = A + m * B * H;
    for (int64_t j = 0; j < H; j += 16) {
      v16 w[OC > 0 ? OC : OMAX], gw[OC > 0 ? OC : OMAX];
      for (int64_t o = 0; o < O; ++o) {
        w[o] = ld(wom + o * H + j);
        gw[o] = v16{};
      }
      const v16 bj = Bi ? ld(Bi + m * H + j) : v16{};
      v16 sb = v16{};
      for (int64_t i = 0; i < B; ++i) {
        float* ai = am + i * H + j;
        const v16 hv = Bi ? relu(ld(ai) + bj) : ld(ai);
        const float* gi = gm + i * O;
        v16 dh = v16{};
        for (int64_t o = 0; o < O; ++o) {
          const v16 go = bc(gi[o]);
          dh += go * w[o];
          gw[o] += go * hv;
        }
        dh = hv > v16{} ? dh : v16{};
        st(ai, dh);
        sb += dh;
      }
      for (int64_t o = 0; o < O; ++o) st(GWO + (m * O + o) * H + j, gw[o]);
      st(GB + m * H + j, sb);
    }
  }
}

void out_backward(const at::Tensor& g, const at::Tensor& wo, const at::Tensor& a, const at::Tensor& b,
                  const at::Tensor& gwo, const at::Tensor& gb) {
  check(g, "g"); check(wo, "wo"); check(a, "a"); check(b, "b"); check(gwo, "gwo"); check(gb, "gb");
  const int64_t n = a.size(0), B = a.size(1), H = a.size(2), O = wo.size(1);
  TORCH_CHECK(O <= OMAX, "out_backward: at most ", OMAX, " outputs");
  const float* G = g.data_ptr<float>();
  const float* WO = wo.data_ptr<float>();
  float* A = a.data_ptr<float>();
  const float* Bi = b.numel() > 0 ? b.data_ptr<float>() : nullptr;
  float* GWO = gwo.data_ptr<float>();
  float* GB = gb.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t m0, int64_t m1) {
    switch (O) {
      case 1: return out_backward_models<1>(m0, m1, B, H, O, G, WO, A, Bi, GWO, GB);
      case 2: return out_backward_models<2>(m0, m1, B, H, O, G, WO, A, Bi, GWO, GB);
      case 3: return out_backward_models<3>(m0, m1, B, H, O, G, WO, A, Bi, GWO, GB);
      case 4: return out_backward_models<4>(m0, m1, B, H, O, G, WO, A, Bi, GWO, GB);
      default: return out_backward_models<0>(m0, m1, B, H, O, G, WO, A, Bi, GWO, GB);
    }
  });
}
}  // namespace

TORCH_LIBRARY(BASIN_KERNELS, m) {
  m.def("first_forward(Tensor x, Tensor w, Tensor b, Tensor(a!) out) -> ()");
  m.def("first_backward(Tensor g, Tensor h, Tensor x, Tensor(a!) gw, Tensor(b!) gb) -> ()");
  m.def("out_forward(Tensor a, Tensor b, Tensor wo, Tensor bo, Tensor(a!) out) -> ()");
  m.def("out_backward(Tensor g, Tensor wo, Tensor(a!) a, Tensor b, Tensor(b!) gwo, Tensor(c!) gb) -> ()");
  m.impl("first_forward", c10::DispatchKey::CPU, TORCH_FN(first_forward));
  m.impl("first_backward", c10::DispatchKey::CPU, TORCH_FN(first_backward));
  m.impl("out_forward", c10::DispatchKey::CPU, TORCH_FN(out_forward));
  m.impl("out_backward", c10::DispatchKey::CPU, TORCH_FN(out_backward));
}
