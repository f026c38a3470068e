"""Whether a hook would see a call: what the fast paths (the unhooked GPT forward, Mamba's fused
CPU kernels) ask before running what no hook could read in between."""

from __future__ import annotations

from torch import nn
from torch.nn.modules import module as torch_module


def global_hooks_set() -> bool:
    """Whether torch's global module hooks are set (they see every module's call)."""
    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks or torch_module._global_backward_hooks)


def own_hooks(module: nn.Module) -> set[int]:
    """The ids of the module's own forward, forward-pre, backward and backward-pre hooks."""
    return {*module._forward_hooks, *module._forward_pre_hooks, *module._backward_hooks, *module._backward_pre_hooks}


def attached(module: nn.Module) -> bool:
    """Whether a hook, the module's own or a global one, would see this module's call."""
    return global_hooks_set() or bool(own_hooks(module))
