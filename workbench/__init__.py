"""Workbench for the pitfalls of next-token prediction on path-star graphs.

    import workbench
    ckpt = workbench.load("checkpoints/gpt-next_token")   # hooked model + its task
    logits, cache = ckpt.model.run_with_cache(tokens)

``load`` and ``Checkpoint`` are imported on first use, so that importing a light part of the
package (the CLI's argument parser, the config) does not load torch and TransformerLens.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from workbench.checkpoint import Checkpoint, load


def __getattr__(name: str) -> Any:
    if name in ("Checkpoint", "load"):
        from workbench import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = ["Checkpoint", "load", "__version__"]
