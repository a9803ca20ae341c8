"""What a bundle's ``multi_gpu_train.json`` needs from LabelZoo to train under ``torchrun`` (DDP).

Two rules, referenced from the generated config (:func:`labelzoo.bundle.emit.multi_gpu_train_config`) by
dotted path, so every bundle gets them from one place:

* :func:`rank_handlers` keeps the handlers every rank must run and drops the logging / saving ones on ranks
  other than 0, **by type, not by position** (a handler list that gains a scheduler in front stays correct).
  A ``ValidationHandler`` must run on every rank: validation metrics are gathered across ranks, so a rank
  that skips validation leaves the others waiting forever in the gather. Handlers that change the training
  state (learning-rate schedulers, early stopping, checkpoint loading) must run everywhere too, or the
  replicas drift apart (MONAI Label puts a ``CheckpointLoader`` in front of ``train#handlers``: every rank must
  load it); ``MetricsSaver`` gathers file names across ranks (and writes on rank 0 only).
* :func:`ddp_ready` freezes parameters that a network builds but never uses in ``forward``, which
  ``DistributedDataParallel`` (without ``find_unused_parameters``) rejects on the second iteration with
  "Expected to have finished reduction in the prior iteration". MONAI 1.5.1's ``TransformerBlock`` builds a
  ``CrossAttentionBlock`` (and its LayerNorm) whatever ``with_cross_attention`` says, so UNETR (ViT-B/16) has
  28.3M parameters that never receive a gradient. Freezing them (``requires_grad=False``) keeps them in the
  ``state_dict`` (checkpoints still load into the plain single-GPU network) while DDP neither waits for their
  gradients nor pays ``find_unused_parameters``' graph walk every iteration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

#: Handler class names that only log or save, run on rank 0 only (everything else runs on every rank).
RANK_ZERO_ONLY = frozenset({
    "StatsHandler", "TensorBoardStatsHandler", "TensorBoardImageHandler", "CheckpointSaver", "MLFlowHandler",
    "ClearMLStatsHandler", "ClearMLImageHandler", "ProgressBar", "MetricLogger",
    "TrainProgress",  # labelzoo.progress: the app's progress file, one writer
})


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_rank_zero_only(handler: Any) -> bool:
    """Whether ``handler`` only logs or saves (its class, or a base class, is in :data:`RANK_ZERO_ONLY`)."""
    return any(cls.__name__ in RANK_ZERO_ONLY for cls in type(handler).__mro__)


def rank_handlers(handlers: Sequence[Any] | None, rank: int | None = None) -> list[Any]:
    """The handlers this rank runs: all of them on rank 0; on other ranks those that are not logging / saving.

    Args:
        handlers: a trainer's or evaluator's handler objects (``train#handlers``, ``validate#handlers``).
        rank: the process' rank (default: ``torch.distributed``'s, 0 when no process group is initialised).
    """
    rank = _rank() if rank is None else rank
    handlers = list(handlers or [])
    return handlers if rank == 0 else [h for h in handlers if not is_rank_zero_only(h)]


def freeze_unused_cross_attention(network: Any) -> int:
    """Freeze the cross-attention blocks of MONAI ``TransformerBlock`` s built with ``with_cross_attention=False``.

    Returns:
        The number of parameters frozen (0 for networks without such blocks).
    """
    from monai.networks.blocks.transformerblock import TransformerBlock

    frozen = 0
    for module in network.modules():
        if isinstance(module, TransformerBlock) and not getattr(module, "with_cross_attention", True):
            for name in ("cross_attn", "norm_cross_attn"):
                part = getattr(module, name, None)
                if part is None:
                    continue
                for p in part.parameters():
                    if p.requires_grad:
                        p.requires_grad_(False)
                        frozen += p.numel()
    return frozen


def ddp_ready(module: Any) -> Any:
    """``module`` prepared for ``DistributedDataParallel``: parameters it never uses frozen (see module doc).

    Used in ``multi_gpu_train.json`` as ``"module": {"_target_": "labelzoo.distributed.ddp.ddp_ready",
    "module": "$@network_def.to(@device)"}``.
    """
    frozen = freeze_unused_cross_attention(module)
    if frozen:
        logger.info("DDP: froze %d parameters of unused cross-attention blocks (MONAI TransformerBlock)", frozen)
    return module
