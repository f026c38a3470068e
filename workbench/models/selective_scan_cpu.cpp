// Mamba-1's selective scan on the CPU: forward and backward, one (batch row, channel) at a time.
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

torch::Tensor scan_forward(torch::Tensor u, torch::Tensor dt, torch::Tensor A, torch::Tensor B, torch::Tensor C,
                           torch::Tensor D) {
    check_all(u, dt, A, B, C, D);
    const int64_t batch = u.size(0), T = u.size(1), L = u.size(2), N = A.size(1);
    auto At = A.t().contiguous();  // (d_state, d_inner): W neighbouring channels of one state are contiguous
    auto y = torch::empty_like(u);
    const float *pu = u.data_ptr<float>(), *pdt = dt.data_ptr<float>(), *pAt = At.data_ptr<float>();
    const float *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>(), *pD = D.data_ptr<float>();
    float* py = y.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> state(N * W);  // h[n][k] of the block's channels
        for (int64_t b = begin; b < end; ++b) {
            for (int64_t c0 = 0; c0 < L; c0 += W) {
                const int64_t lanes = std::min(W, L - c0);
                std::fill(state.begin(), state.end(), 0.f);
                for (int64_t t = 0; t < T; ++t) {
                    const int64_t at = (b * T + t) * L + c0;
                    const float* __restrict u_t = pu + at;
                    const float* __restrict dt_t = pdt + at;
                    const float* __restrict Bt = pB + (b * T + t) * N;
                    const float* __restrict Ct = pC + (b * T + t) * N;
                    float acc[W] = {0.f};
                    for (int64_t n = 0; n < N; ++n) {
                        const float* __restrict An = pAt + n * L + c0;
                        float* __restrict h = state.data() + n * W;
                        const float Bn = Bt[n], Cn = Ct[n];
#pragma omp simd
                        for (int64_t k = 0; k < lanes; ++k) {
                            h[k] = std::exp(dt_t[k] * An[k]) * h[k] + dt_t[k] * u_t[k] * Bn;
                            acc[k] += h[k] * Cn;
                        }
                    }
                    float* __restrict y_t = py + at;
#pragma omp simd
                    for (int64_t k = 0; k < lanes; ++k) y_t[k] = acc[k] + pD[c0 + k] * u_t[k];
                }
            }
        }
    });
    return y;
}

// Returns du, ddt, dA per batch row (batch, d_state, d_inner), dB, dC, dD per batch row (batch, d_inner).
std::vector<torch::Tensor> scan_backward(torch::Tensor u, torch::Tensor dt, torch::Tensor A, torch::Tensor B,
                                         torch::Tensor C, torch::Tensor D, torch::Tensor dy) {
    check_all(u, dt, A, B, C, D);
    check(dy, "dy", 3);
    TORCH_CHECK(dy.sizes() == u.sizes(), "selective scan (cpp): dy and u differ in shape");
    const int64_t batch = u.size(0), T = u.size(1), L = u.size(2), N = A.size(1);
    auto At = A.t().contiguous();
    auto du_ = torch::empty_like(u), ddt = torch::empty_like(u);
    auto dA_rows = torch::zeros({batch, N, L}, u.options());
    auto dB = torch::empty_like(B), dC = torch::empty_like(C);
    auto dD_rows = torch::zeros({batch, L}, u.options());
    const float *pu = u.data_ptr<float>(), *pdt = dt.data_ptr<float>(), *pAt = At.data_ptr<float>();
    const float *pB = B.data_ptr<float>(), *pC = C.data_ptr<float>(), *pD = D.data_ptr<float>();
    const float* pdy = dy.data_ptr<float>();
    float *pdu = du_.data_ptr<float>(), *pddt = ddt.data_ptr<float>(), *pdA = dA_rows.data_ptr<float>();
    float *pdB = dB.data_ptr<float>(), *pdC = dC.data_ptr<float>(), *pdD = dD_rows.data_ptr<float>();
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        // per block of W channels: the states (hist[0] = h_{-1} = 0) and decays of every step; per batch row:
        // dB and dC summed over the blocks lane by lane (the sum over lanes once at the end)
        std::vector<float> hist((T + 1) * N * W), decay(T * N * W), g(N * W);
        std::vector<float> dB_lanes(T * N * W), dC_lanes(T * N * W);
        for (int64_t b = begin; b < end; ++b) {
            std::fill(dB_lanes.begin(), dB_lanes.end(), 0.f);
            std::fill(dC_lanes.begin(), dC_lanes.end(), 0.f);
            for (int64_t c0 = 0; c0 < L; c0 += W) {
                const int64_t lanes = std::min(W, L - c0);
                std::fill(hist.begin(), hist.begin() + N * W, 0.f);
                for (int64_t t = 0; t < T; ++t) {  // recompute the states h_0 .. h_{T-1}
                    const int64_t at = (b * T + t) * L + c0;
                    const float* __restrict u_t = pu + at;
                    const float* __restrict dt_t = pdt + at;
                    const float* __restrict Bt = pB + (b * T + t) * N;
                    for (int64_t n = 0; n < N; ++n) {
                        const float* __restrict An = pAt + n * L + c0;
                        const float* __restrict h_prev = hist.data() + (t * N + n) * W;
                        float* __restrict h = hist.data() + ((t + 1) * N + n) * W;
                        float* __restrict dec = decay.data() + (t * N + n) * W;
                        const float Bn = Bt[n];
#pragma omp simd
                        for (int64_t k = 0; k < lanes; ++k) {
                            dec[k] = std::exp(dt_t[k] * An[k]);
                            h[k] = dec[k] * h_prev[k] + dt_t[k] * u_t[k] * Bn;
                        }
                    }
                }
                std::fill(g.begin(), g.end(), 0.f);
                float* __restrict dA_b = pdA + b * N * L + c0;
                float dD[W] = {0.f};
                for (int64_t t = T - 1; t >= 0; --t) {
                    const int64_t at = (b * T + t) * L + c0;
                    const float* __restrict u_t = pu + at;
                    const float* __restrict dt_t = pdt + at;
                    const float* __restrict dy_t = pdy + at;
                    const float* __restrict Bt = pB + (b * T + t) * N;
                    const float* __restrict Ct = pC + (b * T + t) * N;
                    float gB[W] = {0.f}, gdtA[W] = {0.f};
                    for (int64_t n = 0; n < N; ++n) {
                        const float* __restrict An = pAt + n * L + c0;
                        const float* __restrict h_prev = hist.data() + (t * N + n) * W;
                        const float* __restrict h = hist.data() + ((t + 1) * N + n) * W;
                        const float* __restrict dec = decay.data() + (t * N + n) * W;
                        float* __restrict gn = g.data() + n * W;
                        float* __restrict dA_n = dA_b + n * L;
                        float* __restrict dB_tn = dB_lanes.data() + (t * N + n) * W;
                        float* __restrict dC_tn = dC_lanes.data() + (t * N + n) * W;
                        const float Bn = Bt[n], Cn = Ct[n];
#pragma omp simd
                        for (int64_t k = 0; k < lanes; ++k) {
                            const float g_t = gn[k] + dy_t[k] * Cn;  // dL/dh_t
                            const float carry = g_t * dec[k] * h_prev[k];  // dL/d(dt_t A)
                            gB[k] += g_t * Bn;
                            gdtA[k] += carry * An[k];
                            dA_n[k] += carry * dt_t[k];
                            dC_tn[k] += h[k] * dy_t[k];
                            dB_tn[k] += g_t * dt_t[k] * u_t[k];
                            gn[k] = g_t * dec[k];
                        }
                    }
                    float* __restrict ddt_t = pddt + at;
                    float* __restrict du_t = pdu + at;
#pragma omp simd
                    for (int64_t k = 0; k < lanes; ++k) {
                        ddt_t[k] = gdtA[k] + u_t[k] * gB[k];
                        du_t[k] = dt_t[k] * gB[k] + pD[c0 + k] * dy_t[k];
                        dD[k] += dy_t[k] * u_t[k];
                    }
                }
                for (int64_t k = 0; k < lanes; ++k) pdD[b * L + c0 + k] = dD[k];
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
    return {du_, ddt, dA_rows, dB, dC, dD_rows};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &scan_forward, "selective scan forward: y (batch, T, d_inner)");
    m.def("backward", &scan_backward, "selective scan backward: du, ddt, dA per row, dB, dC, dD per row");
}
