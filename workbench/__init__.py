"""Workbench for the pitfalls of next-token prediction on path-star graphs.

    import workbench
    ckpt = workbench.load("gpt-next_token-G2_5_50")   # a shipped checkpoint, or any checkpoint directory
    logits, cache = ckpt.model.run_with_cache(tokens)

``load`` and ``Checkpoint`` are imported on first use, so that importing a light part of the
package (the CLI's argument parser, the config) does not load torch and TransformerLens.
"""

from typing import TYPE_CHECKING, Any

from workbench._version import __version__

if TYPE_CHECKING:
    from workbench.checkpoint import Checkpoint
    from workbench.shipped import load


def __getattr__(name: str) -> Any:
    if name == "Checkpoint":
        from workbench.checkpoint import Checkpoint

        return Checkpoint
    if name == "load":  # a checkpoint directory, or a shipped checkpoint by name
        from workbench.shipped import load

        return load
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = ["Checkpoint", "load", "__version__"]
