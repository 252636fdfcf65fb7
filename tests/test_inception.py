"""FID Inception: architecture/key layout of pytorch-fid's weights file, loading, errors.

The real weights are never downloaded: a randomly initialised network is saved
and loaded back, and its key names/shapes are checked against values read
from pytorch-fid's src/pytorch_fid/inception.py (fid_inception_v3 and the
FIDInception* blocks) and torchvision's models/inception.py (Inception3,
InceptionA-E, BasicConv2d), which pytorch-fid builds on.
"""
from __future__ import annotations

import pytest
import torch

from genflow.errors import DataError
from genflow.featurenet.inception import FEATURE_DIM, FIDInception, load_inception

# 94 BasicConv2d (5 stem + 3x7 InceptionA + 4 InceptionB + 4x10 InceptionC
# + 6 InceptionD + 2x9 InceptionE), each with conv.weight and bn.{weight, bias,
# running_mean, running_var, num_batches_tracked}, plus fc.{weight, bias}.
N_CONV = 94
N_TENSORS = N_CONV * 6 + 2
# Parameter count: torchvision documents inception_v3 (aux_logits=True, 1000
# classes) at 27,161,264 parameters. pytorch-fid builds it with
# aux_logits=False (AuxLogits: 768*128+2*128 + 128*768*25+2*768 + 768*1000+1000
# = 3,326,696 fewer) and 1008 classes (8*2048+8 = 16,392 more).
N_PARAMS = 27_161_264 - 3_326_696 + 16_392  # = 23,850,960

KEY_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.running_var": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def _randomise_bn(model: torch.nn.Module) -> None:
    # Non-trivial BN statistics, so the round trip proves buffers are loaded too.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = FIDInception().eval()
    _randomise_bn(model)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_state_dict_layout_matches_pytorch_fid():
    model = FIDInception()
    state = model.state_dict()
    assert len(state) == N_TENSORS
    assert sum(k.endswith("num_batches_tracked") for k in state) == N_CONV
    for key, shape in KEY_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 32, 32)])
def test_round_trip_gives_same_features(saved, shape):
    original, path = saved
    loaded = load_inception(path)
    assert not loaded.training
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        want, got = original(x), loaded(x)
    assert got.shape == (shape[0], FEATURE_DIM)
    assert torch.isfinite(got).all() and (got >= 0).all()
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_grayscale_equals_repeated_rgb(saved):
    model, _ = saved
    gray = torch.rand(1, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(gray), model(gray.repeat(1, 3, 1, 1)))


def test_loads_file_without_num_batches_tracked(saved, tmp_path):
    # Older torch.save'd state dicts may lack this training-only buffer.
    model, _ = saved
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    loaded = load_inception(path)
    torch.testing.assert_close(loaded.Mixed_7c.branch_pool.bn.running_var,
                               model.Mixed_7c.branch_pool.bn.running_var)


def test_missing_file_names_path_and_url(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(DataError, match="nope.pth") as err:
        load_inception(path)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(err.value)
    assert "dvc add" in str(err.value)


def test_wrong_state_dict_names_file_and_missing_key(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(DataError, match="wrong.pth") as err:
        load_inception(path)
    msg = str(err.value)
    assert "Conv2d_1a_3x3.conv.weight" in msg and "foo" in msg


def test_wrong_shape_is_reported(saved, tmp_path):
    model, _ = saved
    state = dict(model.state_dict())
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's 1000-class head
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match=r"tv\.pth.*fc\.weight \(1000, 2048\)"):
        load_inception(path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), path)
    with pytest.raises(DataError, match="tensor.pth"):
        load_inception(path)


def test_fid_pooling_quirks(saved):
    # The TF graph's pool branches: avg pool ignoring padding in Mixed_5*/6*/7b,
    # max pool in Mixed_7c (pytorch-fid's FIDInceptionA/C/E_1/E_2 patches).
    import torch.nn.functional as F

    model, _ = saved
    seen = {}
    hooks = []
    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b", "Mixed_7c"):
        block = getattr(model, name)
        hooks.append(block.register_forward_pre_hook(
            lambda m, a, n=name: seen.__setitem__(n + ".in", a[0].clone())))
        hooks.append(block.branch_pool.register_forward_pre_hook(
            lambda m, a, n=name: seen.__setitem__(n + ".pool", a[0].clone())))
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8) * 2 - 1)
    for h in hooks:
        h.remove()
    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        want = F.avg_pool2d(seen[name + ".in"], 3, stride=1, padding=1, count_include_pad=False)
        torch.testing.assert_close(seen[name + ".pool"], want)
    want = F.max_pool2d(seen["Mixed_7c.in"], 3, stride=1, padding=1)
    torch.testing.assert_close(seen["Mixed_7c.pool"], want)
