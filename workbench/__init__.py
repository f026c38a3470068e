"""Workbench for the pitfalls of next-token prediction on path-star graphs.

    import workbench
    ckpt = workbench.load("checkpoints/gpt-next_token")   # hooked model + its task
    logits, cache = ckpt.model.run_with_cache(tokens)
"""

__version__ = "0.1.0"

from workbench.checkpoint import Checkpoint, load  # noqa: E402

__all__ = ["Checkpoint", "load", "__version__"]
