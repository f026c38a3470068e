"""HookedMamba: Mamba-1 on TransformerLens' HookedRootModule, hooked like the GPT.

Symbols: d_model (residual width), d_inner = expand * d_model (mixer channels), d_state (SSM
state per channel), d_conv (causal conv width), dt_rank (rank of the dt projection).

    embed -> [RMSNorm -> mixer -> + residual] x n_layers -> RMSNorm -> LM head
    mixer: in_proj -> (x, z); x -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C);
           dt = softplus(dt_proj(dt)); y = selective_scan(x, dt, A = -exp(A_log), B, C, D);
           out_proj(y * SiLU(z))

Parameter names are Hugging Face ``MambaForCausalLM``'s (``backbone.embeddings``,
``backbone.layers.{i}.norm``, ``backbone.layers.{i}.mixer.{in_proj,conv1d,x_proj,dt_proj,
A_log,D,out_proj}``, ``backbone.norm_f``, ``lm_head``), the mixer's also mamba-ssm's, so a
state dict moves between them unchanged. Hook names are TransformerLens' (the module paths
are renamed in ``setup``), the same as the GPT's where the meaning is the same:

    hook_embed                          (batch, pos, d_model)
    blocks.{i}.hook_resid_pre / post    (batch, pos, d_model)
    blocks.{i}.mixer.hook_in_proj       (batch, pos, 2 * d_inner)   x and z, concatenated
    blocks.{i}.mixer.hook_conv          (batch, pos, d_inner)       conv1d output, before SiLU
    blocks.{i}.mixer.hook_x             (batch, pos, d_inner)       SSM input, SiLU(conv)
    blocks.{i}.mixer.hook_z             (batch, pos, d_inner)       gate, before SiLU
    blocks.{i}.mixer.hook_dt            (batch, pos, d_inner)       softplus(dt_proj(.)), the step size
    blocks.{i}.mixer.hook_B / hook_C    (batch, pos, d_state)
    blocks.{i}.mixer.hook_ssm_state     (batch, d_inner, pos, d_state)   h_t, the model's whole memory
    blocks.{i}.mixer.hook_y             (batch, pos, d_inner)       scan output with D skip, before gating
    blocks.{i}.mixer.hook_ssm_out       (batch, pos, d_model)       mixer output (after out_proj)
    ln_final.hook_normalized            (batch, pos, d_model)

``hook_ssm_state`` has TransformerLens' Mamba-bridge layout. The state trajectory is only
materialised when a hook is attached to it (e.g. ``run_with_cache``). A patch there flows
forward (``ssm_state_patch = "propagate"``, the default): the states the hook returns are
the ones the recurrence continues from, h_{t+1} = exp(dt A) h_t(patched) + dt B x_{t+1}, and
y_t = C_t h_t + D x_t at every position, so a patched state reaches every later output, as
the model's memory would. ``"local"`` (``model.ssm_state_patch = "local"``) instead uses the
returned states only for the outputs at their own positions, as TransformerLens' Mamba
bridge does; it isolates what h_t says to y_t alone. Otherwise the scan runs on a C++ CPU
kernel (``scan="cpp"``, the default; ``selective_scan_cpu``; where no hook reads them apart, the
conv with its SiLU runs as one kernel and the scan takes the gate and dt's softplus in), on ``SelectiveScan`` (pure
PyTorch; ``scan="compiled"`` fuses its steps with ``torch.compile``, ``scan="torch"`` runs them
eagerly; on a GPU "cpp" runs "compiled") or, with ``scan="mamba_ssm"``, on mamba-ssm's CUDA
kernel. All compute the same function (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from workbench.models.configs import SCANS, MambaConfig  # noqa: F401 (re-exported)
from workbench.models.hooks import attached
from workbench.models.selective_scan import propagate_patch, scan_states, selective_scan

SSM_STATE_PATCHES = ("propagate", "local")  # what a patch at hook_ssm_state reaches: every later position | its own


class RMSNorm(nn.Module):
    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps
        self.hook_normalized = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.hook_normalized(self.weight * normed.to(x.dtype))


class MambaMixer(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        d_inner, d_state, dt_rank = cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=False)
        for name in ("in_proj", "conv", "x", "z", "dt", "B", "C", "ssm_state", "y", "ssm_out"):
            setattr(self, f"hook_{name}", HookPoint())
        self.ssm_state_patch = "propagate"  # see SSM_STATE_PATCHES; an analysis switch, not saved

    def forward(self, hidden: Tensor) -> Tensor:
        """(batch, pos, d_model) -> (batch, pos, d_model)."""
        cfg, pos = self.cfg, hidden.shape[1]
        xz = self.hook_in_proj(self.in_proj(hidden))  # (batch, pos, 2 * d_inner)
        x, z = xz.chunk(2, dim=-1)
        x = self._conv_silu(x)
        A = -torch.exp(self.A_log.float())  # (d_inner, d_state)
        dt, B, C = self.x_proj(x).split([cfg.resolved_dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        if self._on_cpu_kernel(x) and not any(map(attached, (self.hook_z, self.hook_dt, self.hook_ssm_state, self.hook_y))):
            # the gate and dt's softplus inside the scan: nothing reads what they would materialise
            from workbench.models.selective_scan_cpu import CppSelectiveScan

            B, C = self.hook_B(B), self.hook_C(C)
            y = CppSelectiveScan.apply(x.contiguous(), self.dt_proj(dt).contiguous(), A.contiguous(), B.contiguous(),
                                       C.contiguous(), self.D.contiguous(), z, True)
            return self.hook_ssm_out(self.out_proj(y))
        z = self.hook_z(z)
        dt = self.hook_dt(F.softplus(self.dt_proj(dt)))  # (batch, pos, d_inner)
        B, C = self.hook_B(B), self.hook_C(C)  # (batch, pos, d_state)
        if self.hook_ssm_state.fwd_hooks:  # someone reads or patches the states: materialise them
            y = self._hooked_scan(x, dt, A, B, C)
        elif cfg.scan == "mamba_ssm":
            y = _mamba_ssm_scan(x, dt, A, B, C, self.D)
        else:  # the C++ kernel is CPU-only: on a GPU "cpp" (the default) runs the compiled steps
            impl = "compiled" if cfg.scan == "cpp" and x.device.type != "cpu" else cfg.scan
            y = selective_scan(x, dt, A, B, C, self.D, impl=impl)
        y = self.hook_y(y)
        return self.hook_ssm_out(self.out_proj(y * F.silu(z)))

    def _on_cpu_kernel(self, x: Tensor) -> bool:
        return self.cfg.scan == "cpp" and x.device.type == "cpu" and x.dtype == torch.float32

    def _conv_silu(self, x: Tensor) -> Tensor:
        """SiLU(causal conv(x)): on the C++ CPU kernel (one pass each way) when the scan runs there
        and nothing is attached to ``hook_conv`` or ``hook_x``, which it never materialises apart."""
        weight, bias = self.conv1d.weight, self.conv1d.bias
        if self._on_cpu_kernel(x) and not (attached(self.hook_conv) or attached(self.hook_x)):
            from workbench.models.selective_scan_cpu import CppConvSiLU

            return CppConvSiLU.apply(x, weight, bias)
        return self.hook_x(F.silu(self.hook_conv(causal_depthwise_conv(x, weight, bias))))

    def _hooked_scan(self, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        """The scan with every state h_t passed through ``hook_ssm_state``; y (batch, pos, d_inner).

        "propagate" keeps a copy of the computed states (the hook may edit them in place) and
        reruns the recurrence from the first position the hook changed (``propagate_patch``);
        a hook that only reads costs the copy and one comparison. "local" uses the returned
        states as they are."""
        if self.ssm_state_patch not in SSM_STATE_PATCHES:
            raise ValueError(f"ssm_state_patch={self.ssm_state_patch!r}: expected one of {SSM_STATE_PATCHES}")
        u, dt, B = x.float(), dt.float(), B.float()
        computed = scan_states(u, dt, A, B)
        if self.ssm_state_patch == "local":
            states = self.hook_ssm_state(computed)
        else:
            states = propagate_patch(computed, self.hook_ssm_state(computed.clone()), u, dt, A, B)
        return (torch.einsum("bcts,bts->btc", states, C.float()) + u * self.D).to(x.dtype)


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``nn.Conv1d(groups=d_inner, padding=d_conv - 1)`` truncated to ``pos``, on (batch, pos,
    d_inner), as d_conv shifted multiply-adds. Same result; on CPU mkldnn's depthwise backward
    took ~15 ms of a 168 ms training step (cpu preset), this ~8. weight (d_inner, 1, d_conv)."""
    d_conv, pos = weight.shape[-1], x.shape[1]
    padded = F.pad(x, (0, 0, d_conv - 1, 0))  # zeros before the first position
    out = bias + padded[:, :pos] * weight[:, 0, 0]
    for k in range(1, d_conv):
        out = out + padded[:, k : k + pos] * weight[:, 0, k]
    return out


def _mamba_ssm_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """mamba-ssm's CUDA selective-scan kernel on our layout (it wants channel-first)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    # Under autocast x is float32 (our conv is elementwise) while dt, B, C come out of linear
    # layers in bf16; the kernel wants one input type, and computes in float32 anyway.
    u, dt, B, C = (t.float().transpose(1, 2).contiguous() for t in (x, dt, B, C))
    y = selective_scan_fn(u, dt, A, B, C, D.float(), delta_softplus=False)
    return y.transpose(1, 2).to(x.dtype)


class MambaBlock(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = MambaMixer(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: Tensor) -> Tensor:
        resid = self.hook_resid_pre(resid)
        return self.hook_resid_post(resid + self.mixer(self.norm(resid)))


class MambaBackbone(nn.Module):
    def __init__(self, cfg: MambaConfig, vocab: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, cfg.d_model)
        self.layers = nn.ModuleList(MambaBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.hook_embed = HookPoint()


# HF module paths -> TransformerLens hook names (see the module docstring)
_RENAMES = (("backbone.layers.", "blocks."), ("backbone.norm_f.", "ln_final."), ("backbone.", ""))


class HookedMamba(HookedRootModule):
    """Tokens (batch, pos) -> logits (batch, pos, d_vocab), with TransformerLens hooks."""

    def __init__(self, cfg: MambaConfig, vocab: int, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.backbone = MambaBackbone(cfg, vocab)
            self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)
            self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        self.setup()

    def _init_weights(self) -> None:
        """mamba-ssm's initialisation: dt bias so that softplus(bias) is log-uniform in
        [1e-3, 1e-1], out_proj scaled by 1/sqrt(n_layers), embeddings N(0, init_std^2)."""
        cfg = self.cfg
        nn.init.normal_(self.backbone.embeddings.weight, std=cfg.init_std)
        nn.init.normal_(self.lm_head.weight, std=cfg.init_std)
        for block in self.backbone.layers:
            mixer = block.mixer
            dt_init_std = cfg.resolved_dt_rank**-0.5
            nn.init.uniform_(mixer.dt_proj.weight, -dt_init_std, dt_init_std)
            dt = torch.exp(torch.rand(cfg.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            with torch.no_grad():
                mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
                mixer.out_proj.weight /= math.sqrt(cfg.n_layers)

    def setup(self) -> None:
        super().setup()
        renamed_mods, renamed_hooks = {}, {}
        for name, module in self.mod_dict.items():
            for old, new in _RENAMES:
                if name.startswith(old):
                    name = new + name[len(old) :]
                    break
            module.name = name
            renamed_mods[name] = module
            if isinstance(module, HookPoint):
                renamed_hooks[name] = module
        self.mod_dict, self.hook_dict = renamed_mods, renamed_hooks

    @property
    def ssm_state_patch(self) -> str:
        """What a patch at ``hook_ssm_state`` reaches ("propagate" | "local"; module docstring)."""
        return self.backbone.layers[0].mixer.ssm_state_patch

    @ssm_state_patch.setter
    def ssm_state_patch(self, mode: str) -> None:
        if mode not in SSM_STATE_PATCHES:
            raise ValueError(f"ssm_state_patch={mode!r}: expected one of {SSM_STATE_PATCHES}")
        for block in self.backbone.layers:
            block.mixer.ssm_state_patch = mode

    def forward(self, tokens: Tensor) -> Tensor:
        resid = self.backbone.hook_embed(self.backbone.embeddings(tokens))
        for block in self.backbone.layers:
            resid = block(resid)
        return self.lm_head(self.backbone.norm_f(resid))


def build_mamba(config: MambaConfig, vocab: int, seed: int) -> HookedMamba:
    if config.scan == "mamba_ssm":
        try:
            import mamba_ssm  # noqa: F401
        except ImportError:
            raise ValueError("model.scan='mamba_ssm' needs the CUDA kernels: pip install 'pitfalls-workbench[cuda]'") from None
    return HookedMamba(config, vocab, seed)
