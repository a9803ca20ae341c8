"""One T-AutoML configuration as one 1-D integer vector, and back.

Layout (T-AutoML, LabelZoo SPEC section 5)::

    [id, type, scale, input_a, input_b] * n_blocks  +  [aug_0 .. aug_7]  +  [lr_code]  +  [loss_code]

- Block ``i`` has id ``i``. Its type is a code into :data:`~labelzoo.automl.space.BLOCK_TYPES`, its scale ``s``
  means it runs at the input size divided by ``2**s``.
- ``input_a`` / ``input_b`` are ids of earlier blocks whose outputs (resampled to the block's scale and
  summed) feed the block. The first block reads the network input: ``(-1, -1)``; the second block reads
  the first: ``(0, -1)``; any later block ``i`` reads ``input_a`` in ``0..i-1`` and optionally a different
  ``input_b`` in ``0..i-1`` (``-1`` = no second input). Any directed acyclic graph is allowed, not only an
  encoder-decoder; blocks nobody reads are the network's outputs (summed at full resolution).
- One 0/1 code per augmentation in :data:`~labelzoo.automl.space.AUGMENTATIONS`, then the learning-rate code
  and the loss code (indices into :data:`~labelzoo.automl.space.LEARNING_RATES` / ``LOSSES``).

Everything here is pure Python (no torch), so it is cheap to import and to test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from labelzoo.automl import space
from labelzoo.errors import LabelZooError


class InvalidVectorError(LabelZooError, ValueError):
    """An integer vector that is not a valid T-AutoML configuration; the message names the position."""


@dataclass(frozen=True)
class Block:
    """One searched block: its id, type name, spatial scale and the ids of its inputs (-1 = none / net input)."""

    id: int
    type: str
    scale: int
    input_a: int
    input_b: int

    @property
    def inputs(self) -> tuple[int, ...]:
        """Ids of the earlier blocks this block reads (empty for the first block, which reads the input)."""
        return tuple(i for i in (self.input_a, self.input_b) if i >= 0)


@dataclass(frozen=True)
class Config:
    """A decoded configuration: network blocks, selected augmentations, learning rate and loss name."""

    blocks: tuple[Block, ...]
    augmentations: tuple[str, ...]
    lr: float
    loss: str

    @property
    def output_blocks(self) -> tuple[int, ...]:
        """Ids of the blocks no later block reads: their outputs form the network's prediction."""
        return output_blocks(self.blocks)


def output_blocks(blocks: Sequence[Block]) -> tuple[int, ...]:
    """Ids of the blocks that no other block takes as input (always includes the last block)."""
    used = {i for b in blocks for i in b.inputs}
    return tuple(b.id for b in blocks if b.id not in used)


def n_blocks_of(length: int) -> int:
    """Number of blocks in a vector of ``length`` integers.

    Raises:
        InvalidVectorError: if ``length`` is not ``5 * n + 10`` with ``n`` in the allowed range.
    """
    body = length - space.TAIL_LENGTH
    per = len(space.BLOCK_FIELDS)
    lo, hi = space.MIN_BLOCKS * per + space.TAIL_LENGTH, space.MAX_BLOCKS * per + space.TAIL_LENGTH
    if body < 0 or body % per or not space.MIN_BLOCKS <= body // per <= space.MAX_BLOCKS:
        raise InvalidVectorError(
            f"a T-AutoML vector has {per} integers per block ({space.MIN_BLOCKS}..{space.MAX_BLOCKS} blocks) plus "
            f"{space.TAIL_LENGTH} for augmentations, lr and loss: expected a length of {per}*n+{space.TAIL_LENGTH} "
            f"between {lo} and {hi}, got {length}"
        )
    return body // per


def _expect(ok: bool, pos: int, what: str, expected: str, got: object) -> None:
    if not ok:
        raise InvalidVectorError(f"position {pos} ({what}): expected {expected}, got {got!r}")


def check_vector(vector: Sequence[int]) -> list[int]:
    """Check that ``vector`` is a valid configuration and return it as a list of Python ints.

    Args:
        vector: the integer vector (a list, tuple or 1-D array).

    Returns:
        The vector as ``list[int]``.

    Raises:
        InvalidVectorError: naming the first wrong position, what it encodes and what was expected.

    Example:
        >>> check_vector([0, 0, 0, -1, -1, 1, 2, 1, 0, -1] + [0] * 8 + [2, 3])[:5]
        [0, 0, 0, -1, -1]
    """
    if isinstance(vector, str | bytes) or not (isinstance(vector, Sequence) or hasattr(vector, "tolist")):
        raise InvalidVectorError(
            f"a T-AutoML configuration must be a sequence of integers, got {type(vector).__name__}"
        )
    values = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    out: list[int] = []
    for pos, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise InvalidVectorError(f"position {pos}: expected an integer, got {v!r}")
        out.append(int(v))
    n = n_blocks_of(len(out))
    per = len(space.BLOCK_FIELDS)
    for i in range(n):
        bid, btype, scale, a, b = out[i * per : (i + 1) * per]
        base = i * per
        _expect(bid == i, base, f"block {i} id", f"{i} (ids count up from 0)", bid)
        _expect(0 <= btype < len(space.BLOCK_TYPES), base + 1, f"block {i} type",
                f"0..{len(space.BLOCK_TYPES) - 1} ({', '.join(space.BLOCK_TYPES)})", btype)
        _expect(0 <= scale < space.NUM_SCALES, base + 2, f"block {i} spatial scale",
                f"0..{space.NUM_SCALES - 1}", scale)
        if i == 0:
            _expect(a == -1, base + 3, "block 0 first input", "-1 (the first block reads the network input)", a)
            _expect(b == -1, base + 4, "block 0 second input", "-1", b)
        elif i == 1:
            _expect(a == 0, base + 3, "block 1 first input", "0 (the second block reads the first)", a)
            _expect(b == -1, base + 4, "block 1 second input", "-1", b)
        else:
            _expect(0 <= a < i, base + 3, f"block {i} first input", f"an earlier block id in 0..{i - 1}", a)
            _expect(b == -1 or (0 <= b < i and b != a), base + 4, f"block {i} second input",
                    f"-1 (none) or an earlier block id in 0..{i - 1} other than the first input {a}", b)
    tail = n * per
    for k, name in enumerate(space.AUGMENTATIONS):
        _expect(out[tail + k] in (0, 1), tail + k, f"augmentation {name!r}", "0 (off) or 1 (on)", out[tail + k])
    pos = tail + len(space.AUGMENTATIONS)
    _expect(0 <= out[pos] < len(space.LEARNING_RATES), pos, "learning-rate code",
            f"0..{len(space.LEARNING_RATES) - 1} for lr {list(space.LEARNING_RATES)}", out[pos])
    _expect(0 <= out[pos + 1] < len(space.LOSSES), pos + 1, "loss code",
            f"0..{len(space.LOSSES) - 1} for {list(space.LOSSES)}", out[pos + 1])
    return out


def decode(vector: Sequence[int]) -> Config:
    """Turn a valid integer vector into a :class:`Config`.

    Raises:
        InvalidVectorError: if the vector is not valid (see :func:`check_vector`).
    """
    v = check_vector(vector)
    n = n_blocks_of(len(v))
    per = len(space.BLOCK_FIELDS)
    blocks = tuple(
        Block(id=v[i * per], type=space.BLOCK_TYPES[v[i * per + 1]], scale=v[i * per + 2],
              input_a=v[i * per + 3], input_b=v[i * per + 4])
        for i in range(n)
    )
    tail = n * per
    augs = tuple(name for k, name in enumerate(space.AUGMENTATIONS) if v[tail + k])
    pos = tail + len(space.AUGMENTATIONS)
    return Config(blocks=blocks, augmentations=augs, lr=space.LEARNING_RATES[v[pos]], loss=space.LOSSES[v[pos + 1]])


def encode(config: Config) -> list[int]:
    """Turn a :class:`Config` into its integer vector (the inverse of :func:`decode`).

    Raises:
        InvalidVectorError: if a name, learning rate or connection is not in the search space.
    """
    vec: list[int] = []
    for b in config.blocks:
        if b.type not in space.BLOCK_TYPES:
            raise InvalidVectorError(f"block {b.id} type: expected one of {list(space.BLOCK_TYPES)}, got {b.type!r}")
        vec += [b.id, space.BLOCK_TYPES.index(b.type), b.scale, b.input_a, b.input_b]
    unknown = set(config.augmentations) - set(space.AUGMENTATIONS)
    if unknown:
        raise InvalidVectorError(
            f"augmentations: expected names from {list(space.AUGMENTATIONS)}, got {sorted(unknown)}"
        )
    vec += [int(name in config.augmentations) for name in space.AUGMENTATIONS]
    if config.lr not in space.LEARNING_RATES:
        raise InvalidVectorError(f"lr: expected one of {list(space.LEARNING_RATES)}, got {config.lr!r}")
    if config.loss not in space.LOSSES:
        raise InvalidVectorError(f"loss: expected one of {list(space.LOSSES)}, got {config.loss!r}")
    vec += [space.LEARNING_RATES.index(config.lr), space.LOSSES.index(config.loss)]
    return check_vector(vec)


def network_part(vector: Sequence[int]) -> list[int]:
    """The block integers of a valid vector (what the network depends on); the tail is dropped."""
    v = check_vector(vector)
    return v[: len(v) - space.TAIL_LENGTH]


def sample_vector(rng: random.Random, n_blocks: int | None = None) -> list[int]:
    """Draw a random valid configuration.

    Block count, types and scales are uniform; block ``i >= 2`` reads the previous block half of the time
    (else any earlier block) and has a second input half of the time; each augmentation is on with
    probability 1/2; lr and loss are uniform.

    Args:
        rng: the random generator (``random.Random(seed)`` for reproducible draws).
        n_blocks: fix the number of blocks, or ``None`` for uniform in ``MIN_BLOCKS..MAX_BLOCKS``.

    Returns:
        A vector that passes :func:`check_vector`.
    """
    n = rng.randint(space.MIN_BLOCKS, space.MAX_BLOCKS) if n_blocks is None else int(n_blocks)
    if not space.MIN_BLOCKS <= n <= space.MAX_BLOCKS:
        raise InvalidVectorError(f"n_blocks: expected {space.MIN_BLOCKS}..{space.MAX_BLOCKS}, got {n_blocks!r}")
    vec: list[int] = []
    for i in range(n):
        if i == 0:
            a, b = -1, -1
        elif i == 1:
            a, b = 0, -1
        else:
            a = i - 1 if rng.random() < 0.5 else rng.randrange(i)
            others = [j for j in range(i) if j != a]
            b = rng.choice(others) if rng.random() < 0.5 else -1
        vec += [i, rng.randrange(len(space.BLOCK_TYPES)), rng.randrange(space.NUM_SCALES), a, b]
    vec += [int(rng.random() < 0.5) for _ in space.AUGMENTATIONS]
    vec += [rng.randrange(len(space.LEARNING_RATES)), rng.randrange(len(space.LOSSES))]
    return check_vector(vec)


def sample_unique(rng: random.Random, count: int, exclude: Sequence[Sequence[int]] = (),
                  max_tries: int | None = None) -> list[list[int]]:
    """Draw ``count`` distinct valid vectors that are not in ``exclude``.

    Raises:
        LabelZooError: if ``count`` distinct vectors cannot be found within ``max_tries`` draws.
    """
    seen = {tuple(v) for v in exclude}
    out: list[list[int]] = []
    tries = max_tries if max_tries is not None else 100 * max(count, 1)
    for _ in range(tries):
        if len(out) >= count:
            break
        v = sample_vector(rng)
        if tuple(v) not in seen:
            seen.add(tuple(v))
            out.append(v)
    if len(out) < count:
        raise LabelZooError(f"could only draw {len(out)} distinct configurations of the {count} asked for")
    return out
