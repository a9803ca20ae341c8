"""Label table, segment <-> label-value mapping with stable colours, and label-map merging (numpy only).

A label map is an integer array: 0 is background, every other value is one structure. The server names
its values (``info()["labels"]``, ``info()["models"][m]["labels"]``); Slicer names its segments. The
:class:`LabelTable` ties the two together so that the same name always gets the same value and the same
colour, in every session and on every machine.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LabelZooLibError

#: Colours (0-255 RGB) of common structures, close to Slicer's GenericAnatomyColors, so that a spleen
#: looks like a spleen in every LabelZoo session. Keys are normalised names (see :func:`normalize_name`).
ANATOMY_COLORS: dict[str, tuple[int, int, int]] = {
    "spleen": (157, 108, 162),
    "liver": (221, 130, 101),
    "kidney": (185, 102, 83),
    "right kidney": (185, 102, 83),
    "left kidney": (185, 102, 83),
    "gallbladder": (139, 150, 98),
    "esophagus": (211, 171, 143),
    "stomach": (216, 132, 105),
    "aorta": (224, 97, 76),
    "inferior vena cava": (0, 151, 206),
    "portal vein and splenic vein": (0, 112, 165),
    "pancreas": (249, 180, 111),
    "right adrenal gland": (244, 214, 49),
    "left adrenal gland": (244, 214, 49),
    "adrenal gland": (244, 214, 49),
    "duodenum": (255, 253, 229),
    "bladder": (222, 154, 132),
    "prostate": (230, 158, 140),
    "heart": (206, 110, 84),
    "lung": (197, 165, 145),
    "left lung": (197, 165, 145),
    "right lung": (197, 165, 145),
    "bone": (241, 214, 145),
    "tumor": (144, 238, 144),
    "lesion": (144, 238, 144),
}

BACKGROUND_NAMES = frozenset({"background", "bg", "_background_"})


def normalize_name(name: str) -> str:
    """Lower case, ``_``/``-`` as spaces, single spaces: ``Left_Kidney`` -> ``left kidney``."""
    return " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())


def stable_color(name: str) -> tuple[float, float, float]:
    """The colour of a structure name, as RGB floats in [0, 1], the same on every machine.

    Known anatomy gets its usual colour (:data:`ANATOMY_COLORS`); any other name gets a bright colour whose
    hue comes from a hash of the normalised name (not Python's salted ``hash``).
    """
    key = normalize_name(name)
    if key in ANATOMY_COLORS:
        return tuple(round(c / 255.0, 4) for c in ANATOMY_COLORS[key])  # type: ignore[return-value]
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65535.0
    saturation = 0.55 + 0.35 * digest[2] / 255.0
    value = 0.75 + 0.2 * digest[3] / 255.0
    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, saturation, value))  # type: ignore[return-value]


@dataclass(frozen=True)
class Label:
    """One structure: its name, label-map value and display colour (RGB floats in [0, 1])."""

    name: str
    value: int
    color: tuple[float, float, float]


class LabelTable:
    """An ordered, one-to-one table of label names and values (value 0, the background, is never in it).

    Example::

        table = LabelTable.from_server({"background": 0, "spleen": 1, "liver": 6})
        table.value_of("liver")      # 6
        table.add("tumor").value     # 7, the next free value
    """

    def __init__(self, labels: Iterable[Label] = ()):
        self._by_name: dict[str, Label] = {}
        self._by_value: dict[int, Label] = {}
        for label in labels:
            self.add(label.name, label.value, label.color)

    @classmethod
    def from_server(cls, labels: Mapping[str, Any] | Sequence[str] | None) -> LabelTable:
        """A table from the server's ``labels``: a ``{name: value}`` dict, or a list of names (values 1..n).

        Background entries (value 0 or a name like ``background``) are left out.

        Raises:
            LabelZooLibError: when a value is not a non-negative integer or two names share a value.
        """
        table = cls()
        if not labels:
            return table
        if isinstance(labels, Mapping):
            for name, value in sorted(labels.items(), key=lambda kv: _as_value(kv[0], kv[1])):
                value = _as_value(name, value)
                if value == 0 or normalize_name(name) in BACKGROUND_NAMES:
                    continue
                table.add(str(name), value)
        else:
            names = [n for n in labels if normalize_name(n) not in BACKGROUND_NAMES]
            for value, name in enumerate(names, start=1):
                table.add(str(name), value)
        return table

    @classmethod
    def from_label_info(cls, label_info: Iterable[Mapping[str, Any]]) -> LabelTable:
        """The inverse of :meth:`to_label_info` (``[{"name", "idx", "color"?}, ...]``)."""
        table = cls()
        for item in label_info:
            if "name" not in item or "idx" not in item:
                raise LabelZooLibError(f"label_info entry {dict(item)!r} needs 'name' and 'idx'")
            color = item.get("color")
            table.add(str(item["name"]), _as_value(item["name"], item["idx"]),
                      tuple(float(c) for c in color) if color else None)  # type: ignore[arg-type]
        return table

    def add(self, name: str, value: int | None = None, color: tuple[float, float, float] | None = None) -> Label:
        """Add ``name`` (at ``value``, or the next free value); adding an existing name returns it unchanged.

        Raises:
            LabelZooLibError: when ``value`` is 0 or negative, belongs to another name, or ``name`` exists with
                another value.
        """
        name = str(name).strip()
        if not name:
            raise LabelZooLibError("a label name must not be empty")
        existing = self._by_name.get(name)
        if existing is not None:
            if value is not None and value != existing.value:
                raise LabelZooLibError(f"label {name!r} already has value {existing.value}, not {value}")
            return existing
        if value is None:
            value = self.next_value()
        value = _as_value(name, value)
        if value == 0:
            raise LabelZooLibError(f"label {name!r}: value 0 is the background; expected a value >= 1")
        if value in self._by_value:
            raise LabelZooLibError(
                f"label value {value} is already {self._by_value[value].name!r}; cannot also be {name!r}"
            )
        label = Label(name, value, tuple(color) if color else stable_color(name))  # type: ignore[arg-type]
        self._by_name[name] = label
        self._by_value[value] = label
        return label

    def next_value(self) -> int:
        """The smallest value above every value in the table (1 for an empty table)."""
        return max(self._by_value, default=0) + 1

    def value_of(self, name: str) -> int:
        """The value of ``name``. Raises LabelZooLibError naming the known labels when it is absent."""
        try:
            return self._by_name[name].value
        except KeyError:
            raise LabelZooLibError(f"no label named {name!r}; known labels: {self.names}") from None

    def name_of(self, value: int) -> str:
        """The name of ``value``. Raises LabelZooLibError naming the known values when it is absent."""
        try:
            return self._by_value[int(value)].name
        except KeyError:
            raise LabelZooLibError(f"no label with value {value}; known values: {self.values}") from None

    def get(self, name: str) -> Label | None:
        """The label named ``name``, or ``None``."""
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return [label.name for label in self]

    @property
    def values(self) -> list[int]:
        return [label.value for label in self]

    def __iter__(self) -> Iterator[Label]:
        return iter(sorted(self._by_value.values(), key=lambda label: label.value))

    def __len__(self) -> int:
        return len(self._by_value)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelTable) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"LabelTable({ {label.name: label.value for label in self} })"

    def to_label_info(self) -> list[dict[str, Any]]:
        """``[{"name", "idx", "color"}]``: what the server stores with a submitted label."""
        return [{"name": lb.name, "idx": lb.value, "color": list(lb.color)} for lb in self]

    def to_names(self) -> dict[str, int]:
        """``{name: value}``, the form MONAI Label apps and bundles use for ``labels``."""
        return {lb.name: lb.value for lb in self}

    def copy(self) -> LabelTable:
        return LabelTable(list(self))


def _as_value(name: Any, value: Any) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or not np.isfinite(value)
            or int(value) != value or value < 0):
        raise LabelZooLibError(f"label {name!r}: value {value!r} is not a non-negative integer")
    return int(value)


def assign_values(segment_names: Sequence[str], table: LabelTable) -> dict[str, int]:
    """Map segment names to label values: known names keep their value, new names get the next free ones.

    New names are added to ``table`` (in ``segment_names`` order), so the mapping stays the same for the
    rest of the session.
    """
    return {name: table.add(name).value for name in segment_names}


def segments_to_labelmap(
    masks: Mapping[str, np.ndarray], table: LabelTable, dtype: type | np.dtype | None = None
) -> np.ndarray:
    """Combine binary segment masks into one label map, each segment written with its table value.

    New segment names are added to ``table`` first. Where segments overlap, the later one (in ``masks``
    order) wins, as when Slicer exports overlapping segments.

    Raises:
        LabelZooLibError: when there is no mask or the masks' shapes differ.
    """
    if not masks:
        raise LabelZooLibError("no segments to convert: expected at least one segment mask")
    shapes = {name: np.shape(mask) for name, mask in masks.items()}
    shape = next(iter(shapes.values()))
    bad = {n: s for n, s in shapes.items() if s != shape}
    if bad:
        raise LabelZooLibError(f"segment masks differ in shape: expected {shape} for all, got {bad}")
    values = assign_values(list(masks), table)
    if dtype is None:
        dtype = np.uint8 if max(values.values()) < 256 else np.uint16
    labelmap = np.zeros(shape, dtype=dtype)
    for name, mask in masks.items():
        labelmap[np.asarray(mask).astype(bool)] = values[name]
    return labelmap


def labelmap_to_segments(labelmap: np.ndarray, table: LabelTable) -> dict[str, np.ndarray]:
    """Split a label map into one boolean mask per value present, named by ``table``.

    A value the table does not know is added as ``label_<value>`` so nothing the model found is dropped.
    """
    labelmap = np.asarray(labelmap)
    out: dict[str, np.ndarray] = {}
    for value in np.unique(labelmap):
        value = int(value)
        if value == 0:
            continue
        label = table._by_value.get(value) or table.add(f"label_{value}", value)
        out[label.name] = labelmap == value
    return out


def value_mapping(source: LabelTable, target: LabelTable) -> dict[int, int]:
    """Map the values of ``source`` (e.g. a model's labels) to ``target`` (the session's) by name.

    Names ``target`` lacks are added to it with their source value when free, else the next free value.
    """
    mapping: dict[int, int] = {}
    for label in source:
        existing = target.get(label.name)
        if existing is None:
            free = label.value not in target.values
            existing = target.add(label.name, label.value if free else None, label.color)
        mapping[label.value] = existing.value
    return mapping


def remap_labelmap(labelmap: np.ndarray, mapping: Mapping[int, int], keep_unmapped: bool = False) -> np.ndarray:
    """Replace each value by ``mapping[value]``; unmapped values become 0 unless ``keep_unmapped``."""
    labelmap = np.asarray(labelmap)
    if not np.issubdtype(labelmap.dtype, np.integer):
        if not np.all(np.equal(np.mod(labelmap, 1), 0)):
            raise LabelZooLibError(f"a label map must hold whole numbers; got dtype {labelmap.dtype} with fractions")
        labelmap = labelmap.astype(np.int64)
    top = max([int(labelmap.max(initial=0)), *mapping.keys(), *mapping.values(), 0])
    lut = np.arange(top + 1) if keep_unmapped else np.zeros(top + 1, dtype=np.int64)
    lut[0] = 0
    for src, dst in mapping.items():
        lut[int(src)] = int(dst)
    out_dtype = np.uint8 if lut.max(initial=0) < 256 else np.uint16
    return lut[labelmap].astype(out_dtype)


MERGE_MODES = ("replace", "fill", "overwrite")


def merge_labelmap(
    current: np.ndarray | None,
    incoming: np.ndarray,
    mode: str = "replace",
    labels: Iterable[int] | None = None,
) -> np.ndarray:
    """Merge a label map returned by the server into the annotator's current one.

    Args:
        current: the annotator's label map, or ``None`` (nothing drawn yet).
        incoming: the server's label map, already in the session's values (see :func:`remap_labelmap`).
        mode: ``replace``: each label in ``incoming`` replaces that label in ``current`` (other labels stay,
            except where the new labels cover them); ``fill``: ``incoming`` only fills background voxels of
            ``current``, never touching what the annotator drew; ``overwrite``: ``incoming`` replaces
            everything.
        labels: only merge these values of ``incoming`` (default: all of them).

    Returns:
        A new label map; neither input is modified.

    Raises:
        LabelZooLibError: for an unknown ``mode`` or shapes that differ.
    """
    if mode not in MERGE_MODES:
        raise LabelZooLibError(f"merge mode {mode!r} is not one of {MERGE_MODES}")
    incoming = np.asarray(incoming)
    if labels is not None:
        keep = np.isin(incoming, [int(v) for v in labels])
        incoming = np.where(keep, incoming, 0)
    if current is None:
        current = np.zeros(incoming.shape, dtype=incoming.dtype)
    current = np.asarray(current)
    if current.shape != incoming.shape:
        raise LabelZooLibError(
            f"the server's label map has shape {incoming.shape} but the current segmentation has shape "
            f"{current.shape}; expected the geometry of the same image"
        )
    dtype = np.promote_types(current.dtype, incoming.dtype)
    if mode == "overwrite":
        return incoming.astype(dtype, copy=True)
    merged = current.astype(dtype, copy=True)
    if mode == "replace":
        present = [int(v) for v in np.unique(incoming) if v != 0]
        if labels is not None:
            present = sorted(set(present) | {int(v) for v in labels})
        merged[np.isin(merged, present)] = 0
        merged[incoming != 0] = incoming[incoming != 0]
    else:  # fill
        free = (merged == 0) & (incoming != 0)
        merged[free] = incoming[free]
    return merged
