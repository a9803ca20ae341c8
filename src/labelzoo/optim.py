"""Optimiser helpers the bundles reference by dotted path: a Lookahead wrapper, encoder / decoder param groups and
gradient-norm clipping for MONAI's trainers.

Neither PyTorch nor MONAI ships Lookahead (Zhang, Lucas, Hinton, Ba, "Lookahead Optimizer: k steps forward,
1 step back", NeurIPS 2019, https://arxiv.org/abs/1907.08610), which the UNet++ chest X-ray recipe pairs with
RAdam (``torch.optim.RAdam``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = ["ClipGradNorm", "Lookahead", "encoder_decoder_param_groups"]


class Lookahead(Optimizer):
    """Lookahead wrapper around any optimiser ("k steps forward, 1 step back").

    The wrapped (inner, "fast") optimiser updates the weights as usual. Every ``k`` steps the slow weights
    ``phi`` move towards the fast weights ``theta`` by ``phi += alpha * (theta - phi)`` and the fast weights are
    reset to ``phi``. The slow weights start as a copy of the weights when the wrapper is made (``phi_0 =
    theta_0``, as in the paper).

    The wrapper shares ``param_groups`` and ``state`` with the inner optimiser, so learning-rate schedulers
    (``ReduceLROnPlateau`` included) and per-group learning rates work on it as on the inner optimiser.
    ``state_dict()`` holds the inner optimiser's state plus the slow weights and the step counter.

    Args:
        optimizer: the inner optimiser, e.g. ``torch.optim.RAdam``.
        k: synchronise every ``k`` steps (>= 1).
        alpha: slow-weights step size, in (0, 1].

    Raises:
        ValueError: if ``optimizer`` is not a ``torch.optim.Optimizer``, ``k < 1`` or ``alpha`` not in (0, 1].

    Example:
        >>> net = nn.Linear(2, 1)
        >>> opt = Lookahead(torch.optim.RAdam(net.parameters(), lr=5e-3), k=5, alpha=0.5)
        >>> net(torch.ones(1, 2)).sum().backward(); _ = opt.step(); opt.zero_grad()
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, Lookahead):
            raise ValueError("Lookahead must not wrap another Lookahead")
        if int(k) != k or k < 1:
            raise ValueError(f"Lookahead k (steps between synchronisations) must be an integer >= 1, got {k!r}")
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"Lookahead alpha must be in (0, 1], got {alpha!r}")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # Initialise the Optimizer machinery (hooks, profiling names), then share the inner optimiser's groups
        # and state so that schedulers and checkpoints see one set of learning rates.
        super().__init__(params, defaults={})
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self.defaults = optimizer.defaults
        self.k = int(k)
        self.alpha = float(alpha)
        self.lookahead_steps = 0
        self.slow_weights: list[torch.Tensor] = [p.detach().clone() for p in params]

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def _synchronise(self) -> None:
        for p, slow in zip(self._params(), self.slow_weights, strict=True):
            slow.add_(p.detach() - slow, alpha=self.alpha)
            p.copy_(slow)

    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """One inner-optimiser step; every ``k``-th step also updates the slow weights and resets the fast ones."""
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.lookahead_steps += 1
        if self.lookahead_steps % self.k == 0:
            self._synchronise()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimiser (the groups are shared) and start its slow weights."""
        if not hasattr(self, "optimizer"):  # called by Optimizer.__init__ before the inner optimiser is attached
            super().add_param_group(param_group)
            return
        self.optimizer.add_param_group(param_group)
        self.slow_weights.extend(p.detach().clone() for p in self.param_groups[-1]["params"])

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        state["lookahead"] = {
            "k": self.k,
            "alpha": self.alpha,
            "steps": self.lookahead_steps,
            "slow_weights": [s.clone() for s in self.slow_weights],
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        lookahead = state.pop("lookahead", None)
        self.optimizer.load_state_dict(state)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        if lookahead is None:  # an inner optimiser's checkpoint: restart the slow weights from the current weights
            self.slow_weights = [p.detach().clone() for p in self._params()]
            return
        slow = lookahead["slow_weights"]
        params = self._params()
        if len(slow) != len(params):
            raise ValueError(f"Lookahead state has {len(slow)} slow weights, the optimiser has {len(params)} params")
        self.k, self.alpha, self.lookahead_steps = int(lookahead["k"]), float(lookahead["alpha"]), lookahead["steps"]
        self.slow_weights = [s.detach().to(device=p.device, dtype=p.dtype).clone() for s, p in zip(slow, params,
                                                                                                 strict=True)]

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"


def encoder_decoder_param_groups(
    network: nn.Module,
    lr: float,
    encoder_lr_factor: float = 0.1,
    encoder_names: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Two optimiser param groups: the encoder at ``lr * encoder_lr_factor``, everything else at ``lr``.

    Args:
        network: the model.
        lr: learning rate of the decoder (and head).
        encoder_lr_factor: encoder learning rate relative to ``lr`` (the UNet++ CXR recipe uses 0.1).
        encoder_names: parameter names of the encoder; by default
            :func:`labelzoo.networks.unetplusplus.encoder_parameter_names` (BasicUNet, UNet++, FlexibleUNet,
            FlexibleUNetPlusPlus).

    Returns:
        ``[{"params": encoder, "lr": lr * factor, "name": "encoder"}, {"params": rest, "lr": lr, "name":
        "decoder"}]``; a group with no parameters is left out.

    Raises:
        ValueError: if ``lr`` or ``encoder_lr_factor`` is not positive, or an encoder name is not a parameter.
    """
    if lr <= 0 or encoder_lr_factor <= 0:
        raise ValueError(f"lr and encoder_lr_factor must be positive, got {lr=}, {encoder_lr_factor=}")
    if encoder_names is None:
        from labelzoo.networks.unetplusplus import encoder_parameter_names

        encoder_names = encoder_parameter_names(network)
    names = set(encoder_names)
    named = dict(network.named_parameters())
    unknown = sorted(names - named.keys())
    if unknown:
        raise ValueError(f"encoder_names has names that are not parameters of the network: {unknown[:5]}")
    encoder = [p for n, p in named.items() if n in names]
    decoder = [p for n, p in named.items() if n not in names]
    groups = [
        {"params": encoder, "lr": lr * encoder_lr_factor, "name": "encoder"},
        {"params": decoder, "lr": lr, "name": "decoder"},
    ]
    return [g for g in groups if g["params"]]


class ClipGradNorm:
    """Clip the gradient norm between ``backward`` and the optimiser step of a MONAI ``SupervisedTrainer``.

    nnU-Net v2's ``nnUNetTrainer.train_step`` clips the global gradient norm to 12 before every SGD step; MONAI's
    trainers have no such option (nor has ignite), so this handler attaches to MONAI's
    ``IterationEvents.BACKWARD_COMPLETED``, which ``SupervisedTrainer`` fires after ``loss.backward()`` and
    before ``optimizer.step()``. With AMP the gradients are unscaled first (``GradScaler.unscale_``), as nnU-Net
    does, so the norm is that of the true gradients. It runs on every rank of a DDP training (gradients are
    already all-reduced when backward returns, so every rank clips the same way).

    Args:
        max_norm: the largest global L2 norm of all the network's gradients (nnU-Net: 12).

    Raises:
        ValueError: if ``max_norm`` is not positive.

    Example (``train.json``): ``{"_target_": "labelzoo.optim.ClipGradNorm", "max_norm": 12}`` in
    ``train#handlers``.
    """

    def __init__(self, max_norm: float = 12.0) -> None:
        if not float(max_norm) > 0:
            raise ValueError(f"ClipGradNorm max_norm must be positive, got {max_norm!r}")
        self.max_norm = float(max_norm)
        #: the norm before clipping at the last iteration (for logs and tests)
        self.last_norm: float | None = None

    def attach(self, engine: Any) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        self.last_norm = float(torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm))
