"""The interactive variant of a planned bundle (``labelzoo plan ... --interactive``).

A planned configuration (``labelzoo.planning.emit``: spacing, normalisation, patch size, DynUNet topology) is
rewritten into an interactive bundle of the same recipe, as ``bundles/abdomen_ct_dynunet_interactive_annotation``
is built: the network takes the image plus guidance channels (per label a box channel, a prior-mask channel and
a MONAI DeepEdit click channel, and a background click channel; :mod:`labelzoo.interactive.transforms`), training
draws prompts from the ground truth (``SimulatePromptsd``) and MONAI DeepEdit's ``Interaction`` adds corrective
clicks, inference turns a request's prompts into those channels (``PromptGuidanced``), may predict on the prompt
region only and answer with that region (``CropToPromptsd``, ``InvertToRegiond``), and the metadata declares
``guidance_channels`` so the LabelZoo app serves it as a MONAI Label DeepEdit model.

The variant is made from the emitted bundle's own JSON (not from the planner's internals), so it follows
whatever the planner emits. Deep supervision is off (DeepEdit's click simulation runs the network in eval mode;
one output head).

Configurations: ``3d_fullres``, ``3d_lowres`` and ``2d``. The ``2d`` variant trains on the planned 2D slices
with 2D guidance (the same transforms: DeepEdit's handle 2D, LabelZoo's take 2D labels and ``[i, j]`` points;
boxes, scribbles and lassos are drawn on the slice) and, on volumes, infers slice by slice (``SliceInferer``)
with the request's 3D prompts: a click's Gaussian spans its own slice only (the click sigma is ~0 along the slice
axis, :data:`SLICE_GUIDANCE_SIGMA`), so a click guides its slice and a slice without prompts gets the automatic
answer; a 2D box must lie on one of the model's slices, a 3D box is a box on each slice it spans, the prompt
region spans the prompted slices; ``metadata.json`` declares ``labelzoo.slice_axis`` so the app serves it on 3D
images (the prompts are 3D voxel indices). On 2D data (``file_ndim`` 2: radiographs) it is a plain 2D model.

The cascade's stage 2 (``3d_cascade_fullres``) gets no variant: its input holds stage 1's segmentation (read
from stage 1's cross-validation predictions in training, made by a whole stage-1 run inside ``CascadeInferer``
at inference), and the interactive variants already have a channel for a segmentation to refine: the prior
mask, which in annotation is the current mask (the automatic suggestion or the annotator's edit) rather than a
fixed stage-1 output. A stage-1 run per click would also add a whole low-resolution inference to each click's
latency and cannot be cropped to the prompt region. Use the ``3d_lowres`` or ``3d_fullres`` variant.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from labelzoo.errors import LabelZooError
from labelzoo.io import write_json_atomic

#: Planned configurations that get an interactive variant (not the cascade's stage 2: see the module docstring).
INTERACTIVE_CONFIGURATIONS = ("3d_fullres", "3d_lowres", "2d")
#: The click Gaussian's sigma in voxels of the planned spacing, from ``guidance_sigma_mm`` (as the hand-written
#: interactive bundle: a click as wide in mm whatever the dataset's voxel size).
GUIDANCE_SIGMA = "$numpy.divide(@guidance_sigma_mm, @spacing).tolist()"
#: The simulated annotator of training (as the hand-written interactive bundle's defaults).
TRAIN_DEFAULTS: dict[str, Any] = {"deepgrow_probability": 0.5, "max_interactions": 3, "max_clicks": 2,
                                  "box_prob": 0.3, "scribble_prob": 0.2, "lasso_prob": 0.1, "prior_prob": 0.5,
                                  "corrective_clicks": 3, "prior_from_prediction_prob": 0.0, "guidance_sigma_mm": 4.5,
                                  "guidance_sigma": GUIDANCE_SIGMA}
#: The click sigma of a 2D model run slice by slice on a volume: the in-plane sigma of the 2D training slices, and
#: ~0 voxels along the slice axis (the Gaussian ``erf`` kernel is then exactly 1 on the click's slice and 0 on its
#: neighbours), so a click guides its slice only.
SLICE_GUIDANCE_SIGMA = "$numpy.insert(numpy.divide(@guidance_sigma_mm, @spacing), @slice_axis, 0.001).tolist()"
T = "labelzoo.interactive.transforms."
DE = "monai.apps.deepedit.transforms."


def interactive_name(name: str) -> str:
    """``x_ct_nnunet3dfullres_segmentation`` -> ``x_ct_nnunet3dfullres_interactive_annotation``."""
    return (name[: -len("_segmentation")] if name.endswith("_segmentation") else name) + "_interactive_annotation"


def deepedit_label_names(pred_channel_def: dict[str, str]) -> dict[str, int]:
    """Class name -> class index for DeepEdit's transforms, foreground classes first, ``background`` (0) last
    (the order of the click channels)."""
    names = {str(v): int(k) for k, v in pred_channel_def.items() if int(k) != 0}
    return {**dict(sorted(names.items(), key=lambda kv: kv[1])), "background": 0}


def _guidance(intensity: str) -> dict[str, Any]:
    return {"_target_": DE + "AddGuidanceSignalDeepEditd", "keys": "image", "guidance": "guidance",
            "sigma": "@guidance_sigma", "number_intensity_ch": intensity}


def _normalize_guidance() -> dict[str, Any]:
    return {"_target_": T + "NormalizeGuidanced", "keys": "label", "guidance": "guidance",
            "label_names": "@label_names"}


def _simulate(training: bool) -> dict[str, Any]:
    probs = {k: f"@{k}" if training else (0 if k == "max_clicks" else 0.0)
             for k in ("max_clicks", "box_prob", "scribble_prob", "lasso_prob", "prior_prob")}
    probs["corrective_clicks"] = "@corrective_clicks" if training else 0
    return {"_target_": T + "SimulatePromptsd", "keys": "label", "label_names": "@label_names",
            "image_channels": "@image_channels", **probs}


def train_config(train: dict[str, Any], n_img: int, label_names: dict[str, int]) -> dict[str, Any]:
    """The planned ``train.json`` with guidance channels, simulated prompts and DeepEdit's ``Interaction``."""
    conf = copy.deepcopy(train)
    intensity = "$@image_channels + 2 * @num_labels"
    conf.update({"image_channels": n_img, "label_names": label_names, "num_labels": len(label_names) - 1,
                 **TRAIN_DEFAULTS})
    conf["network_def"].update({"in_channels": "$@image_channels + 3 * @num_labels + 1", "deep_supervision": False})
    conf["loss"] = {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True, "include_background": False}
    normalize_labels = {"_target_": DE + "NormalizeLabelsInDatasetd", "keys": "label", "label_names": "@label_names"}
    conf["train"]["random_transforms"] = [*conf["train"]["random_transforms"], normalize_labels, _simulate(True),
                                          _guidance(intensity), {"_target_": "EnsureTyped", "keys": ["image", "label"]}]
    conf["click_transforms"] = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "ToNumpyd", "keys": ["image", "label", "pred"]},
        {"_target_": DE + "FindDiscrepancyRegionsDeepEditd", "keys": "label", "pred": "pred",
         "discrepancy": "discrepancy"},
        _normalize_guidance(),
        {"_target_": DE + "AddRandomGuidanceDeepEditd", "keys": "label", "guidance": "guidance",
         "discrepancy": "discrepancy", "probability": "probability"},
        _normalize_guidance(),
        {"_target_": T + "PriorFromPredictiond", "keys": "image", "label_names": "@label_names", "pred": "pred",
         "prob": "@prior_from_prediction_prob", "image_channels": "@image_channels"},
        _guidance(intensity),
        {"_target_": "ToTensord", "keys": ["image", "label"]},
        _normalize_guidance(),
    ]
    conf["train"]["interaction"] = {"_target_": "monai.apps.deepedit.interaction.Interaction",
                                    "deepgrow_probability": "@deepgrow_probability", "transforms": "@click_transforms",
                                    "train": True, "label_names": "@label_names",
                                    "max_interactions": "@max_interactions"}
    conf["train"]["trainer"]["iteration_update"] = "@train#interaction"
    # validation: the automatic mode (every guidance channel zero)
    conf["validate"]["guidance_transforms"] = [normalize_labels, _simulate(False), _guidance(intensity),
                                               {"_target_": "EnsureTyped", "keys": ["image", "label"]}]
    conf["validate"]["preprocessing"]["transforms"] = ("$@train#deterministic_transforms"
                                                       " + @validate#guidance_transforms")
    return conf


def slice_axis_of(train: dict[str, Any]) -> int | None:
    """The axis a planned 2D configuration slices volumes along (its training's ``SqueezeDimd``), or ``None``
    (a 3D configuration, or a 2D one on 2D data)."""
    for t in train["train"]["random_transforms"]:
        if isinstance(t, dict) and t.get("_target_") == "SqueezeDimd":
            return int(t["dim"]) - 1
    return None


def inference_config(infer: dict[str, Any], n_img: int, label_names: dict[str, int],
                     patch_size: list[int], slice_axis: int | None = None) -> dict[str, Any]:
    """The planned ``inference.json`` turning a request's prompts into guidance channels (one output head,
    no test-time mirroring: a click must answer fast), with prompt-region prediction and region answers.

    ``slice_axis``: a 2D configuration inferring volumes slice by slice along it: the prompts are 3D, each click's
    Gaussian stays on its slice (:data:`SLICE_GUIDANCE_SIGMA`) and the prompt region spans the prompted slices."""
    conf = copy.deepcopy(infer)
    margin = [max(8, int(p) // 2) for p in patch_size]
    min_size = [int(p) for p in patch_size]
    sigma = GUIDANCE_SIGMA
    if slice_axis is not None:
        margin.insert(slice_axis, 0)
        min_size.insert(slice_axis, 1)
        sigma = SLICE_GUIDANCE_SIGMA
        conf["slice_axis"] = slice_axis
    conf.update({"image_channels": n_img, "label_names": label_names, "num_labels": len(label_names) - 1,
                 "guidance_sigma_mm": TRAIN_DEFAULTS["guidance_sigma_mm"], "guidance_sigma": sigma,
                 "use_mirroring": False, "prompt_roi_margin": margin})
    conf["network_def"].update({"in_channels": "$@image_channels + 3 * @num_labels + 1", "deep_supervision": False})
    transforms = conf["preprocessing"]["transforms"]
    prompt_guidance = {"_target_": T + "PromptGuidanced", "keys": "image", "label_names": "@label_names",
                       "guidance": "guidance", "image_channels": "@image_channels"}
    if slice_axis is not None:
        prompt_guidance["slice_axis"] = "@slice_axis"
    transforms += [
        prompt_guidance,
        {"_target_": T + "CropToPromptsd", "keys": "image", "guidance": "guidance", "num_boxes": "@num_labels",
         "margin": "@prompt_roi_margin", "image_channels": "@image_channels", "min_size": min_size},
        _guidance("$@image_channels + 2 * @num_labels"),  # click maps on the crop alone
    ]
    post = conf["postprocessing"]["transforms"]
    for t in post:
        if t.get("_target_") == "Invertd":
            t["_target_"] = T + "InvertToRegiond"
    if not any(t.get("_target_") == T + "InvertToRegiond" for t in post):
        raise LabelZooError("the planned inference.json has no Invertd post-processing to make region-aware")
    return conf


def metadata(meta: dict[str, Any], name: str, n_img: int, label_names: dict[str, int],
             slice_axis: int | None = None) -> dict[str, Any]:
    """The planned ``metadata.json`` with the guidance channels declared (``guidance_channels``: DeepEdit type);
    a 2D configuration run slice by slice on volumes also declares ``labelzoo.slice_axis`` (the app then takes
    3D images and 3D prompts for it)."""
    meta = copy.deepcopy(meta)
    if slice_axis is not None:
        meta["labelzoo"] = {**(meta.get("labelzoo") or {}), "slice_axis": int(slice_axis)}
    labels = [n for n in label_names if n != "background"]
    k = len(labels)
    image = meta["network_data_format"]["inputs"]["image"]
    channel_def = dict(image.get("channel_def") or {str(i): f"image {i}" for i in range(n_img)})
    kinds = [f"box {n}" for n in labels] + [f"prior {n}" for n in labels] + [f"clicks {n}" for n in labels]
    for i, kind in enumerate([*kinds, "clicks background"]):
        channel_def[str(n_img + i)] = kind
    image.update({"num_channels": n_img + 3 * k + 1, "guidance_channels": 3 * k + 1, "channel_def": channel_def})
    version = meta.get("version", "0.1.0")
    meta["changelog"] = {version: "interactive variant (labelzoo plan --interactive): box, prior-mask and DeepEdit "
                                  "click guidance channels, simulated prompts and Interaction in training"}
    meta["name"] = name
    meta["task"] = f"Interactive {meta.get('task', 'segmentation')}: clicks, boxes, scribbles, lassos, mask refinement"
    meta["description"] = (f"{meta.get('description', '')} Interactive variant: the image plus {3 * k + 1} guidance "
                           "channels (per label a box, a prior mask and a DeepEdit click map; background clicks); "
                           "trained with simulated prompts and MONAI DeepEdit's Interaction; without prompts it "
                           "segments automatically. Served by LabelZoo as a MONAI Label DeepEdit model."
                           + ("" if slice_axis is None else
                              f" A 2D model run slice by slice along axis {slice_axis}: each prompt guides the "
                              "slice it is drawn on; slices without prompts get the automatic answer.")).strip()
    meta.setdefault("references", []).append("Diaz-Pinto A, et al. MONAI Label: A framework for AI-assisted "
                                             "interactive labeling of 3D medical images. Medical Image Analysis 2024.")
    return meta


def smoke_config(smoke: dict[str, Any]) -> dict[str, Any]:
    """The planned ``smoke.json`` with every simulated prompt kind and DeepEdit click rounds on."""
    smoke = copy.deepcopy(smoke)
    smoke.setdefault("train", {}).update({"deepgrow_probability": 1.0, "max_interactions": 2, "box_prob": 1.0,
                                          "scribble_prob": 1.0, "lasso_prob": 1.0, "prior_prob": 1.0,
                                          "prior_from_prediction_prob": 1.0})
    return smoke


def _readme(name: str, source: str, labels: list[str], slice_axis: int | None = None, two_d: bool = False) -> str:
    slices = ""
    if slice_axis is not None:
        slices = f"""
**Slice by slice.** A 2D configuration: training draws the prompts on 2D slices (axis {slice_axis} squeezed);
inference runs the volume slice by slice with the request's 3D prompts (voxel indices of the volume), each on the
slice it lies on: a click guides its slice only, a slice without prompts gets the automatic answer, a 2D box
must be drawn on one of the model's slices (normal to axis {slice_axis}) and a 3D box is a box on every slice it
spans; `prompt_roi` / `result_region` predict on the prompted slices.
"""
    elif two_d:
        slices = """
**2D.** A 2D configuration on 2D images: points are `[i, j]` (or `[i, j, 0]`), boxes 2D, lassos on the image.
"""
    return f"""# {name}

Interactive variant of the planned bundle `{source}` (`labelzoo plan ... --interactive`): the same spacing,
normalisation, patch size and DynUNet topology, with **guidance channels** after the image channels: per label
({", ".join(labels)}) a box channel, a prior-mask channel (the current mask being refined) and a MONAI DeepEdit
click channel, then background clicks. Without prompts it segments automatically.
{slices}
Training draws prompts from the ground truth (`labelzoo.interactive.transforms.SimulatePromptsd`: clicks, 2D/3D
boxes, scribbles, lassos, spoiled prior masks with corrective clicks at their errors) and MONAI DeepEdit's
`Interaction` adds corrective clicks at the error regions of the model's own prediction (which can also become
the next round's prior mask: `prior_from_prediction_prob`, off by default); validation measures the automatic
Dice.
The LabelZoo app serves it as a MONAI Label **DeepEdit** model; the request params (clicks per label name,
`boxes`, `scribbles`, `lassos`, `prior`, `prompt_roi`, `result_region`) are described in the LabelZoo README,
section "Interactive annotation".

```bash
python -m monai.bundle run --config_file configs/train.json --bundle_root . --fold 0
python -m monai.bundle run --config_file configs/inference.json --bundle_root .
```
"""


def emit_interactive(bundle: str | Path, overwrite: bool = False) -> Path | None:
    """Write the interactive variant of the planned bundle folder ``bundle`` beside it; return its folder, or
    ``None`` for a configuration without one (the cascade's stage 2).

    Raises:
        LabelZooError: the folder is not a planned bundle, or the variant exists and ``overwrite`` is false.
    """
    src = Path(bundle)
    try:
        plan = json.loads((src / "configs" / "plan.json").read_text())
        train = json.loads((src / "configs" / "train.json").read_text())
        infer = json.loads((src / "configs" / "inference.json").read_text())
        meta = json.loads((src / "configs" / "metadata.json").read_text())
        smoke = json.loads((src / "configs" / "smoke.json").read_text())
    except (OSError, ValueError) as e:
        raise LabelZooError(f"{src} is not a planned bundle (configs/plan.json, train.json, inference.json, "
                            f"metadata.json, smoke.json): {e}") from None
    if plan.get("configuration") not in INTERACTIVE_CONFIGURATIONS:
        return None
    slice_axis = slice_axis_of(train)
    name = interactive_name(src.name)
    dst = src.parent / name
    if dst.exists():
        if not overwrite:
            raise LabelZooError(f"{dst} exists: choose another --out or pass --overwrite")
        shutil.rmtree(dst)
    outputs = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    label_names = deepedit_label_names(outputs)
    n_img = int(meta["network_data_format"]["inputs"]["image"]["num_channels"])
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("models", "eval", "cv", "docs"))
    (dst / "models").mkdir(exist_ok=True)
    write_json_atomic(dst / "configs" / "train.json", train_config(train, n_img, label_names))
    write_json_atomic(dst / "configs" / "inference.json",
                      inference_config(infer, n_img, label_names, list(plan["patch_size"]), slice_axis))
    write_json_atomic(dst / "configs" / "metadata.json", metadata(meta, name, n_img, label_names, slice_axis))
    write_json_atomic(dst / "configs" / "smoke.json", smoke_config(smoke))
    (dst / "docs").mkdir(exist_ok=True)
    (dst / "docs" / "README.md").write_text(_readme(name, src.name, [n for n in label_names if n != "background"],
                                                    slice_axis, two_d=plan.get("configuration") == "2d"))
    return dst


def emit_interactive_bundles(bundles: list[Path], overwrite: bool = False) -> list[Path]:
    """The interactive variants of the planned ``bundles`` that have one (all but the cascade's stage 2)."""
    return [p for p in (emit_interactive(b, overwrite) for b in bundles) if p is not None]
