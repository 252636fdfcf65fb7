"""Every registered model x its relevant configurations: shapes, phase ownership, determinism."""
from __future__ import annotations

import subprocess

import pytest
import torch

from genflow import config
from genflow.data.loader import BatchPlan, load_split
from genflow.models import registry
from genflow.models.base import StepContext
from genflow.models.specs import GAN_LOSSES
from genflow.train.engine import Engine

from conftest import PYTHON, REPO, tiny_params_dict

DIGITS = {"dataset": "digits", "arch": "conv", "z_dim": 8, "width": 8}
DIGITS_MLP = {"dataset": "digits", "arch": "mlp", "z_dim": 8, "width": 16, "depth": 2}
RING = {"dataset": "ring8", "arch": "mlp", "z_dim": 2, "width": 16, "depth": 2}
CYCLE = {"dataset": "digits", "width": 8, "n_res": 1, "domain_a": 0, "domain_b": 1}

# family -> [(id, spec overrides)]; a newly registered family fails test_every_family_is_covered
VARIANTS: dict[str, list[tuple[str, dict]]] = {
    "gan": [
        ("conv-digits", {**DIGITS}),
        ("conv-digits-cond", {**DIGITS, "c_dim": 10}),
        ("mlp-digits", {**DIGITS_MLP}),
        *[(f"mlp-ring8-{loss}", {**RING, "loss": loss}) for loss in GAN_LOSSES],
        ("mlp-ring8-sn", {**RING, "spectral_norm": True}),
        ("mlp-ring8-r1", {**RING, "r1_gamma": 1.0}),
        ("mlp-ring8-pac2", {**RING, "pac": 2}),
        ("mlp-ring8-mbstd", {**RING, "mbstd": True}),
        ("mlp-ring8-pac4-maxout-bn",  # PacGAN's Table 1 networks, narrow
         {**RING, "pac": 4, "d_act": "maxout", "maxout_pieces": 3, "d_width": 12, "d_depth": 3, "g_batchnorm": True}),
        ("mlp-ring8-ncritic2", {**RING, "loss": "wgan-gp", "train": {"n_critic": 2}}),
        ("conv-digits-cond-sn-r1-pac2-mbstd-hinge",
         {**DIGITS, "c_dim": 10, "spectral_norm": True, "r1_gamma": 0.5, "pac": 2, "mbstd": True, "loss": "hinge"}),
        ("conv-digits-wgan-gp-mbstd", {**DIGITS, "loss": "wgan-gp", "mbstd": True}),
        ("conv-digits-resblocks-sn", {**DIGITS, "resblocks": True, "spectral_norm": True}),
    ],
    "vae": [
        ("conv-digits", {**DIGITS}),
        ("conv-digits-cond", {**DIGITS, "c_dim": 10}),
        ("conv-digits-gaussian-warmup", {**DIGITS, "likelihood": "gaussian", "kl_warmup_steps": 5, "beta": 0.5}),
        ("mlp-digits", {**DIGITS_MLP}),
        ("mlp-ring8-gaussian", {**RING, "likelihood": "gaussian"}),
        ("conv-digits-resblocks", {**DIGITS, "resblocks": True}),
    ],
    "vaegan": [
        ("conv-digits", {**DIGITS}),
        ("conv-digits-cond-sn", {**DIGITS, "c_dim": 10, "spectral_norm": True}),
        ("mlp-ring8", {**RING, "gamma": 0.5, "beta": 0.5}),
        ("conv-digits-resblocks", {**DIGITS, "resblocks": True}),
    ],
    "stylegan": [
        ("conv-digits", {**DIGITS}),
        ("conv-digits-r1every1-pl", {**DIGITS, "r1_every": 1, "pl_weight": 2.0, "pl_every": 1}),
        ("conv-digits-cond-mix1", {**DIGITS, "c_dim": 10, "mixing_prob": 1.0}),
        ("conv-digits-resblocks-nombstd-noema", {**DIGITS, "resblocks": True, "mbstd": False,
                                                 "train": {"ema_decay": 0.0}}),
    ],
    "cyclegan": [  # digits 0 <-> 1 (tests/test_cyclegan.py: sprites squares <-> ellipses)
        ("conv-digits", {**CYCLE}),
        ("conv-digits-no-identity-hinge", {**CYCLE, "lambda_identity": 0.0, "loss": "hinge", "n_res": 0}),
    ],
    "srgan": [  # no z_dim: G's input is the downsampled image
        ("digits-x2-l1", {"dataset": "digits", "width": 8, "scale": 2, "pixel_loss": "l1"}),
        ("digits-x4-l2", {"dataset": "digits", "width": 8, "scale": 4, "pixel_loss": "l2", "n_res": 1}),
        ("digits-x2-l2-resblocks-ncritic2", {"dataset": "digits", "width": 8, "scale": 2, "pixel_loss": "l2",
                                             "resblocks": True, "train": {"n_critic": 2}}),
        ("digits-x4-l1-nores", {"dataset": "digits", "width": 8, "scale": 4, "n_res": 0}),
    ],
}
CASES = [pytest.param(family, overrides, id=f"{family}-{vid}")
         for family in registry.names() for vid, overrides in VARIANTS.get(family, [("MISSING", None)])]

# families that sample from z (task "generate"); the others test their own task in their own file
GENERATE_CASES = [case for case in CASES if registry.model_class(case.values[0]).task == "generate"]
GENERATORS = [name for name in registry.names() if registry.model_class(name).task == "generate"]

BATCH = 16


def make_spec(family: str, overrides: dict, seed: int = 0):
    overrides = dict(overrides)
    train = {"batch_size": BATCH, "steps": 3, **overrides.pop("train", {})}
    raw = {**tiny_params_dict(), "models": {"m": {"model": family, **overrides, "train": train}}}
    return config.validate(raw).models["m"]


@pytest.fixture(scope="module")
def splits(prepared_dir):
    return {name: load_split(prepared_dir / name, "train") for name in ("digits", "ring8")}


def build(family, overrides, splits, seed=0):
    if overrides is None:
        pytest.fail(f"model family {family!r} is registered but has no test configurations in VARIANTS")
    spec = make_spec(family, overrides, seed)
    data = splits[spec.dataset]
    torch.manual_seed(seed)
    model = registry.build(spec, data.shape, data.num_classes)
    return spec, model, data


def test_every_family_is_covered():
    assert {"gan", "vae"} <= set(registry.names())
    assert set(registry.names()) <= set(VARIANTS)


def test_cli_lists_models():
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "models"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == registry.names()
    assert "gan" in lines and "vae" in lines


@pytest.mark.parametrize("family,overrides", GENERATE_CASES)
def test_sample_shapes(family, overrides, splits):
    spec, model, data = build(family, overrides, splits)
    samples = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, *data.shape)
    assert torch.isfinite(samples).all()
    if data.kind == "image":
        assert samples.min() >= -1 and samples.max() <= 1
    again = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)
    if spec.c_dim:
        c = torch.arange(6) % spec.c_dim
        z_gen = torch.Generator().manual_seed(1)
        a = model.sample(6, c=c, generator=z_gen)
        b = model.sample(6, c=(c + 1) % spec.c_dim, generator=torch.Generator().manual_seed(1))
        assert a.shape == (6, *data.shape) and not torch.equal(a, b)  # the label matters


def _unused(spec, qualified: str) -> bool:
    # a Bernoulli VAE never reads the Gaussian decoder's scale
    return spec.model == "vae" and spec.likelihood == "bernoulli" and qualified == "G.log_sigma"


@pytest.mark.parametrize("family,overrides", CASES)
def test_phase_gradients_only_on_owned_networks(family, overrides, splits):
    spec, model, data = build(family, overrides, splits)
    engine = Engine(model, train=spec.train, seed=0)
    batch = data.batch(BatchPlan(len(data), BATCH, seed=0).indices(0))
    assert engine.phases and all(set(p.owns) <= set(model.network_names) for p in engine.phases)
    owned_somewhere = set()
    for index, phase in enumerate(engine.phases):
        engine._freeze_all_but(phase.owns + phase.tracks)  # as Engine.train_step does
        model.zero_grad(set_to_none=True)
        loss, logs = phase.loss(batch, StepContext(step=0, seed=0, phase=index))
        assert loss.dim() == 0 and torch.isfinite(loss) and logs
        loss.backward()
        model.set_active({})
        for qualified, p in model.named_parameters():
            network = qualified.split(".")[0]
            if network in phase.owns and not _unused(spec, qualified):
                assert p.grad is not None, f"phase {phase.name}: {qualified} got no gradient"
                assert torch.isfinite(p.grad).all(), f"phase {phase.name}: {qualified} gradient not finite"
            elif network not in phase.owns:
                assert p.grad is None, f"phase {phase.name} put a gradient on {qualified} (not owned)"
        assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
                   if n.split(".")[0] in phase.owns and p.grad is not None)
        owned_somewhere |= set(phase.owns)
    assert owned_somewhere == set(model.network_names)  # every network is trained by some phase
    if spec.model == "gan" and spec.loss == "wgan-gp":
        assert "gp" in engine.phases[0].loss(batch, StepContext(step=0, seed=0))[1]
    if spec.model == "gan" and spec.r1_gamma > 0:
        assert "r1" in engine.phases[0].loss(batch, StepContext(step=0, seed=0))[1]
    if spec.model == "stylegan":  # lazy regularisers: on the last step of each interval
        last = StepContext(step=spec.r1_every - 1, seed=0)
        assert ("r1" in engine.phases[0].loss(batch, last)[1]) == (spec.r1_gamma > 0)
        last = StepContext(step=spec.pl_every - 1, seed=0, phase=1)
        assert ("pl_penalty" in engine.phases[1].loss(batch, last)[1]) == (spec.pl_weight > 0)


def _trained_state(family, overrides, splits, seed, steps=3):
    spec, model, data = build(family, overrides, splits, seed)
    engine = Engine(model, train=spec.train, seed=seed)
    plan = BatchPlan(len(data), BATCH, seed)
    for _ in range(steps):
        engine.train_step(data, plan)
    assert engine.step == steps
    return model.state_dict()


@pytest.mark.parametrize("family,overrides", CASES)
def test_same_seed_same_weights(family, overrides, splits):
    a = _trained_state(family, overrides, splits, seed=0)
    b = _trained_state(family, overrides, splits, seed=0)
    c = _trained_state(family, overrides, splits, seed=1)
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("family", GENERATORS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 64, 64), (4, 16, 16)])
@pytest.mark.parametrize("resblocks", [False, True])
def test_conv_models_fit_larger_images(family, shape, resblocks):
    """Conv G/D/E for power-of-two sizes up to 64 px and any channel count (no dataset needed)."""
    spec = make_spec(family, {**DIGITS, "width": 4, "z_dim": 3, "resblocks": resblocks})
    torch.manual_seed(0)
    model = registry.build(spec, shape, 10)
    x = torch.rand(4, *shape) * 2 - 1
    assert model.sample(4).shape == (4, *shape)
    if hasattr(model, "D"):
        assert model.D(x).shape == (4,)
    if hasattr(model, "E"):
        mu, logvar = model.E(x)
        assert mu.shape == logvar.shape == (4, 3)
