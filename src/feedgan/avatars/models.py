"""Generator / discriminator pairs for the avatar presets.

Every generator maps a latent ``z`` of shape (B, z_dim + n_classes) to images (B, C, S, S) in
[-1, 1] (tanh); every discriminator maps (B, C + n_classes, S, S) to logits (B,). With classes,
the label is a one-hot appended to ``z`` and, for D, constant one-hot planes appended to the image
channels (the classic conditional-GAN input), so G and D stay one-tensor modules that the shared
trainer, its penalties and DDP handle unchanged.

Presets (see ``PRESETS`` and ``docs/avatars.md`` for the reasoning):

* ``seed-mlp``: the original dense sketch. G and D have two 128-unit leaky-ReLU hidden layers,
  G ends in tanh; 28x28 grayscale.
* ``seed-avatar``: the sketch's avatar GAN with its shapes fixed. The sketch's dense generator
  ended in 2 units that were reshaped to 64x64x3, and its discriminator strided by 2 fourteen
  times over 64 pixels (64 / 2**14 < 1). Here G's last dense layer has S*S*C units, and D strides
  by 2 only until 4x4 (log2(S) - 2 times), then one dense unit.
* ``dcgan``: Radford et al. 2016: transposed convolutions with batch norm and ReLU in G, strided
  convolutions with batch norm and leaky ReLU in D, 4x4 kernels, N(0, 0.02) init.
* ``modern``: residual G and D (BigGAN-style up/down blocks without class batch norm), no batch
  norm in D, used with the hinge loss, R1, DiffAugment and an EMA of G (``train.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _levels(size: int) -> int:
    """How many 2x steps lie between 4x4 and ``size`` (a power of two, at least 8)."""
    n = int(round(math.log2(size)))
    if size < 8 or 2**n != size:
        raise ValueError(f"image size must be a power of two >= 8 for this preset, got {size}")
    return n - 2


# -- the original sketch, made to work ---------------------------------------------------------------
class DenseG(nn.Module):
    def __init__(self, z_in: int, hidden: tuple[int, ...], size: int, channels: int, batch_norm: bool = False):
        super().__init__()
        layers, width = [], z_in
        for h in hidden:
            layers += [nn.Linear(width, h)] + ([nn.BatchNorm1d(h)] if batch_norm else []) + [nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, size * size * channels), nn.Tanh()]
        self.net, self.shape = nn.Sequential(*layers), (channels, size, size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class DenseD(nn.Module):
    def __init__(self, size: int, in_channels: int, hidden: tuple[int, ...]):
        super().__init__()
        layers, width = [nn.Flatten()], size * size * in_channels
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class StridedD(nn.Module):
    """Stride-2 3x3 convolutions down to 4x4 (widths double from ``width``), then a dense logit."""

    def __init__(self, size: int, in_channels: int, width: int = 32):
        super().__init__()
        layers, ch = [], in_channels
        for i in range(_levels(size)):
            out = width * 2**i
            layers += [nn.Conv2d(ch, out, 3, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


# -- DCGAN ------------------------------------------------------------------------------------------
class DCGANG(nn.Module):
    def __init__(self, z_in: int, size: int, channels: int, width: int = 64):
        super().__init__()
        n = _levels(size)
        ch = width * 2 ** (n - 1)  # 512 at 64x64, 256 at 32x32
        layers = [nn.ConvTranspose2d(z_in, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGAND(nn.Module):
    def __init__(self, size: int, in_channels: int, width: int = 64):
        super().__init__()
        layers, ch = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)], width
        for _ in range(_levels(size) - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0)]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def _dcgan_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# -- modern: residual blocks ------------------------------------------------------------------------
class UpBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with a 1x1 shortcut on the upsampled input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.c2(F.relu(self.bn2(self.c1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """(leaky ReLU)-conv-leaky ReLU-conv-avgpool with a 1x1 avgpooled shortcut; no normalisation."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip, self.first = nn.Conv2d(cin, cout, 1), first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.c2(F.leaky_relu(self.c1(h), 0.2))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class ResG(nn.Module):
    def __init__(self, z_in: int, size: int, channels: int, width: int = 32):
        super().__init__()
        n = _levels(size)
        chs = [width * 2 ** (n - i) for i in range(n + 1)]  # e.g. 256, 128, 64, 32 at 32x32 with width 32
        self.fc = nn.Linear(z_in, chs[0] * 16)
        self.blocks = nn.Sequential(*[UpBlock(chs[i], chs[i + 1]) for i in range(n)])
        self.out = nn.Sequential(nn.BatchNorm2d(chs[-1]), nn.ReLU(), nn.Conv2d(chs[-1], channels, 3, 1, 1), nn.Tanh())
        self.c0 = chs[0]
        self.apply(lambda m: _he_init(m, 0.0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.fc(z).view(-1, self.c0, 4, 4)))


class ResD(nn.Module):
    def __init__(self, size: int, in_channels: int, width: int = 32):
        super().__init__()
        n = _levels(size)
        chs = [in_channels] + [width * 2**i for i in range(n)]  # e.g. 3+K, 32, 64, 128 at 32x32
        self.blocks = nn.Sequential(*[DownBlock(chs[i], chs[i + 1], first=i == 0) for i in range(n)])
        self.fc = nn.Linear(chs[-1], 1)
        self.apply(lambda m: _he_init(m, 0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.blocks(x), 0.2).sum((2, 3))  # (B, C) sum-pooled 4x4 features
        return self.fc(h).squeeze(1)


def _he_init(m: nn.Module, slope: float) -> None:
    """He-normal weights for the (leaky) ReLU that follows, zero biases. PyTorch's default init
    (uniform, a=sqrt(5)) shrinks activations through an unnormalised residual D so much that D's
    logits stay near 0 and it never separates real from fake (measured: hinge D loss stuck at 2.0)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, a=slope)
        nn.init.zeros_(m.bias)


def build(preset: str, size: int, channels: int, z_dim: int, n_classes: int = 0,
          width: int | None = None) -> tuple[nn.Module, nn.Module]:
    """(G, D) for ``preset``; ``width`` overrides the preset's base channel count."""
    z_in, d_in = z_dim + n_classes, channels + n_classes
    if preset == "seed-mlp":
        hidden = (width or 128,) * 2
        return DenseG(z_in, hidden, size, channels), DenseD(size, d_in, hidden)
    if preset == "seed-avatar":
        return (DenseG(z_in, (256, 512, 1024), size, channels, batch_norm=True),
                StridedD(size, d_in, width or 32))
    if preset == "dcgan":
        return DCGANG(z_in, size, channels, width or 64), DCGAND(size, d_in, width or 64)
    if preset == "modern":
        return ResG(z_in, size, channels, width or 32), ResD(size, d_in, width or 32)
    raise ValueError(f"unknown preset {preset!r}; choose from seed-mlp, seed-avatar, dcgan, modern")
