"""The selective scan and the causal conv + SiLU as C++ CPU kernels (``selective_scan_cpu.cpp``),
built on first use.

Why: written with tensor ops (``SelectiveScan``), every step of the scan reads and writes the
whole (batch, d_inner, d_state) state, so on a CPU the scan is bound by memory traffic and
was ~40% of a Mamba training step. The kernel keeps a block of 16 channels' states in
registers for the whole sequence and recomputes the states in the backward (in cache)
instead of storing them, as mamba-ssm's CUDA kernel does per thread block. The convolution
with its SiLU is one pass forward and one backward instead of ~15 element-wise tensor ops, and
the scan takes the mixer's gate and dt's softplus in, as mamba-ssm's kernel does.

The extension is compiled once per machine by torch's extension builder (a C++ compiler and
ninja, the same toolchain ``torch.compile`` needs on a CPU) with ``-march=native``, into
torch's extension cache under a name that includes a hash of the CPU's flags, so a home
folder shared between different CPUs never loads a binary built for another.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("selective_scan_cpu.cpp")
# fast-math: glibc's vector expf; 512-bit vectors where the CPU has them (gcc prefers 256 by
# default on AVX-512 CPUs): the scan's forward and backward ran ~25% faster
CFLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-ffast-math", "-fopenmp"]
_EXTENSION: ModuleType | None = None


def _cpu_key() -> str:
    """A short hash of this CPU's instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor() or platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


STALE_LOCK_S = 600  # a build takes ~30 s; a lock this old was left by a process killed while it held it


def clear_stale_lock(build_dir: Path, stale_after: float = STALE_LOCK_S) -> bool:
    """Remove the extension builder's ``lock`` in ``build_dir`` if it is older than
    ``stale_after`` seconds. torch's builder waits, without a timeout, for a lock to go away,
    so a process killed while it held one (a stopped study) would leave every later Mamba run
    waiting forever. Returns whether a lock was removed."""
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < stale_after:
        return False
    print(f"{lock}: removing the kernel builder's lock, left {age / 60:.0f} min ago by a process that did not finish", flush=True)
    lock.unlink(missing_ok=True)
    return True


def load_extension() -> ModuleType:
    """The compiled kernel (built on the first call of a machine, ~30 s; then loaded from cache)."""
    global _EXTENSION
    if _EXTENSION is None:
        from torch.utils.cpp_extension import load

        if shutil.which("ninja") is None:  # the `ninja` wheel (a dependency) puts it beside the venv's python
            try:
                import ninja

                os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
            except ImportError:
                pass
        from torch.utils.cpp_extension import _get_build_directory

        name = f"workbench_selective_scan_{_cpu_key()}"
        clear_stale_lock(Path(_get_build_directory(name, verbose=False)))
        try:
            _EXTENSION = load(
                name=name, sources=[str(SOURCE)],
                extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"], verbose=False,
            )
        except (RuntimeError, OSError, ImportError) as error:
            raise RuntimeError(
                f"model.scan='cpp': could not build the CPU selective-scan kernel {SOURCE.name} ({error}); "
                "it needs a C++ compiler and ninja. Use model.scan='torch' (no compiler) instead."
            ) from error
    return _EXTENSION


class CppSelectiveScan(torch.autograd.Function):
    """y = selective_scan(u, dt, A, B, C, D) on the kernel; float32, CPU, contiguous. As
    mamba-ssm's ``selective_scan_fn``: with ``z`` the output is gated, y * SiLU(z) (z may be a
    view with contiguous channels), and with ``softplus`` dt is given before its softplus."""

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor | None = None,
                softplus: bool = False) -> Tensor:
        y, y_ungated = load_extension().forward(u, dt, A, B, C, D, z, softplus)
        ctx.softplus = softplus
        ctx.save_for_backward(u, dt, A, B, C, D, z, y_ungated)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        u, dt, A, B, C, D, z, y_ungated = ctx.saved_tensors
        grad_u, grad_dt, grad_A_rows, grad_B, grad_C, grad_D_rows, grad_z = load_extension().backward(
            u, dt, A, B, C, D, z, ctx.softplus, y_ungated, dy.contiguous())
        # the sums over the batch are left to torch, so that they do not depend on the thread count
        return grad_u, grad_dt, grad_A_rows.sum(0).t(), grad_B, grad_C, grad_D_rows.sum(0), grad_z if z is not None else None, None


class CppConvSiLU(torch.autograd.Function):
    """SiLU(causal depthwise conv1d(x)) on the kernel: x (batch, T, d_inner) with contiguous
    channels (a view into in_proj's output is fine), weight (d_inner, 1, d_conv), bias (d_inner)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        w = weight[:, 0, :].t().contiguous()  # (d_conv, d_inner)
        ctx.save_for_backward(x, w, bias)
        return load_extension().conv_silu_forward(x, w, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w, bias = ctx.saved_tensors
        grad_x, grad_w_rows, grad_bias_rows = load_extension().conv_silu_backward(x, w, bias, grad.contiguous())
        # as in the scan, the sums over the batch are torch's, independent of the thread count
        return grad_x, grad_w_rows.sum(0).t().unsqueeze(1), grad_bias_rows.sum(0)
