"""The T-AutoML pairwise-ranking predictor: a small transformer that reads two encoded configurations and
outputs the probability that the first one scores higher.

Tokens: each block of a configuration is one token (sum of learned embeddings of its type, spatial scale,
id and two input ids); the augmentation bits, the learning-rate code and the loss code are one token
each. The pair is read as ``[CLS] tokens(a) tokens(b)`` with a segment embedding telling ``a`` from ``b``
(padding blocks are masked) by a :class:`torch.nn.TransformerEncoder`; a linear head on ``[CLS]`` gives a
logit ``f(a, b)``. The probability is ``sigmoid(f(a, b) - f(b, a))``, so ``P(a > b) + P(b > a) = 1`` by
construction.

Training uses all ordered pairs ``(i, j)``, ``i != j``, of the observed (configuration, validation Dice)
results whose scores differ, with binary cross-entropy. Evaluation on held-out configurations reports the
pairwise accuracy and Kendall's tau between the predicted ranking (mean win probability against the other
configurations) and the actual scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from labelzoo.automl import space
from labelzoo.automl.encoding import check_vector, n_blocks_of
from labelzoo.automl.train import torch_threads
from labelzoo.errors import LabelZooError

logger = logging.getLogger(__name__)

#: Tokens per configuration: one per block slot, then augmentations, lr and loss.
TOKENS_PER_CONFIG = space.MAX_BLOCKS + 3
_PER = len(space.BLOCK_FIELDS)
_N_AUG = len(space.AUGMENTATIONS)


def vectors_to_tensor(vectors: Sequence[Sequence[int]]) -> torch.Tensor:
    """Pack vectors of any valid length into one ``(N, MAX_BLOCKS * 5 + 10)`` long tensor.

    Missing block slots are filled with ``-2``; the tail (augmentations, lr, loss) is always the last 10.

    Raises:
        InvalidVectorError: for an invalid vector (the message names the position).
    """
    width = space.MAX_BLOCKS * _PER + space.TAIL_LENGTH
    out = torch.full((len(vectors), width), -2, dtype=torch.long)
    for row, vector in enumerate(vectors):
        v = check_vector(vector)
        n = n_blocks_of(len(v))
        out[row, : n * _PER] = torch.tensor(v[: n * _PER])
        out[row, -space.TAIL_LENGTH :] = torch.tensor(v[n * _PER :])
    return out


class PairwiseRanker(nn.Module):
    """Transformer over two configurations; ``forward(a, b)`` returns ``P(score(a) > score(b))``.

    Args:
        d_model: token width.
        nhead: attention heads.
        num_layers: transformer encoder layers.
        dim_feedforward: width of the feed-forward layers.
        dropout: dropout in the encoder layers.

    Inputs are packed vectors from :func:`vectors_to_tensor`, shape ``(B, MAX_BLOCKS * 5 + 10)``; the output
    is a ``(B,)`` tensor of probabilities.
    """

    def __init__(self, d_model: int = 32, nhead: int = 4, num_layers: int = 2, dim_feedforward: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead})")
        nb = space.MAX_BLOCKS
        self.type_emb = nn.Embedding(len(space.BLOCK_TYPES), d_model)
        self.scale_emb = nn.Embedding(space.NUM_SCALES, d_model)
        self.id_emb = nn.Embedding(nb, d_model)
        self.input_a_emb = nn.Embedding(nb + 1, d_model)  # index = id + 1 (0 = network input / none)
        self.input_b_emb = nn.Embedding(nb + 1, d_model)
        self.aug_proj = nn.Linear(_N_AUG, d_model)
        self.lr_emb = nn.Embedding(len(space.LEARNING_RATES), d_model)
        self.loss_emb = nn.Embedding(len(space.LOSSES), d_model)
        self.kind_emb = nn.Embedding(4, d_model)  # block, augmentations, lr, loss
        self.segment_emb = nn.Embedding(2, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)

    def _tokens(self, packed: torch.Tensor, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, d)`` tokens and ``(B, T)`` padding mask (True = padding) of one side of the pair."""
        b = packed.shape[0]
        blocks = packed[:, : space.MAX_BLOCKS * _PER].reshape(b, space.MAX_BLOCKS, _PER)
        pad = blocks[..., 0] < 0
        safe = blocks.clamp(min=-1)
        tok = (self.id_emb(safe[..., 0].clamp(min=0)) + self.type_emb(safe[..., 1].clamp(min=0))
               + self.scale_emb(safe[..., 2].clamp(min=0)) + self.input_a_emb(safe[..., 3] + 1)
               + self.input_b_emb(safe[..., 4] + 1) + self.kind_emb.weight[0])
        tail = packed[:, -space.TAIL_LENGTH :]
        aug = self.aug_proj(tail[:, :_N_AUG].float()) + self.kind_emb.weight[1]
        lr = self.lr_emb(tail[:, _N_AUG]) + self.kind_emb.weight[2]
        loss = self.loss_emb(tail[:, _N_AUG + 1]) + self.kind_emb.weight[3]
        tokens = torch.cat([tok, aug[:, None], lr[:, None], loss[:, None]], dim=1) + self.segment_emb.weight[segment]
        mask = torch.cat([pad, torch.zeros(b, 3, dtype=torch.bool, device=packed.device)], dim=1)
        return tokens, mask

    def logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The raw, not yet antisymmetric score ``f(a, b)``, shape ``(B,)``."""
        ta, ma = self._tokens(a, 0)
        tb, mb = self._tokens(b, 1)
        cls = self.cls.expand(a.shape[0], -1, -1)
        x = torch.cat([cls, ta, tb], dim=1)
        mask = torch.cat([torch.zeros(a.shape[0], 1, dtype=torch.bool, device=a.device), ma, mb], dim=1)
        return self.head(self.encoder(x, src_key_padding_mask=mask)[:, 0]).squeeze(-1)

    def pair_logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Antisymmetric logit ``f(a, b) - f(b, a)``: its sigmoid is ``P(a > b)``."""
        return self.logit(a, b) - self.logit(b, a)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``P(score(a) > score(b))`` for each row, shape ``(B,)``."""
        return torch.sigmoid(self.pair_logit(a, b))


def ordered_pairs(scores: Sequence[float]) -> tuple[list[int], list[int], list[float]]:
    """All ordered pairs ``(i, j)``, ``i != j``, with different scores, and the target ``score_i > score_j``."""
    first, second, target = [], [], []
    for i, si in enumerate(scores):
        for j, sj in enumerate(scores):
            if i != j and si != sj:
                first.append(i)
                second.append(j)
                target.append(1.0 if si > sj else 0.0)
    return first, second, target


def fit_predictor(vectors: Sequence[Sequence[int]], scores: Sequence[float], epochs: int = 20,
                  batch_size: int = 256, lr: float = 3e-3, seed: int = 0, num_threads: int | None = 1,
                  **model_kwargs: int | float) -> PairwiseRanker:
    """Train a :class:`PairwiseRanker` on all ordered pairs of observed (configuration, score) results.

    Args:
        vectors: observed configurations.
        scores: their validation Dice (or any score, higher is better).
        epochs: passes over all pairs.
        batch_size: pairs per optimiser step.
        lr: AdamW learning rate.
        seed: seeds the weights and the pair order.
        num_threads: torch CPU threads while training (the model is tiny: one thread is faster than several
            on a busy machine, measured 10x on 2 shared cores); ``None`` keeps the current setting.
        **model_kwargs: passed to :class:`PairwiseRanker`.

    Raises:
        LabelZooError: with fewer than 2 configurations of different scores, or mismatched lengths.
    """
    if len(vectors) != len(scores):
        raise LabelZooError(f"got {len(vectors)} configurations but {len(scores)} scores")
    first, second, target = ordered_pairs([float(s) for s in scores])
    if not first:
        raise LabelZooError("the predictor needs at least 2 configurations with different scores")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = PairwiseRanker(**model_kwargs)
    packed = vectors_to_tensor(vectors)
    a_idx, b_idx, y = torch.tensor(first), torch.tensor(second), torch.tensor(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    with torch_threads(num_threads):
        _fit(model, optimizer, loss_fn, packed, a_idx, b_idx, y, epochs, batch_size, gen)
    model.eval()
    return model


def _fit(model: PairwiseRanker, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, packed: torch.Tensor,
         a_idx: torch.Tensor, b_idx: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
         gen: torch.Generator) -> None:
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), batch_size):
            sel = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model.pair_logit(packed[a_idx[sel]], packed[b_idx[sel]]), y[sel])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(sel)
        logger.debug("predictor epoch %d: loss %.4f", epoch, total / len(y))


@torch.no_grad()
def win_probability(model: PairwiseRanker, candidates: Sequence[Sequence[int]],
                    reference: Sequence[Sequence[int]], batch_size: int = 4096) -> list[float]:
    """Mean ``P(candidate > r)`` over the reference configurations ``r``: the predicted ranking score.

    A candidate that is also a reference is not compared with itself.
    """
    if not reference:
        raise LabelZooError("win_probability needs at least one reference configuration")
    model.eval()
    cand, ref = vectors_to_tensor(candidates), vectors_to_tensor(reference)
    nc, nr = len(cand), len(ref)
    ci = torch.arange(nc).repeat_interleave(nr)
    ri = torch.arange(nr).repeat(nc)
    probs = torch.empty(nc * nr)
    with torch_threads(1):
        for start in range(0, nc * nr, batch_size):
            s = slice(start, start + batch_size)
            probs[s] = model(cand[ci[s]], ref[ri[s]])
    same = (cand[ci] == ref[ri]).all(dim=1)
    probs = probs.masked_fill(same, float("nan")).reshape(nc, nr)
    return [float(v) if math.isfinite(v) else 0.5 for v in torch.nanmean(probs, dim=1).tolist()]


@dataclass
class RankingReport:
    """How well the predictor ranks held-out configurations."""

    pairwise_accuracy: float
    kendall_tau: float
    n_pairs: int
    n_configs: int

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON."""
        return {"pairwise_accuracy": self.pairwise_accuracy, "kendall_tau": self.kendall_tau,
                "n_pairs": self.n_pairs, "n_configs": self.n_configs}


@torch.no_grad()
def evaluate_predictor(model: PairwiseRanker, vectors: Sequence[Sequence[int]],
                       scores: Sequence[float]) -> RankingReport:
    """Pairwise accuracy over all ordered held-out pairs with different scores, and Kendall's tau between
    the predicted ranking score (:func:`win_probability` against the other held-out configurations) and the
    actual scores.

    Raises:
        LabelZooError: with fewer than 2 held-out configurations of different scores.
    """
    from scipy.stats import kendalltau

    first, second, target = ordered_pairs([float(s) for s in scores])
    if not first:
        raise LabelZooError("evaluating the predictor needs at least 2 configurations with different scores")
    packed = vectors_to_tensor(vectors)
    p = model(packed[torch.tensor(first)], packed[torch.tensor(second)])
    correct = ((p > 0.5).float() == torch.tensor(target)).float().mean().item()
    predicted = win_probability(model, vectors, vectors)
    tau = kendalltau(predicted, list(scores)).statistic
    return RankingReport(pairwise_accuracy=float(correct), kendall_tau=float(tau) if math.isfinite(tau) else 0.0,
                         n_pairs=len(first), n_configs=len(vectors))
