"""Deep supervision as nnU-Net v2 does it: heads at their own resolution (``NativeHeadsDynUNet``), the target
downsampled to each head (nearest-exact) by the loss, weights ``1 / 2**i`` normalised."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

from labelzoo.losses import MaskedDiceCELoss, downsample_target, nnunet_deep_supervision
from labelzoo.networks import NativeHeadsDynUNet
from labelzoo.planning.transforms import DeepSupervisionDiceCELoss

#: an anisotropic 3D topology as the planner emits for thick slices: the last axis is pooled later
ARGS = dict(spatial_dims=3, in_channels=1, out_channels=3, kernel_size=[[3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
            strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]],
            upsample_kernel_size=[[2, 2, 1], [2, 2, 2], [2, 2, 2]], filters=[4, 8, 16, 16], deep_supervision=True,
            deep_supr_num=2)


def _nnunet_reference(heads: list[torch.Tensor], target: torch.Tensor, strides: list[list[int]],
                      loss: torch.nn.Module) -> torch.Tensor:
    """nnU-Net v2's way, written out: ``deep_supervision_scales = 1 / cumprod(strides)``, the target of each
    sample downsampled by ``DownsampleSegForDSTransform`` (``round(shape * scale)``, nearest-exact, per sample),
    ``DeepSupervisionWrapper`` with weights ``1 / 2**i`` normalised (the lowest head, weight 0, not built)."""
    scales, acc = [], torch.ones(len(strides[0]))
    for s in strides[: len(heads)]:
        acc = acc * torch.tensor(s, dtype=torch.float32)
        scales.append((1.0 / acc).tolist())
    targets = []
    for scale in scales:
        per_sample = []
        for seg in target:  # (1, *spatial) each, as the data loader's worker holds it
            if all(x == 1 for x in scale):
                per_sample.append(seg)
                continue
            shape = [round(i * j) for i, j in zip(seg.shape[1:], scale, strict=True)]
            per_sample.append(torch.nn.functional.interpolate(seg[None].float(), shape, mode="nearest-exact")[0])
        targets.append(torch.stack(per_sample))
    weights = torch.tensor([1 / 2**i for i in range(len(heads))])
    weights = weights / weights.sum()
    return sum(w * loss(h, t) for w, h, t in zip(weights.tolist(), heads, targets, strict=True))


def _target(shape: tuple[int, ...], classes: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (2, 1, *shape), generator=g).float()


def test_native_heads_shapes_state_dict_and_values_match_dynunet() -> None:
    torch.manual_seed(0)
    native = NativeHeadsDynUNet(**ARGS)
    monai_net = DynUNet(**ARGS)
    assert list(native.state_dict()) == list(monai_net.state_dict())  # checkpoints interchangeable
    monai_net.load_state_dict(native.state_dict())
    x = torch.randn(2, 1, 32, 32, 8)
    heads = native.train()(x)
    assert [tuple(h.shape) for h in heads] == [(2, 3, 32, 32, 8), (2, 3, 16, 16, 8), (2, 3, 8, 8, 4)]
    stacked = monai_net.train()(x)  # MONAI: every head upsampled (nearest) to the patch and stacked
    assert stacked.shape == (2, 3, 3, 32, 32, 8)
    assert torch.allclose(stacked[:, 0], heads[0], atol=1e-5)
    for i in (1, 2):
        up = torch.nn.functional.interpolate(heads[i], size=(32, 32, 8))
        assert torch.allclose(stacked[:, i], up, atol=1e-5)
    # eval: the main head only, as DynUNet
    assert torch.allclose(native.eval()(x), monai_net.eval()(x), atol=1e-5)


@pytest.mark.parametrize("batch", [False, True])
def test_loss_on_native_heads_equals_nnunet_weighting_with_downsampled_targets(batch: bool) -> None:
    torch.manual_seed(1)
    net = NativeHeadsDynUNet(**ARGS).train()
    target = _target((32, 32, 8))
    heads = net(torch.randn(2, 1, 32, 32, 8))
    kwargs = dict(to_onehot_y=True, softmax=True, include_background=False, batch=batch)
    ours = DeepSupervisionDiceCELoss(**kwargs)(heads, target)
    ref = _nnunet_reference(heads, target, ARGS["strides"], DiceCELoss(**kwargs))
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-7)
    ours.backward()  # every head takes part in the gradient
    assert all(p.grad is not None for p in net.deep_supervision_heads.parameters())
    # the masked (partial-annotation) loss weighs the same heads the same way
    masked = MaskedDiceCELoss(batch=batch)(heads, target)
    assert torch.allclose(masked, ref, rtol=1e-5, atol=1e-6)


def test_downsampled_targets_keep_values_and_ignored_voxels() -> None:
    target = _target((16, 16, 4), classes=4)
    target[0, 0, :8] = 255  # unannotated voxels survive nearest-exact downsampling as themselves
    small = downsample_target(target, (8, 8, 2))
    assert small.shape == (2, 1, 8, 8, 2) and small.dtype == target.dtype
    assert set(small.unique().tolist()) <= set(target.unique().tolist())
    assert (small[0, 0, :4] == 255).all()
    # nearest-exact picks voxel 2i + 1 for a factor 2 (nnU-Net's choice, not torch's "nearest", 2i)
    assert torch.equal(small, target[:, :, 1::2, 1::2, 1::2])
    assert downsample_target(target, (16, 16, 4)) is target
    # an ignored region the size of a head's voxel is left out of that head's loss too
    heads = [torch.randn(2, 4, 16, 16, 4), torch.randn(2, 4, 8, 8, 2)]
    loss = MaskedDiceCELoss()
    ref = (loss(heads[0], target) * 2 + loss(heads[1], small)) / 3
    assert torch.allclose(nnunet_deep_supervision(loss._one, heads, target), ref)


def test_plain_and_stacked_outputs_keep_their_loss() -> None:
    loss = DeepSupervisionDiceCELoss(to_onehot_y=True, softmax=True)
    target = _target((8, 8))
    pred = torch.randn(2, 3, 8, 8)
    assert torch.allclose(loss(pred, target), DiceCELoss(to_onehot_y=True, softmax=True)(pred, target))
    stacked = torch.randn(2, 2, 3, 8, 8)  # MONAI's DynUNet: heads upsampled, full-resolution target for each
    plain = DiceCELoss(to_onehot_y=True, softmax=True)
    expected = (2 * plain(stacked[:, 0], target) + plain(stacked[:, 1], target)) / 3
    assert torch.allclose(loss(stacked, target), expected)
