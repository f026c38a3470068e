"""Mamba-1's selective scan, as a readable reference and as a fast CPU/GPU PyTorch function.

Symbols (as in the Mamba paper and mamba-ssm), per channel c of d_inner and state s of d_state:

    h_t[c, s] = exp(dt_t[c] * A[c, s]) * h_{t-1}[c, s] + dt_t[c] * u_t[c] * B_t[s]
    y_t[c]    = sum_s h_t[c, s] * C_t[s] + D[c] * u_t[c]

Shapes: u, dt (batch, pos, d_inner); A (d_inner, d_state); B, C (batch, pos, d_state);
D (d_inner,); y (batch, pos, d_inner); states (batch, d_inner, pos, d_state).

The cost of a naive PyTorch scan is not arithmetic but memory: autograd keeps every
(batch, d_inner, d_state) intermediate of every step. ``SelectiveScan`` is an autograd
Function that runs the recurrence step by step on (batch, d_inner, d_state) tensors that stay
in cache, keeps one state per step, and computes the gradients with a hand-written
reverse-time recurrence (optionally fused by ``torch.compile``):

    g_t     = dL/dh_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}
    dC_t    = sum_c h_t dy_t                  dB_t = sum_c g_t dt_t u_t
    du_t    = dt_t (g_t B_t) + D dy_t         ddt_t = u_t (g_t B_t) + sum_s g_t A exp(dt_t A) h_{t-1}
    dA      = sum_{b,t} g_t dt_t exp(dt_t A) h_{t-1}

``selective_scan_ref`` is the same function written as the recurrence, differentiated by
autograd; the tests hold it and the fast versions together, values and gradients. On a CPU
the fastest is the C++ kernel of ``selective_scan_cpu`` (the same recurrences, one block of
channels at a time with the state in registers); ``SelectiveScan`` is the portable one. ``propagate_patch`` reruns
the recurrence after a patch of the states (HookedMamba's ``hook_ssm_state``), so a patched
h_t is what h_{t+1} is computed from.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def scan_states(
    u: Float[Tensor, "batch pos d_inner"],
    dt: Float[Tensor, "batch pos d_inner"],
    A: Float[Tensor, "d_inner d_state"],
    B: Float[Tensor, "batch pos d_state"],
) -> Float[Tensor, "batch d_inner pos d_state"]:
    """Every state h_t of the recurrence (differentiable; materialises the whole trajectory)."""
    batch, _, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    states = []
    for dt_t, du_t, B_t in zip(dt.unbind(1), (dt * u).unbind(1), B.unbind(1)):
        h = torch.exp(dt_t[:, :, None] * A) * h + du_t[:, :, None] * B_t[:, None, :]
        states.append(h)
    return torch.stack(states, dim=2)


def propagate_patch(
    computed: Float[Tensor, "batch d_inner pos d_state"],
    patched: Float[Tensor, "batch d_inner pos d_state"],
    u: Float[Tensor, "batch pos d_inner"],
    dt: Float[Tensor, "batch pos d_inner"],
    A: Float[Tensor, "d_inner d_state"],
    B: Float[Tensor, "batch pos d_state"],
) -> Float[Tensor, "batch d_inner pos d_state"]:
    """The trajectory after a patch of ``computed`` (the states of ``scan_states``) into ``patched``.

    Every element the patch changed keeps its patched value; every other element follows the
    recurrence from the previous state, which may itself be patched: so h_{t+1} is computed
    from a patched h_t. Before the first changed position nothing differs, so the rerun starts
    there; with no change at all ``patched`` is returned as it is (no loop). An element patched
    to exactly its unpatched value counts as unchanged, i.e. follows the recurrence.
    """
    changed = patched != computed
    touched = changed.any(dim=3).any(dim=1).any(dim=0).nonzero()  # (n, 1) positions with a change
    if len(touched) == 0:
        return patched
    first = int(touched[0, 0])
    h = patched[:, :, first]  # its unchanged elements already follow the (unchanged) h_{first-1}
    states = [h]
    du = dt * u
    for t in range(first + 1, u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + du[:, t, :, None] * B[:, t, None, :]
        h = torch.where(changed[:, :, t], patched[:, :, t], h)
        states.append(h)
    return torch.cat([patched[:, :, :first], torch.stack(states, dim=2)], dim=2)


def selective_scan_ref(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Float[Tensor, "batch pos d_inner"]:
    """The reference: the recurrence as written, differentiated by autograd."""
    states = scan_states(u, dt, A, B)
    return torch.einsum("bcts,bts->btc", states, C) + u * D


def _forward_step(h: Tensor, dt_t: Tensor, du_t: Tensor, B_t: Tensor, C_t: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
    """h_{t-1} -> (h_t, y_t without the D skip); h (batch, d_inner, d_state)."""
    h = torch.exp(dt_t[:, :, None] * A) * h + du_t[:, :, None] * B_t[:, None, :]
    return h, torch.bmm(h, C_t[:, :, None])[:, :, 0]


def _backward_step(
    g: Tensor, grad_A: Tensor, h_t: Tensor, h_prev: Tensor, dy_t: Tensor, C_t: Tensor,
    du_t: Tensor, B_t: Tensor, dt_t: Tensor, u_t: Tensor, A: Tensor,
) -> tuple[Tensor, ...]:
    """One reverse-time step: dL/dh_{t+1} carried back to t, and the gradients at t.

    ``grad_A`` is carried per batch row and summed once at the end: summed over the batch at
    every step, the fused CPU kernel was 2.3x slower."""
    decay = torch.exp(dt_t[:, :, None] * A)
    g = g + dy_t[:, :, None] * C_t[:, None, :]  # dL/dh_t
    g_B = (g * B_t[:, None, :]).sum(-1)  # (batch, d_inner)
    carry = g * decay * h_prev  # dL/d(dt_t A)
    grad_C_t = (h_t * dy_t[:, :, None]).sum(1)
    grad_B_t = (g * du_t[:, :, None]).sum(1)
    grad_dt_t = (carry * A).sum(-1) + u_t * g_B
    grad_u_t = dt_t * g_B
    return g * decay, grad_A + carry * dt_t[:, :, None], grad_C_t, grad_B_t, grad_dt_t, grad_u_t


_COMPILED: dict[str, object] = {}


def _steps(compiled: bool):
    """The step functions, eager or fused by ``torch.compile`` (compiled once per process; the
    fused CPU backward is ~3.5x faster; a cold compile takes ~15 s per function)."""
    if not compiled:
        return _forward_step, _backward_step
    if not _COMPILED:
        _COMPILED["forward"] = torch.compile(_forward_step, dynamic=True)
        _COMPILED["backward"] = torch.compile(_backward_step, dynamic=True)
    return _COMPILED["forward"], _COMPILED["backward"]


class SelectiveScan(torch.autograd.Function):
    """The same function, stepping through time on (batch, d_inner, d_state) tensors that stay
    in cache, with a hand-written backward; see the module docstring for the recurrences.

    The forward keeps one state per step for the backward only when ``keep_states`` (the
    wrapper ``selective_scan`` sets it when a gradient can be asked for); under ``no_grad``
    it keeps nothing.
    """

    @staticmethod
    def forward(
        ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, compiled: bool = False, keep_states: bool = True
    ) -> Tensor:
        forward_step, _ = _steps(compiled)
        batch, pos, d_inner = u.shape
        h = u.new_zeros(batch, d_inner, A.shape[1])
        ys, states = [], []  # stacked once at the end: a strided write per step costs more
        for dt_t, du_t, B_t, C_t in zip(dt.unbind(1), (dt * u).unbind(1), B.unbind(1), C.unbind(1)):
            h, y_t = forward_step(h, dt_t, du_t, B_t, C_t, A)
            ys.append(y_t)
            if keep_states:
                states.append(h)
        ctx.save_for_backward(u, dt, A, B, C, D)
        ctx.states, ctx.compiled = states, compiled
        return torch.addcmul(torch.stack(ys, dim=1), u, D)

    @staticmethod
    def backward(ctx, dy: Tensor):
        u, dt, A, B, C, D = ctx.saved_tensors
        _, backward_step = _steps(ctx.compiled)
        states = ctx.states
        du = dt * u
        dts, dus, us, Bs, Cs, dys = dt.unbind(1), du.unbind(1), u.unbind(1), B.unbind(1), C.unbind(1), dy.contiguous().unbind(1)
        g = torch.zeros_like(states[0])
        grad_A = torch.zeros_like(g)  # per batch row
        per_step = []  # (grad_C_t, grad_B_t, grad_dt_t, grad_u_t), last step first
        for t in range(u.shape[1] - 1, -1, -1):
            h_prev = states[t - 1] if t > 0 else torch.zeros_like(g)
            g, grad_A, *grads_t = backward_step(g, grad_A, states[t], h_prev, dys[t], Cs[t], dus[t], Bs[t], dts[t], us[t], A)
            per_step.append(grads_t)
        grad_C, grad_B, grad_dt, grad_u = (torch.stack(g_t[::-1], dim=1) for g_t in zip(*per_step))
        grad_u = torch.addcmul(grad_u, dy, D)
        grad_D = (dy * u).sum(dim=(0, 1))
        return grad_u, grad_dt, grad_A.sum(0), grad_B, grad_C, grad_D, None, None


def selective_scan(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, impl: str = "compiled") -> Float[Tensor, "batch pos d_inner"]:
    """The selective scan in float32: ``impl`` "torch" or "compiled" (``SelectiveScan``, its steps
    eager or fused by ``torch.compile``), or "cpp" (``selective_scan_cpu``, the C++ CPU kernel)."""
    dtype = u.dtype
    args = [x.float().contiguous() for x in (u, dt, A, B, C, D)]
    if impl == "cpp":
        from workbench.models.selective_scan_cpu import CppSelectiveScan

        return CppSelectiveScan.apply(*args).to(dtype)
    if impl not in ("torch", "compiled"):
        raise ValueError(f"selective_scan(impl={impl!r}): expected 'torch', 'compiled' or 'cpp'")
    # grad mode is off inside Function.forward and needs_input_grad ignores no_grad: decide here
    keep_states = torch.is_grad_enabled() and any(x.requires_grad for x in args)
    return SelectiveScan.apply(*args, impl == "compiled", keep_states).to(dtype)
