"""The one result type of every bundle check: a :class:`Problem` naming the file and config id at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One failed check.

    Attributes:
        check: the check that failed (``layout``, ``metadata``, ``properties``, ``monailabel``, ``keys``,
            ``network``, ``torchscript``, ``smoke``, ``run:train``, ``run:evaluate``, ``run:inference``...).
        file: the file at fault, relative to the bundle folder (``configs/train.json``) or absolute when it
            lies outside the bundle (a variant file, a run log).
        message: what is wrong and what was expected.
        id: the config id at fault (``train#trainer#max_epochs``), or ``""`` when the whole file is meant.
    """

    check: str
    file: str
    message: str
    id: str = ""

    def __str__(self) -> str:
        where = f"{self.file}#{self.id}" if self.id else self.file
        return f"{where}: {self.message} [{self.check}]"
