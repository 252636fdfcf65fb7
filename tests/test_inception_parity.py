"""genflow's FID Inception against torch-fidelity's, on the same weights file (issue #30).

No real weights can be downloaded here, so the test writes a randomly initialised network
whose BatchNorm statistics are calibrated on a batch of images (with the default init and
unit statistics every image gives the same features, which would prove nothing). Both
implementations read that one file: torch-fidelity's ``weights-inception-2015-12-05`` and
pytorch-fid's ``pt_inception-2015-12-05`` share one key layout, which the test checks.

torch-fidelity is loaded module by module: its package ``__init__`` imports torchvision, and
the torchvision wheel on PyPI is a CUDA build whose C++ ops do not load beside the CPU torch
wheel genflow pins ("operator torchvision::nms does not exist"). The modules used here
(the Inception extractor, the TF 1.x resize, the FID formula) need none of torchvision.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from genflow.featurenet.inception import FIDInception, load_inception
from genflow.metrics import frechet_distance

FEATURE_ATOL = 1e-5  # the acceptance: max abs difference of pool3 features
FID_RTOL = 1e-6  # and of FID against the reference formula
N_IMAGES = 2  # images per resolution compared
# torch_fidelity.metric_fid imports these from torch_fidelity.utils (which imports torchvision);
# the two functions used here need none of them
_UTILS_NAMES = ("get_cacheable_input_name", "cache_lookup_one_recompute_on_miss",
                "extract_featuresdict_from_input_id_cached", "create_feature_extractor",
                "resolve_feature_extractor", "resolve_feature_layer_for_metric")


@pytest.fixture(scope="module")
def fidelity():
    """torch-fidelity's Inception extractor module and FID module, without its package __init__."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        pytest.skip("torch-fidelity is not installed (pip install -e '.[dev]')")
    saved = {name: module for name, module in sys.modules.items() if name.startswith("torch_fidelity")}
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("torch_fidelity.utils")
    utils.__dict__.update(dict.fromkeys(_UTILS_NAMES))
    sys.modules.update({"torch_fidelity": package, "torch_fidelity.utils": utils})
    try:
        yield types.SimpleNamespace(
            inception=importlib.import_module("torch_fidelity.feature_extractor_inceptionv3"),
            fid=importlib.import_module("torch_fidelity.metric_fid"))
    finally:
        for name in [name for name in sys.modules if name.startswith("torch_fidelity")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random FID Inception whose BatchNorms hold the statistics of a calibration batch."""
    torch.manual_seed(0)
    model = FIDInception()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch's exact statistics
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(_images(4, 32, seed=100))
    path = tmp_path_factory.mktemp("parity") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(model.eval().state_dict(), path)
    return path


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


@pytest.fixture(scope="module")
def reference(fidelity, weights):
    """torch-fidelity's extractor on the weights file, and its features of each test batch (cached:
    a 299x299 pass costs about 0.3 s an image on one core)."""
    net = fidelity.inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                         feature_extractor_weights_path=str(weights))
    cache = {}

    def features(size: int) -> torch.Tensor:
        if size not in cache:
            with torch.no_grad():
                cache[size] = net(_images(N_IMAGES, size, seed=size))[0].double()
        return cache[size]

    return types.SimpleNamespace(net=net, features=features)


def test_one_weights_file_fits_both_layouts(reference, weights):
    ours, theirs = load_inception(weights).state_dict(), reference.net.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


@pytest.mark.parametrize("size", [8, 32, 299])  # upsampled as digits / 32-px data are, and the native size
def test_pool3_features_match_torch_fidelity(reference, weights, size):
    images, want = _images(N_IMAGES, size, seed=size), reference.features(size)
    with torch.no_grad():
        got = load_inception(weights, "tf1")(images).double()
        other_path = load_inception(weights, "pytorch-fid")(images).double()
    error = (got - want).abs().max().item()
    assert got.shape == want.shape == (N_IMAGES, 2048)
    assert (want[0] - want[1]).abs().max() > 1e-2, "the random network must tell images apart"
    assert error <= FEATURE_ATOL, f"max abs difference {error:.3g} (features up to {want.abs().max():.4g})"
    print(f"[parity] {size}x{size}: tf1 path vs torch-fidelity max abs difference {error:.3g}")
    if size != 299:  # the pytorch-fid path resizes differently: a different feature space
        assert (other_path - want).abs().max() > 1e-3


@pytest.mark.parametrize("size", [8, 32])
def test_float_images_from_the_loader_stay_close(reference, weights, size):
    """genflow's loader hands uint8 u as u / 127.5 - 1 in float32; 63 of the 256 levels do not
    come back exactly to u (off by up to 4e-6), which this random network amplifies. Measured:
    about 3e-5 of the largest feature; a wrong scale (x / 127.5 instead of (x - 128) / 128) is 1e-1."""
    images, want = _images(N_IMAGES, size, seed=size), reference.features(size)
    with torch.no_grad():
        got = load_inception(weights, "tf1")(images.float() / 127.5 - 1.0).double()
    relative = ((got - want).abs().max() / want.abs().max()).item()
    assert relative <= 1e-4, f"max abs difference / max feature {relative:.3g}"


def test_fid_equals_the_reference_formulas(fidelity, weights):
    """On the full 2048-d features against torch-fidelity's formula (eigenvalues of S_a S_b); on
    their first 256 dimensions against the textbook scipy sqrtm (pytorch-fid's), whose Schur
    decomposition of a 2048 x 2048 product takes minutes on a busy 2-core machine."""
    real, fake = _images(8, 32, seed=1), _images(8, 32, seed=2) // 2  # darker: a real distance
    with torch.no_grad():
        features = load_inception(weights, "tf1")(torch.cat([real, fake])).double()
    f_real, f_fake = features[:8], features[8:]
    stats = [fidelity.fid.fid_features_to_statistics(f) for f in (f_real, f_fake)]
    theirs = fidelity.fid.fid_statistics_to_metric(*stats, False)["frechet_inception_distance"]
    head = slice(0, 256)
    cases = (("torch-fidelity, 2048-d", frechet_distance(f_real, f_fake), theirs),
             ("scipy sqrtm, 256-d", frechet_distance(f_real[:, head], f_fake[:, head]),
              _textbook_fid(f_real[:, head].numpy(), f_fake[:, head].numpy())))
    for name, ours, reference in cases:
        relative = abs(ours - reference) / reference
        assert relative <= FID_RTOL, f"FID {ours} vs {name} {reference}: relative error {relative:.3g}"
        print(f"[parity] FID {ours:.10g} vs {name} {reference:.10g}: relative error {relative:.3g}")


def _textbook_fid(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)) (Heusel et al. 2017, as pytorch-fid)."""
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # 8 rows: singular covariances ("the result might be inaccurate")
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))
