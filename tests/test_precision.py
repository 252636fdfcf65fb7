"""train.precision: bf16 and train.compile, on CPU: what runs in which precision, and that a
compiled run trains the same model and writes the same checkpoint as an eager one."""
from __future__ import annotations

import pytest
import torch

from genflow import config
from genflow.train import worker as training
from genflow.train.engine import PrintReporter
from genflow.train.worker_config import worker_config

from conftest import tiny_params_dict


def _engine(prepared_dir, family: str = "gan", **train):
    raw = tiny_params_dict()
    raw["models"] = {"m": {"model": family, "dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8,
                           "train": {"steps": 4, "batch_size": 16, "log_every": 1, "checkpoint_every": 4, **train}}}
    return training.build_engine(worker_config("m", config.validate(raw), prepared_dir))


@pytest.mark.parametrize("family", ["gan", "vae", "vaegan"])
def test_bf16_runs_the_convolutions_in_bf16_and_hands_fp32_to_the_losses(family, prepared_dir):
    engine, data = _engine(prepared_dir, family, precision="bf16")
    conv_outputs, network_outputs = [], []
    for name in engine.model.network_names:
        net = getattr(engine.model, name)
        first_conv = next(m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
        first_conv.register_forward_hook(lambda module, args, out: conv_outputs.append(out.dtype))
        # registered after the engine's own hook: sees what the phase's loss code receives
        net.register_forward_hook(lambda module, args, out: network_outputs.extend(
            t.dtype for t in (out if isinstance(out, tuple) else (out,)) if t.is_floating_point()))
    log = engine.fit(data, PrintReporter("m"))
    assert conv_outputs and set(conv_outputs) == {torch.bfloat16}
    assert network_outputs and set(network_outputs) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in engine.model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for row in log for v in row.values())
    # outside training (evaluation, export) the networks run in fp32
    with torch.no_grad():
        engine.model.eval()
        assert engine.model.sample(4, generator=torch.Generator().manual_seed(0)).dtype == torch.float32


def test_fp32_adds_no_hooks(prepared_dir):
    engine, _ = _engine(prepared_dir, "gan")
    assert not any(getattr(engine.model, name)._forward_hooks for name in engine.model.network_names)


@pytest.mark.slow
def test_a_compiled_run_trains_the_same_model_and_writes_the_same_checkpoint_keys(prepared_dir):
    eager, data = _engine(prepared_dir, "gan")
    eager_log = eager.fit(data, PrintReporter("eager"))
    compiled, data = _engine(prepared_dir, "gan", compile=True)
    reporter = PrintReporter("compiled")
    compiled_log = compiled.fit(data, reporter)
    assert type(compiled.wrappers["D"]).__name__ == "OptimizedModule"
    state = reporter.checkpoints[-1][1]["model"]
    assert state.keys() == eager.state_dict()["model"].keys()  # no _orig_mod. prefix
    for a, b in zip(compiled_log, eager_log):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_compile_without_a_cpp_compiler_is_refused_before_any_step(prepared_dir):
    """Inductor would fail at the first step with a traceback from the compiler stack; the
    engine refuses at construction, naming the key and what is missing."""
    from torch._inductor import config as inductor

    from genflow.errors import ConfigError

    with inductor.patch({"cpp.cxx": (None, "no-such-g++")}):
        with pytest.raises(ConfigError, match=r"train\.compile: true on CPU needs a C\+\+ compiler.*no-such-g\+\+"):
            _engine(prepared_dir, "gan", compile=True)
