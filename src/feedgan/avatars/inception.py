"""Inception-v3 pool3 features for the standard FID, in plain PyTorch (no torchvision, no downloads).

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to the 2048-d pool3 activations
of the TensorFlow Inception-v3 graph of 2015-12-05. :class:`InceptionV3FID` rebuilds that network with the
module names of the pytorch-fid port, so it loads the weights file that port distributes,
``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict), which the user supplies - nothing is fetched.

It differs from torchvision's ``inception_v3`` the way the TensorFlow graph does: the average pools in the
pool branches of Mixed_5b-5d, Mixed_6b-6e and Mixed_7b do not count the zero padding, Mixed_7c's pool branch
is a max pool, there is no auxiliary head, and ``fc`` has 1008 classes (kept only so the file loads; the
features come before it). Inputs in ``[-1, 1]`` are resized bilinearly to 299 x 299, as pytorch-fid does.

Caveats: FIDs are comparable with published numbers only with these exact weights, 299 x 299 bilinear
resizing, and enough images (FID is biased upwards below ~10k samples; prefer KID for small sets). Pool3
features are non-negative averages of ReLU outputs.

Usage::

    from feedgan.avatars.inception import load_inception
    from feedgan.avatars.metrics import extract_features, frechet_distance, score
    inception = load_inception("pt_inception-2015-12-05-6726825d.pth")
    fid = frechet_distance(extract_features(real, inception), extract_features(fake, inception))
    report = score(real, fake, extractor=inception)
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import Images, expand_to_rgb, to_float_nchw

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
FEATURE_DIM = 2048

Size = int | tuple[int, int]


class InceptionWeightsError(ValueError):
    """The weights file does not hold the FID Inception-v3 state dict."""


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size, stride: int = 1,
                 padding: Size = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that ignores the padding, as in the TensorFlow graph."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b-5d (35 x 35): 1x1, 5x5, double 3x3 and average-pool branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x),
                          self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool_3x3(x))], dim=1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35 -> 17 (strided 3x3, strided double 3x3, max pool)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """Mixed_6b-6e (17 x 17): factorised 7x7 branches with ``channels_7x7`` inner channels."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat([self.branch1x1(x),
                          self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                          self.branch7x7dbl_5(self.branch7x7dbl_4(double)),
                          self.branch_pool(_avg_pool_3x3(x))], dim=1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17 -> 8 (strided 3x3, 7x7 then strided 3x3, max pool)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)),
                          self.branch7x7x3_4(seven),
                          F.max_pool2d(x, 3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """Mixed_7b/7c (8 x 8): expanded 1x3 + 3x1 branches; pool branch ``"avg"`` (7b) or ``"max"`` (7c)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x),
                          self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
                          self.branch_pool(pooled)], dim=1)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3; ``forward`` maps images to ``(N, 2048)`` pool3 features.

    Accepts anything :func:`~feedgan.avatars.metrics.to_float_nchw` does (uint8 ``(N, H, W, C)`` arrays or
    float ``(N, C, H, W)`` tensors in ``[-1, 1]``, grey or RGB), so it is directly usable as the ``extractor``
    of :func:`~feedgan.avatars.metrics.extract_features` and :func:`~feedgan.avatars.metrics.score`.
    Randomly initialised on construction: use :func:`load_inception` for the real weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, 1008)

    def forward(self, images: Images) -> torch.Tensor:
        x = expand_to_rgb(to_float_nchw(images)).to(self.fc.weight.device)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


InceptionFeatures = InceptionV3FID
"""Alias: the network's forward already returns the FID features."""


def _state_dict_problems(expected: Mapping[str, torch.Tensor], given: Mapping[str, object]) -> list[str]:
    """Human-readable differences between the model's state dict and a loaded one (first few of each kind)."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    mismatched = [f"{key} {tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__} "
                  f"(expected {tuple(expected[key].shape)})"
                  for key, value in given.items()
                  if key in expected and not (isinstance(value, torch.Tensor) and value.shape == expected[key].shape)]
    kinds = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
    return [f"{len(items)} {kind}, first: {', '.join(items[:3])}" for kind, items in kinds if items]


def load_inception(path: str | Path) -> InceptionV3FID:
    """The FID Inception-v3 in eval mode with the weights of ``path`` (pytorch-fid's ``WEIGHTS_FILE``).

    Loads with ``weights_only=True`` and ``strict=True``. Files without BatchNorm ``num_batches_tracked``
    counters (older PyTorch) are accepted. Raises :class:`InceptionWeightsError` naming the file and the first
    missing/unexpected keys and shape mismatches when it holds anything else.
    """
    path = Path(path)
    expected_file = f"expected the pytorch-fid FID Inception weights {WEIGHTS_FILE} (a plain state dict)"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; {expected_file}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise InceptionWeightsError(f"{path} holds a {type(state).__name__}, not a state dict; {expected_file}")
    model = InceptionV3FID()
    expected = model.state_dict()
    counters = {key: value for key, value in expected.items() if key.endswith("num_batches_tracked")}
    state = {**counters, **state}
    problems = _state_dict_problems(expected, state)
    if problems:
        raise InceptionWeightsError(f"{path} does not match the FID Inception-v3: {'; '.join(problems)}. "
                                    f"{expected_file.capitalize()}.")
    model.load_state_dict(state, strict=True)
    return model.eval()
