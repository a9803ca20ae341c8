"""Network checks: ``verify_net_in_out`` with the metadata's shapes and a TorchScript export round-trip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from labelzoo.bundle.problems import Problem

logger = logging.getLogger(__name__)

INFER = "configs/inference.json"


def check_net_in_out(bundle: Path, overrides: dict[str, Any] | None = None) -> list[Problem]:
    """``monai.bundle.verify_net_in_out`` on ``network_def`` of inference.json at the metadata's shapes."""
    from monai.bundle import verify_net_in_out

    try:
        verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                          config_file=str(bundle / INFER), device="cpu", **(overrides or {}))
    except Exception as e:  # noqa: BLE001 (every failure is a finding)
        return [Problem("network", INFER, f"verify_net_in_out with metadata network_data_format failed: "
                                          f"{type(e).__name__}: {e}", "network_def")]
    return []


def check_torchscript(bundle: Path, workdir: Path, input_shape: tuple[int, ...],
                      overrides: dict[str, Any] | None = None) -> list[Problem]:
    """Export ``network_def`` with ``monai.bundle.ckpt_export`` to TorchScript, reload it, compare outputs.

    Args:
        bundle: the bundle folder.
        workdir: where the checkpoint and ``model.ts`` are written.
        input_shape: ``(1, C, *spatial)`` of the test input (the smoke patch size keeps this small).
        overrides: config ids to override (the smoke ``all``/``inference`` sections shrink the network).
    """
    import torch
    from monai.bundle import ConfigParser, ckpt_export

    workdir.mkdir(parents=True, exist_ok=True)
    overrides = dict(overrides or {})
    try:
        parser = ConfigParser()
        parser.read_config(str(bundle / INFER))
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        for k, v in overrides.items():
            parser[k] = v
        net = parser.get_parsed_content("network_def").eval()
        ckpt = workdir / "model.pt"
        torch.save({"model": net.state_dict()}, ckpt)
        ts = workdir / "model.ts"
        ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt),
                    meta_file=str(bundle / "configs" / "metadata.json"), config_file=str(bundle / INFER),
                    key_in_ckpt="model", bundle_root=str(bundle), **overrides)
        loaded = torch.jit.load(str(ts), map_location="cpu").eval()
        x = torch.rand(*input_shape)
        with torch.no_grad():
            want, got = net(x), loaded(x)
        want = want[0] if isinstance(want, (list, tuple)) else want
        got = got[0] if isinstance(got, (list, tuple)) else got
        if not torch.allclose(want, got, atol=1e-4, rtol=1e-3):
            diff = float((want - got).abs().max())
            return [Problem("torchscript", INFER, f"the reloaded TorchScript model differs from the eager network "
                                                  f"(max abs difference {diff:.3g})", "network_def")]
    except Exception as e:  # noqa: BLE001
        return [Problem("torchscript", INFER, f"TorchScript export (ckpt_export) and reload failed: "
                                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                                              "if the network cannot be scripted, set \"torchscript_export\": false "
                                              "and a \"torchscript_export_reason\" in metadata.json",
                        "network_def")]
    return []
