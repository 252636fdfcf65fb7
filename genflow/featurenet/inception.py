"""The FID Inception-v3: the feature network pytorch-fid and torch-fidelity use.

This is the TensorFlow 2015-12-05 Inception graph as ported by pytorch-fid
(src/pytorch_fid/inception.py, built on torchvision's Inception3 layout).
Module attribute names are chosen so that the state dict keys are exactly
those of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, which lets a
user's real weights file load unchanged (torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth` has the same keys). Nothing is downloaded
here: the user fetches the file once and tracks it with DVC.

Two input paths (``resize``), because the tools that report "Inception FID" disagree
before the first convolution:

* ``tf1`` (the default): what the original TensorFlow FID code did inside the graph, and what
  torch-fidelity reproduces: TF 1.x ``resize_bilinear`` to 299x299 (align_corners=False, which in
  TF 1 means *no* half-pixel offset: output pixel i samples input i * in/out) on 0..255 values,
  then (x - 128) / 128. tests/test_inception_parity.py checks it against torch-fidelity.
* ``pytorch-fid``: pytorch-fid's approximation: torch's bilinear resize with half-pixel centres
  ((i + 0.5) * in/out - 0.5), then 2x - 1 on [0, 1] values (x / 127.5 - 1 on 0..255).

On the same weights the two give different features (the resize alone moves every pixel of an
upsampled image), so a number is comparable only with one measured on the same path; the
protocol records which (``describe``).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genflow.errors import DataError

FEATURE_DIM = 2048
NUM_CLASSES = 1008  # the TF graph's softmax has 1008 outputs, not 1000
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/"
               "fid_weights/pt_inception-2015-12-05-6726825d.pth")
_INPUT_SIZE = 299
RESIZES = ("tf1", "pytorch-fid")


class BasicConv2d(nn.Module):
    """conv (no bias: BN supplies it) + BN(eps=1e-3, TF's value) + ReLU."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool ignores padded zeros; torch counts them by default.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and pool branches."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a); unchanged from torchvision."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, bp], 1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b-e) with factorised 1x7 / 7x1 convolutions."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a); unchanged from torchvision."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b/7c). `max_pool`: the FID graph's Mixed_7c pools
    with max instead of average (a quirk of that TF graph we must reproduce)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, **row)
        self.branch3x3_2b = BasicConv2d(384, 384, **col)
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, **row)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, **col)
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


def _tf1_positions(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF 1.x resize_bilinear sample points along one axis (align_corners=False): output i reads
    input i * n_in / n_out, between pixels ``lo`` and ``hi`` (clamped at the border) with weight ``frac``."""
    where = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = where.long()
    return lo, (lo + 1).clamp_max(n_in - 1), where - lo.float()


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size) as TF 1.x's resize_bilinear: rows, then columns."""
    lo, hi, frac = _tf1_positions(x.shape[3], size)
    x = x[..., lo] + (x[..., hi] - x[..., lo]) * frac
    lo, hi, frac = _tf1_positions(x.shape[2], size)
    return x[..., lo, :] + (x[..., hi, :] - x[..., lo, :]) * frac[:, None]


def fid_input(x: torch.Tensor, resize: str) -> torch.Tensor:
    """Images -> the 299x299 network input of the ``resize`` path (module docstring). ``x``: uint8
    0..255 (as read from image files, what torch-fidelity takes) or float in [-1, 1] (genflow's
    samples and loader). A float image made from uint8 by the loader (u / 127.5 - 1 in float32) is
    not exactly its 0..255 value again (63 of the 256 levels come back off by up to 4e-6), so only
    uint8 input is bit-for-bit the pixels a TF-style tool resizes."""
    if resize == "tf1":  # the TF graph resized 0..255 values
        pixels = x.float() if x.dtype == torch.uint8 else (x.float() + 1.0) * 127.5
        return (tf1_resize_bilinear(pixels, _INPUT_SIZE) - 128.0) / 128.0
    # pytorch-fid resizes in [0, 1] and then maps to [-1, 1]; both steps are
    # affine per pixel, so resizing our [-1, 1] input directly is the same.
    x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
    return F.interpolate(x, size=(_INPUT_SIZE, _INPUT_SIZE), mode="bilinear", align_corners=False)


def describe(resize: str) -> dict[str, str]:
    """How images reach the network on the ``resize`` path: the protocol's record of it."""
    if resize == "tf1":
        return {"resize": "TF 1.x resize_bilinear to 299x299 (align_corners=False, no half-pixel centres) on "
                          "0..255 values, as the TF FID code and torch-fidelity",
                "normalisation": "(x - 128) / 128 after the resize; x = (image + 1) * 127.5, not rounded to uint8"}
    return {"resize": "torch bilinear to 299x299 (align_corners=False, half-pixel centres, no antialias), "
                      "as pytorch-fid",
            "normalisation": "2 * image01 - 1 = uint8 / 127.5 - 1 ([-1, 1]), not rounded to uint8"}


def _check_resize(resize: str) -> str:
    if resize not in RESIZES:
        raise ValueError(f"unknown Inception resize {resize!r}; allowed: {', '.join(RESIZES)}")
    return resize


class FIDInception(nn.Module):
    """Images (N, 1|3, H, W), uint8 0..255 or float in [-1, 1] -> (N, 2048) pool3 features; ``resize``: the input path
    (``tf1`` or ``pytorch-fid``, module docstring)."""

    def __init__(self, resize: str = "tf1"):
        super().__init__()
        self.resize = _check_resize(resize)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        # Unused for features; present only so the released state dict loads strictly.
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1|3, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale -> RGB, as image libraries convert it
        x = fid_input(x, self.resize)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def _missing_file_message(path: Path) -> str:
    return (f"{path}: FID Inception weights not found. On a machine with internet, download "
            f"{WEIGHTS_URL}, copy it to {path}, then run `dvc add {path}`")


def _check_keys(path: Path, state: object, model: FIDInception) -> None:
    """Raise DataError naming the file if `state` is not this network's state dict."""
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, got {type(state).__name__}")
    expected = model.state_dict()
    # num_batches_tracked only matters in training; older saves may omit it.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(v.shape)}"
             for k, v in expected.items()
             if k in state and (not torch.is_tensor(state[k]) or state[k].shape != v.shape)]
    problems = [(what, keys) for what, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        detail = "; ".join(f"{len(keys)} {what}: {', '.join(keys[:5])}" for what, keys in problems)
        raise DataError(f"{path}: not the pytorch-fid Inception state dict ({detail})")


def load_inception(path: str | Path, resize: str = "tf1") -> FIDInception:
    """Load the pytorch-fid weights file at `path`; returns the model (input path ``resize``) in
    eval mode."""
    path = Path(path)
    if not path.is_file():
        raise DataError(_missing_file_message(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickle that is not plain tensors, ...
        raise DataError(f"{path}: cannot read as a torch state dict ({err})") from err
    model = FIDInception(resize)
    _check_keys(path, state, model)
    state = dict(state)
    for key, buf in model.state_dict().items():
        state.setdefault(key, buf)  # only num_batches_tracked can be absent here
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    return model.eval()
