"""MONAI's DynUNet whose deep-supervision heads stay at their own resolution in training, as nnU-Net v2's.

``monai.networks.nets.DynUNet(deep_supervision=True)`` upsamples every head to the patch size and stacks them
(one return type for TorchScript), so the loss runs at full resolution once per head. nnU-Net v2 returns each
decoder output at its own resolution and downsamples the *targets* instead (``DownsampleSegForDSTransform``,
nearest-exact); its loss per head runs on ``1 / 2**(dims * i)`` of the voxels. The planned bundles train with
this network and :func:`labelzoo.losses.nnunet_deep_supervision`, which downsamples the target to each head.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet

__all__ = ["NativeHeadsDynUNet"]


class NativeHeadsDynUNet(DynUNet):
    """``DynUNet`` returning ``[main, head_1, ..., head_k]`` at native resolution in training mode.

    The same modules (same ``state_dict`` keys) and arguments as :class:`monai.networks.nets.DynUNet`; only
    the training-mode output with ``deep_supervision=True`` differs: a list whose item ``i`` (``i >= 1``) is
    the ``i``-th deep-supervision head, ``(B, C, *spatial / prod(strides[1:i + 1]))``, not upsampled. In eval
    mode, or without deep supervision, it returns the main output ``(B, C, *spatial)`` as ``DynUNet`` does,
    so validation, inference and checkpoints are unchanged (inference bundles build a plain ``DynUNet``).

    Example:
        >>> net = NativeHeadsDynUNet(2, 1, 3, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2],
        ...                          upsample_kernel_size=[2, 2, 2], filters=[4, 8, 16, 16],
        ...                          deep_supervision=True, deep_supr_num=2)
        >>> [tuple(o.shape) for o in net(torch.zeros(2, 1, 32, 16))]
        [(2, 3, 32, 16), (2, 3, 16, 8), (2, 3, 8, 4)]
        >>> tuple(net.eval()(torch.zeros(1, 1, 32, 16)).shape)
        (1, 3, 32, 16)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            # self.heads is rewritten in place by the next forward: hand out a new list
            return [out, *self.heads]
        return out
