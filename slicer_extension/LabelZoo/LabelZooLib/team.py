"""Several annotators on one server, as the annotator sees it: who else labelled this image, who holds it,
and what to ask before replacing someone's label. Plain Python over the server's ``/labelzoo/annotations``
answer (no Slicer imports), tested against a live server.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImageTeam:
    """Who worked on one image, from the annotator ``me``'s point of view."""

    image: str
    me: str
    final_by: str | None = None
    readers: list[str] = field(default_factory=list)
    holders: list[tuple[str, float]] = field(default_factory=list)  # (annotator, seconds left)
    versions: int = 0
    reads_per_image: int = 1

    @property
    def others_label(self) -> bool:
        """Saving a final label would replace another annotator's (the server answers 409 without ``replace``)."""
        return self.reads_per_image <= 1 and self.final_by is not None and self.final_by != self.me

    def replace_question(self) -> str | None:
        """The question to ask before saving, or ``None`` when nothing of anybody else's is replaced."""
        if not self.others_label:
            return None
        return (f"{self.image} already has a final label by {self.final_by}. Replace it with yours? "
                "(Theirs is kept as a prior version.)")

    def describe(self) -> str:
        parts = []
        if self.final_by:
            parts.append(f"final label by {self.final_by}")
        others = [r for r in self.readers if r != self.me]
        if others:
            parts.append(f"also read by {', '.join(others)}")
        held = [f"{who} ({int(left // 60)} min left)" for who, left in self.holders if who != self.me]
        if held:
            parts.append(f"being annotated by {', '.join(held)}")
        if self.versions:
            parts.append(f"{self.versions} prior version{'s' if self.versions != 1 else ''}")
        return "; ".join(parts) or "nobody else has labelled this image"


def image_team(answer: Mapping[str, Any], me: str, now: float | None = None) -> ImageTeam:
    """Read the server's ``GET /labelzoo/annotations`` answer for annotator ``me``."""
    labels = answer.get("labels") or {}
    readers = sorted({(v or {}).get("annotator") for t, v in labels.items()
                      if t.startswith("read-") and (v or {}).get("annotator")})
    now = time.time() if now is None else now
    holders = [(le.get("annotator"), max(0.0, float(le.get("expires_ts", now)) - now))
               for le in answer.get("leases") or []]
    return ImageTeam(image=str(answer.get("image")), me=me, final_by=(labels.get("final") or {}).get("annotator"),
                     readers=readers, holders=holders, versions=len(answer.get("versions") or []),
                     reads_per_image=int(answer.get("reads_per_image") or 1))


def compare_choices(answer: Mapping[str, Any], me: str) -> dict[str, tuple[str, str | int]]:
    """What annotator ``me`` can open read-only to compare with, from ``GET /labelzoo/annotations``.

    Returns:
        ``{menu text: ("tag", tag) or ("version", index)}``: the final, consensus and ``read-*`` labels of other
        annotators, then every prior (replaced) version; what :func:`~LabelZooLib.remote.download_for_compare`
        takes.
    """
    choices: dict[str, tuple[str, str | int]] = {}
    for tag, record in (answer.get("labels") or {}).items():
        record = record or {}
        if (tag in ("final", "consensus") or tag.startswith("read-")) and record.get("annotator") != me:
            choices[f"{tag} by {record.get('annotator')}"] = ("tag", tag)
    for index, version in enumerate(answer.get("versions") or []):
        choices[f"prior version {index} by {(version or {}).get('annotator')}"] = ("version", index)
    return choices
