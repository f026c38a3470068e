// Mamba-1's selective scan and causal depthwise convolution on the CPU: forward and backward.
//
// The recurrence and its gradients are those of selective_scan.py's docstring:
//
//     h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t          y_t = C_t . h_t + D u_t
//     g_t = dL/dh_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}
//
// Why a kernel: written with tensor ops, every step reads and writes the whole
// (batch, d_inner, d_state) state, so the scan is bound by memory traffic. Here one channel's
// state (d_state floats) lives in registers for the whole sequence, like mamba-ssm's CUDA
// kernel does per thread block. The backward recomputes the states (T x d_state floats per
// channel, in L1) instead of keeping them from the forward, so training keeps no trajectory.
//
// Work is split over batch rows (at::parallel_for, i.e. torch's threads), so that the sums over
// channels (dB, dC) are written by one thread each; the sums over the batch (dA, dD) are
// returned per row and summed by the caller. Results therefore do not depend on the thread
// count. Layouts (float32, contiguous): u, dt, y (batch, T, d_inner); B, C (batch, T, d_state);
// A (d_inner, d_state); D (d_inner).
//
// The convolution (and the SiLU after it) is the mixer's other element-wise stage: as tensor ops
// it is d_conv shifted multiply-adds forward and three times that backward, each a pass over the
// (batch, T, d_inner) activations; here it is one pass each way, the SiLU's input recomputed in
// the backward instead of kept.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

void check(const torch::Tensor& x, const char* name, int64_t dim) {
    TORCH_CHECK(x.device().is_cpu(), "selective scan (cpp): ", name, " must be on the CPU");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32, "selective scan (cpp): ", name, " must be float32");
    TORCH_CHECK(x.is_contiguous(), "selective scan (cpp): ", name, " must be contiguous");
    TORCH_CHECK(x.dim() == dim, "selective scan (cpp): ", name, " must have ", dim, " dimensions");
}

void check_all(const torch::Tensor& u, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
               const torch::Tensor& C, const torch::Tensor& D) {
    check(u, "u", 3); check(dt, "dt", 3); check(A, "A", 2); check(B, "B", 3); check(C, "C", 3); check(D, "D", 1);
    TORCH_CHECK(dt.sizes() == u.sizes(), "selective scan (cpp): dt and u differ in shape");
    TORCH_CHECK(A.size(0) == u.size(2) && D.size(0) == u.size(2), "selective scan (cpp): A, D must have d_inner rows");
    TORCH_CHECK(B.size(0) == u.size(0) && B.size(1) == u.size(1) && B.size(2) == A.size(1) && C.sizes() == B.sizes(),
                "selective scan (cpp): B, C must be (batch, T, d_state)");
}

}  // namespace

constexpr int64_t W = 16;  // channels per block: one AVX-512 register of floats (two AVX2 ones)

// Loop order: the recurrence is diagonal in the state index n, so each (channel block, n) runs
// its whole sequence with its state (and, in the backward, its gradient) in registers; what
// couples the n (y's and dL/d(dt u)'s sums over n) is accumulated per step in small buffers.
// ``Lanes`` is W for full blocks (a constant trip count the compiler keeps in registers) and
// 0 for the last, partial block, whose width ``lanes`` is read at run time.
//
// Options, as mamba-ssm's selective_scan_fn: dt may come before its softplus (``softplus``), and
// a gate z multiplies the output by SiLU(z) (the mixer's y * SiLU(z)); the forward then also
// returns the ungated output, which the backward needs. Both save the element-wise passes (and
// their backward passes) that the tensor ops would make over the (batch, T, d_inner) activations.

struct Rows {  // the pointers of one batch row, at channel c0
    const float *u, *dt, *z, *B, *C, *At, *D;  // z: nullptr when there is no gate
    int64_t T, L, N, zT;  // zT: z's step stride (z may be a view into in_proj's output)
    bool softplus;
};

inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }  // torch's threshold
// exp's argument capped at 80 (exp(80) ~ 5.5e34, so sigmoid(x < -80) ~ 1.8e-35, not 0): under
// -ffast-math the vectorised 1 / (1 + exp(-x)) of x < -88, where exp overflows to inf, is NaN
// (a reciprocal estimate refined by a Newton step, inf * 0), not 0; a Mamba whose dt_proj drove
// a pre-softplus step below -88 trained on NaN gradients from then on
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(std::fmin(-x, 80.f))); }

// dts = dt (after the softplus) and dtu = dt u of one block, step by step
template <int64_t Lanes>
void step_sizes(const Rows& r, int64_t lanes_rt, float* __restrict dts, float* __restrict dtu) {
    const int64_t lanes = Lanes > 0 ? Lanes : lanes_rt, T = r.T, L = r.L;
    for (int64_t t = 0; t < T; ++t) {
        if (r.softplus) {
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) dts[t * W + k] = softplus(r.dt[t * L + k]);
        } else {
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) dts[t * W + k] = r.dt[t * L + k];
        }
#pragma omp simd
        for (int64_t k = 0; k < lanes; ++k) dtu[t * W + k] = dts[t * W + k] * r.u[t * L + k];
    }
}

template <int64_t Lanes>
void forward_block(const Rows& r, int64_t lanes_rt, float* __restrict y, float* __restrict y_ungated, float* __restrict dts,
                   float* __restrict dtu, float* __restrict acc) {
    const int64_t lanes = Lanes > 0 ? Lanes : lanes_rt, T = r.T, L = r.L, N = r.N;
    step_sizes<Lanes>(r, lanes, dts, dtu);
    std::fill(acc, acc + T * W, 0.f);
    for (int64_t n = 0; n < N; ++n) {
        const float* __restrict a = r.At + n * L;
        float h[W] = {0.f};
        for (int64_t t = 0; t < T; ++t) {
            const float Bn = r.B[t * N + n], Cn = r.C[t * N + n];
            float* __restrict acc_t = acc + t * W;
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) {
                h[k] = std::exp(dts[t * W + k] * a[k]) * h[k] + dtu[t * W + k] * Bn;
                acc_t[k] += h[k] * Cn;
            }
        }
    }
    for (int64_t t = 0; t < T; ++t) {
        if (r.z) {
            const float* __restrict z_t = r.z + t * r.zT;
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) {
                const float out = acc[t * W + k] + r.D[k] * r.u[t * L + k];
                y_ungated[t * L + k] = out;
                y[t * L + k] = out * z_t[k] * sigmoid(z_t[k]);
            }
        } else {
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) y[t * L + k] = acc[t * W + k] + r.D[k] * r.u[t * L + k];
        }
    }
}

struct Scan {  // the validated inputs of a call and the pointers into them
    torch::Tensor At;
    const float *u, *dt, *z, *B, *C, *At_, *D;
    int64_t batch, T, L, N, zB, zT;
};

Scan prepare(const torch::Tensor& u, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& B,
             const torch::Tensor& C, const torch::Tensor& D, const c10::optional<torch::Tensor>& z) {
    check_all(u, dt, A, B, C, D);
    Scan s;
    s.At = A.t().contiguous();  // (d_state, d_inner): W neighbouring channels of one state are contiguous
    s.u = u.data_ptr<float>(); s.dt = dt.data_ptr<float>(); s.At_ = s.At.data_ptr<float>();
    s.B = B.data_ptr<float>(); s.C = C.data_ptr<float>(); s.D = D.data_ptr<float>();
    s.batch = u.size(0); s.T = u.size(1); s.L = u.size(2); s.N = A.size(1);
    s.z = nullptr; s.zB = s.zT = 0;
    if (z.has_value()) {
        const auto& g = *z;
        TORCH_CHECK(g.device().is_cpu() && g.scalar_type() == torch::kFloat32 && g.sizes() == u.sizes() && g.stride(2) == 1,
                    "selective scan (cpp): z must be float32 on the CPU, u's shape, channels contiguous");
        s.z = g.data_ptr<float>(); s.zB = g.stride(0); s.zT = g.stride(1);
    }
    return s;
}

Rows rows_of(const Scan& s, int64_t b, int64_t c0, bool softplus) {
    const int64_t at = b * s.T * s.L + c0;
    return Rows{s.u + at, s.dt + at, s.z ? s.z + b * s.zB + c0 : nullptr, s.B + b * s.T * s.N, s.C + b * s.T * s.N,
                s.At_ + c0, s.D + c0, s.T, s.L, s.N, s.zT, softplus};
}

// Returns y, and with a gate also the ungated output (else an empty tensor).
std::vector<torch::Tensor> scan_forward(torch::Tensor u, torch::Tensor dt, torch::Tensor A, torch::Tensor B, torch::Tensor C,
                                        torch::Tensor D, c10::optional<torch::Tensor> z, bool softplus) {
    const Scan s = prepare(u, dt, A, B, C, D, z);
    auto y = torch::empty_like(u);
    auto y_ungated = s.z ? torch::empty_like(u) : torch::empty({0}, u.options());
    float *py = y.data_ptr<float>(), *pyu = s.z ? y_ungated.data_ptr<float>() : nullptr;
    at::parallel_for(0, s.batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> dts(s.T * W), dtu(s.T * W), acc(s.T * W);
        for (int64_t b = begin; b < end; ++b) {
            for (int64_t c0 = 0; c0 < s.L; c0 += W) {
                const int64_t at = b * s.T * s.L + c0;
                const Rows r = rows_of(s, b, c0, softplus);
                float* yu = pyu ? pyu + at : nullptr;
                if (s.L - c0 >= W) forward_block<W>(r, W, py + at, yu, dts.data(), dtu.data(), acc.data());
                else forward_block<0>(r, s.L - c0, py + at, yu, dts.data(), dtu.data(), acc.data());
            }
        }
    });
    return {y, y_ungated};
}

struct Grads {  // where one batch row's block writes its gradients
    float *du, *ddt, *dz, *dA, *dD, *dB_lanes, *dC_lanes;
};

struct Work {  // one thread's buffers for a block, T x W floats each
    float *dts, *dtu, *dy, *gB, *gdtA, *hist, *decay;
};

template <int64_t Lanes>
void backward_block(const Rows& r, const float* __restrict dout, const float* __restrict y_ungated, int64_t lanes_rt,
                    const Grads& out, const Work& w) {
    const int64_t lanes = Lanes > 0 ? Lanes : lanes_rt, T = r.T, L = r.L, N = r.N;
    float* __restrict dts = w.dts;
    float* __restrict dtu = w.dtu;
    float* __restrict dy = w.dy;  // dL/dy of the ungated output
    float* __restrict gB = w.gB;
    float* __restrict gdtA = w.gdtA;
    float* __restrict hist = w.hist;
    float* __restrict decay = w.decay;
    step_sizes<Lanes>(r, lanes, dts, dtu);
    for (int64_t t = 0; t < T; ++t) {
        if (r.z) {
            const float* __restrict z_t = r.z + t * r.zT;
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) {
                const float sig = sigmoid(z_t[k]);
                dy[t * W + k] = dout[t * L + k] * z_t[k] * sig;
                out.dz[t * L + k] = dout[t * L + k] * y_ungated[t * L + k] * sig * (1.f + z_t[k] * (1.f - sig));
            }
        } else {
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) dy[t * W + k] = dout[t * L + k];
        }
    }
    std::fill(gB, gB + T * W, 0.f);
    std::fill(gdtA, gdtA + T * W, 0.f);
    for (int64_t n = 0; n < N; ++n) {
        const float* __restrict a = r.At + n * L;
        float h[W] = {0.f};
        for (int64_t t = 0; t < T; ++t) {  // recompute the states h_0 .. h_{T-1} and the decays
            const float Bn = r.B[t * N + n];
            float* __restrict dC_tn = out.dC_lanes + (t * N + n) * W;
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) {
                const float dec = std::exp(dts[t * W + k] * a[k]);
                h[k] = dec * h[k] + dtu[t * W + k] * Bn;
                decay[t * W + k] = dec;
                hist[t * W + k] = h[k];
                dC_tn[k] += h[k] * dy[t * W + k];
            }
        }
        float g[W] = {0.f}, dA[W] = {0.f};
        for (int64_t t = T - 1; t >= 0; --t) {
            const float* __restrict h_prev = hist + (t - 1) * W;  // read only for t > 0
            const float Bn = r.B[t * N + n], Cn = r.C[t * N + n];
            float* __restrict dB_tn = out.dB_lanes + (t * N + n) * W;
#pragma omp simd
            for (int64_t k = 0; k < lanes; ++k) {
                const float g_t = g[k] + dy[t * W + k] * Cn;  // dL/dh_t
                const float carry = t > 0 ? g_t * decay[t * W + k] * h_prev[k] : 0.f;  // dL/d(dt_t A)
                gB[t * W + k] += g_t * Bn;
                gdtA[t * W + k] += carry * a[k];
                dA[k] += carry * dts[t * W + k];
                dB_tn[k] += g_t * dtu[t * W + k];
                g[k] = g_t * decay[t * W + k];
            }
        }
#pragma omp simd
        for (int64_t k = 0; k < lanes; ++k) out.dA[n * L + k] = dA[k];
    }
    float dD[W] = {0.f};
    for (int64_t t = 0; t < T; ++t) {
        const float* __restrict u_t = r.u + t * L;
#pragma omp simd
        for (int64_t k = 0; k < lanes; ++k) {
            const float ddt = gdtA[t * W + k] + u_t[k] * gB[t * W + k];  // dL/d(dt after the softplus)
            out.ddt[t * L + k] = r.softplus ? ddt * sigmoid(r.dt[t * L + k]) : ddt;
            out.du[t * L + k] = dts[t * W + k] * gB[t * W + k] + r.D[k] * dy[t * W + k];
            dD[k] += dy[t * W + k] * u_t[k];
        }
    }
    for (int64_t k = 0; k < lanes; ++k) out.dD[k] = dD[k];
}

// Returns du, ddt, dA per batch row (batch, d_state, d_inner), dB, dC, dD per batch row (batch, d_inner),
// and dz (empty without a gate). ``y_ungated`` is the forward's second output (used only with a gate).
std::vector<torch::Tensor> scan_backward(torch::Tensor u, torch::Tensor dt, torch::Tensor A, torch::Tensor B,
                                         torch::Tensor C, torch::Tensor D, c10::optional<torch::Tensor> z, bool softplus,
                                         torch::Tensor y_ungated, torch::Tensor dout) {
    const Scan s = prepare(u, dt, A, B, C, D, z);
    check(dout, "dy", 3);
    TORCH_CHECK(dout.sizes() == u.sizes(), "selective scan (cpp): dy and u differ in shape");
    if (s.z) {
        check(y_ungated, "y_ungated", 3);
        TORCH_CHECK(y_ungated.sizes() == u.sizes(), "selective scan (cpp): y_ungated and u differ in shape");
    }
    const int64_t batch = s.batch, T = s.T, L = s.L, N = s.N;
    auto du_ = torch::empty_like(u), ddt = torch::empty_like(u);
    auto dz = s.z ? torch::empty_like(u) : torch::empty({0}, u.options());
    auto dA_rows = torch::empty({batch, N, L}, u.options());
    auto dB = torch::empty_like(B), dC = torch::empty_like(C);
    auto dD_rows = torch::empty({batch, L}, u.options());
    const float* pdout = dout.data_ptr<float>();
    const float* pyu = s.z ? y_ungated.data_ptr<float>() : nullptr;
    float *pdu = du_.data_ptr<float>(), *pddt = ddt.data_ptr<float>(), *pdz = s.z ? dz.data_ptr<float>() : nullptr;
    float *pdA = dA_rows.data_ptr<float>(), *pdB = dB.data_ptr<float>(), *pdC = dC.data_ptr<float>(), *pdD = dD_rows.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        // per block: the step sizes, dy, the sums over n, the states and decays of one n; per batch
        // row: dB and dC summed over the blocks lane by lane (the sum over lanes once at the end)
        std::vector<float> buffers(7 * T * W);
        const Work w{buffers.data(), buffers.data() + T * W, buffers.data() + 2 * T * W, buffers.data() + 3 * T * W,
                     buffers.data() + 4 * T * W, buffers.data() + 5 * T * W, buffers.data() + 6 * T * W};
        std::vector<float> dB_lanes(T * N * W), dC_lanes(T * N * W);
        for (int64_t b = begin; b < end; ++b) {
            std::fill(dB_lanes.begin(), dB_lanes.end(), 0.f);
            std::fill(dC_lanes.begin(), dC_lanes.end(), 0.f);
            for (int64_t c0 = 0; c0 < L; c0 += W) {
                const int64_t at = b * T * L + c0;
                const Rows r = rows_of(s, b, c0, softplus);
                const Grads out{pdu + at, pddt + at, pdz ? pdz + at : nullptr, pdA + b * N * L + c0, pdD + b * L + c0,
                                dB_lanes.data(), dC_lanes.data()};
                const float* yu = pyu ? pyu + at : nullptr;
                if (L - c0 >= W) backward_block<W>(r, pdout + at, yu, W, out, w);
                else backward_block<0>(r, pdout + at, yu, L - c0, out, w);
            }
            for (int64_t tn = 0; tn < T * N; ++tn) {
                float sum_B = 0.f, sum_C = 0.f;
                for (int64_t k = 0; k < W; ++k) {
                    sum_B += dB_lanes[tn * W + k];
                    sum_C += dC_lanes[tn * W + k];
                }
                pdB[b * T * N + tn] = sum_B;
                pdC[b * T * N + tn] = sum_C;
            }
        }
    });
    return {du_, ddt, dA_rows, dB, dC, dD_rows, dz};
}

// The causal depthwise convolution with SiLU: xs = SiLU(bias + sum_k w_k x_{t-(K-1)+k}), zeros
// before the first position; x (batch, T, d_inner) may be a view with channels contiguous (the
// first half of in_proj's output), w (K, d_inner), bias (d_inner).
namespace {

// v[c] = bias[c] + sum_k w[k][c] x[t-(K-1)+k][c] for one step t: loops over channels, so they vectorise
inline void conv_row(const float* __restrict x, int64_t sT, const float* __restrict w, const float* __restrict bias,
                     int64_t t, int64_t K, int64_t L, float* __restrict v) {
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) v[c] = bias[c];
    for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
        const float* __restrict x_in = x + (t - (K - 1) + k) * sT;
        const float* __restrict w_k = w + k * L;
#pragma omp simd
        for (int64_t c = 0; c < L; ++c) v[c] += w_k[c] * x_in[c];
    }
}

void check_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
    TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 3 && x.stride(2) == 1,
                "causal conv (cpp): x must be float32 (batch, T, d_inner) on the CPU with contiguous channels");
    check(w, "conv weight", 2); check(bias, "conv bias", 1);
    TORCH_CHECK(w.size(1) == x.size(2) && bias.size(0) == x.size(2), "causal conv (cpp): weight (K, d_inner), bias (d_inner)");
}

}  // namespace

torch::Tensor conv_silu_forward(torch::Tensor x, torch::Tensor w, torch::Tensor bias) {
    check_conv(x, w, bias);
    const int64_t batch = x.size(0), T = x.size(1), L = x.size(2), K = w.size(0), sB = x.stride(0), sT = x.stride(1);
    auto out = torch::empty({batch, T, L}, x.options().memory_format(at::MemoryFormat::Contiguous));
    const float *px = x.data_ptr<float>(), *pw = w.data_ptr<float>(), *pb = bias.data_ptr<float>();
    float* po = out.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> v(L);
        for (int64_t b = begin; b < end; ++b) {
            for (int64_t t = 0; t < T; ++t) {
                float* __restrict o = po + (b * T + t) * L;
                conv_row(px + b * sB, sT, pw, pb, t, K, L, v.data());
#pragma omp simd
                for (int64_t c = 0; c < L; ++c) o[c] = v[c] * sigmoid(v[c]);
            }
        }
    });
    return out;
}

// Returns dx (batch, T, d_inner), dw per batch row (batch, K, d_inner), dbias per batch row (batch, d_inner).
std::vector<torch::Tensor> conv_silu_backward(torch::Tensor x, torch::Tensor w, torch::Tensor bias, torch::Tensor dout) {
    check_conv(x, w, bias);
    check(dout, "d(conv output)", 3);
    const int64_t batch = x.size(0), T = x.size(1), L = x.size(2), K = w.size(0), sB = x.stride(0), sT = x.stride(1);
    auto dx = torch::empty({batch, T, L}, dout.options());
    auto dw_rows = torch::empty({batch, K, L}, dout.options()), db_rows = torch::empty({batch, L}, dout.options());
    const float *px = x.data_ptr<float>(), *pw = w.data_ptr<float>(), *pb = bias.data_ptr<float>(), *pd = dout.data_ptr<float>();
    float *pdx = dx.data_ptr<float>(), *pdw = dw_rows.data_ptr<float>(), *pdb = db_rows.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> dv(T * L), v(L);  // dL/d(conv output before SiLU) of one batch row; one step's output
        for (int64_t b = begin; b < end; ++b) {
            const float* __restrict xb = px + b * sB;
            float* __restrict dw = pdw + b * K * L;
            float* __restrict db = pdb + b * L;
            std::fill(dw, dw + K * L, 0.f);
            std::fill(db, db + L, 0.f);
            for (int64_t t = 0; t < T; ++t) {
                const float* __restrict d_t = pd + (b * T + t) * L;
                float* __restrict dv_t = dv.data() + t * L;
                conv_row(xb, sT, pw, pb, t, K, L, v.data());
#pragma omp simd
                for (int64_t c = 0; c < L; ++c) {
                    const float s = sigmoid(v[c]);
                    dv_t[c] = d_t[c] * s * (1.f + v[c] * (1.f - s));
                    db[c] += dv_t[c];
                }
                for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
                    const float* __restrict x_in = xb + (t - (K - 1) + k) * sT;
                    float* __restrict dw_k = dw + k * L;
#pragma omp simd
                    for (int64_t c = 0; c < L; ++c) dw_k[c] += dv_t[c] * x_in[c];
                }
            }
            for (int64_t t = 0; t < T; ++t) {  // x_t feeds the outputs t .. t + K - 1 (through w_{K-1} .. w_0)
                float* __restrict dx_t = pdx + (b * T + t) * L;
#pragma omp simd
                for (int64_t c = 0; c < L; ++c) dx_t[c] = 0.f;
                for (int64_t j = 0; j <= std::min<int64_t>(K - 1, T - 1 - t); ++j) {
                    const float* __restrict w_j = pw + (K - 1 - j) * L;
                    const float* __restrict dv_j = dv.data() + (t + j) * L;
#pragma omp simd
                    for (int64_t c = 0; c < L; ++c) dx_t[c] += w_j[c] * dv_j[c];
                }
            }
        }
    });
    return {dx, dw_rows, db_rows};
}


PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &scan_forward, "selective scan forward: y (batch, T, d_inner), and the ungated y with a gate z");
    m.def("backward", &scan_backward, "selective scan backward: du, ddt, dA per row, dB, dC, dD per row, dz");
    m.def("conv_silu_forward", &conv_silu_forward, "SiLU(causal depthwise conv): (batch, T, d_inner)");
    m.def("conv_silu_backward", &conv_silu_backward, "its backward: dx, dw per row, dbias per row");
}
