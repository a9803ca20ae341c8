"""What the bundles' docs and metadata claim, checked against the code and the installed MONAI before anything is
published: UNETR's skip layers and parameter counts, the zoo README sections, ``eval_metrics`` only from measured
runs (the repository's bundles ship untrained, so none), one metadata schema version."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from labelzoo.bundle.zoochecks import ZOO_SCHEMA
from tests.app.conftest import REPO_ROOT

BUNDLES = sorted(p for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
SECTIONS = ("## Performance", "## Training configuration", "## MONAI Bundle Commands")


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_zoo_readme_sections_and_metadata(bundle: Path) -> None:
    readme = (bundle / "docs" / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    for section in SECTIONS:
        assert any(h.startswith(section) for h in headings), f"{bundle.name}: no '{section}' section"
    assert re.search(r"from the bundle folder|from its folder", readme, re.I), f"{bundle.name}: run from where?"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["schema"].rsplit("/", 1)[-1] == ZOO_SCHEMA
    assert meta.get("eval_metrics", {}) == {}, f"{bundle.name}: eval_metrics without a measured run"


def test_unetr_readme_matches_monai() -> None:
    from monai.bundle import ConfigParser
    from monai.networks.nets import UNETR

    bundle = REPO_ROOT / "bundles" / "btcv_ct_unetr_segmentation"
    readme = (bundle / "docs" / "README.md").read_text()
    source = inspect.getsource(UNETR.forward)
    skips = [int(i) + 1 for i in re.findall(r"hidden_states_out\[(\d+)\]", source)]
    assert skips == [4, 7, 10]
    assert "blocks **4, 7 and 10**" in readme
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def")
    total = sum(p.numel() for p in net.parameters())
    cross = sum(p.numel() for n, p in net.named_parameters() if ".cross_attn." in n)
    assert f"{total:,} ({total / 1e6:.1f}M)" in readme
    assert f"{cross:,} ({cross / 1e6:.1f}M)" in readme
    assert all(not b.with_cross_attention for b in net.vit.blocks)  # the cross-attention layers are never called
