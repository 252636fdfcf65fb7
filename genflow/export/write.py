"""Export a trained model: its networks as TorchScript and ONNX, its weights as
safetensors, and a model card, each network checked against the eager model.

Networks (all with a batch dimension N of any size):

* ``generator(z, c) -> x``: z float32 (N, z_dim) ~ N(0, I), c int64 (N,) class
  labels (ignored when unconditional); samples in data space: images in [-1, 1]
  as (N, C, H, W), or points (N, D). Every model has one.
* ``encoder(x, c) -> (mu, logvar)`` of q(z | x, c): VAE and VAE-GAN.
* ``scorer(x, eps) -> score`` (N,): the anomaly score the evaluation uses
  (higher = less like the training data) for standard-normal draws ``eps`` of
  the card's ``noise_shape``: unconditional models (and PacGAN excepted, whose
  D reads packs).

Loading an export needs neither genflow's training code nor pickle: ONNX
Runtime runs the ``.onnx`` files (see :mod:`genflow.export.exported`), and the weights
are safetensors.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from genflow.data.shards import read_manifest
from genflow.io import atomic_dir, code_revision, write_json
from genflow.metrics import catalog
from genflow.models.base import ExportNet
from genflow.train.worker import load_trained, trained_seeds

PARITY_TOLERANCE = 1e-5
# the anomaly score sums log-likelihoods over pixels and importance samples: float32 sums in
# another order (ONNX Runtime's kernels) differ by a few 1e-5 relative, so it gets 1e-4
TOLERANCE = {"generator": PARITY_TOLERANCE, "encoder": PARITY_TOLERANCE, "scorer": 1e-4}
ONNX_OPSET = 18
CARD_FILE, WEIGHTS_FILE = "model_card.json", "weights.safetensors"
TORCHSCRIPT_FILE = "generator.torchscript.pt"  # the generator's; other networks: <name>.torchscript.pt


class GeneratorNet(nn.Module):
    def __init__(self, decoder: nn.Module, conditional: bool):
        super().__init__()
        self.decoder, self.conditional = decoder, conditional

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, c) if self.conditional else self.decoder(z)


class EncoderNet(nn.Module):
    def __init__(self, encoder: nn.Module, conditional: bool):
        super().__init__()
        self.encoder, self.conditional = encoder, conditional

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, c) if self.conditional else self.encoder(x)


class ScorerNet(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.model.anomaly_score_from_noise(x, eps)


def fixed_inputs(z_dim: int, c_dim: int, n: int = 64, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=gen)
    c = torch.arange(n) % c_dim if c_dim else torch.zeros(n, dtype=torch.long)
    return z, c


def baked(model):
    """A copy with every parametrization (spectral norm) folded into plain weights: in eval
    mode the normalised weight is fixed, so outputs are unchanged and exporters see ordinary
    layers (the TorchScript-based ONNX exporter has no ``vdot``)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def networks(model) -> dict[str, ExportNet]:
    """name -> (module, example inputs, input names, output names) of everything to export:
    a ``generate`` model's generator (+ encoder, scorer), then the model's own networks."""
    model = baked(model)
    nets = generative_networks(model) if model.task == "generate" else {}
    return {**nets, **model.export_networks()}


def generative_networks(model) -> dict[str, ExportNet]:
    spec, n = model.spec, 16
    conditional = spec.c_dim > 0
    z, c = fixed_inputs(spec.z_dim, spec.c_dim, n)
    nets = {"generator": (GeneratorNet(model.decoder(), conditional), (z, c), ["z", "c"], ["x"])}
    with torch.no_grad():
        x = model.decoder()(z, c if conditional else None)
    if model.has_encoder:
        nets["encoder"] = (EncoderNet(model.E, conditional), (x, c), ["x", "c"], ["mu", "logvar"])
    if model.scores_single_images:
        eps = torch.randn(n, *model.anomaly_noise_shape(), generator=torch.Generator().manual_seed(99))
        nets["scorer"] = (ScorerNet(model), (x, eps), ["x", "eps"], ["score"])
    return nets


def _outputs(module: nn.Module, inputs: tuple) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(*inputs)
    return list(out) if isinstance(out, tuple) else [out]


def _max_error(got: list, expected: list[torch.Tensor]) -> float:
    """max |got - eager| / max(1, |eager|): the absolute error for outputs within [-1, 1]
    (images, latents), the relative error for large values (an anomaly score sums nats)."""
    return max(float(((torch.as_tensor(g) - e).abs() / e.abs().clamp(min=1.0)).max()) for g, e in zip(got, expected))


def export_torchscript(module: nn.Module, inputs: tuple, path: Path) -> float:
    """Trace, save, reload, and return the reloaded module's max |error| against eager."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # constants such as log(K) are meant
        torch.jit.trace(module, inputs, check_trace=False).save(str(path))
        reloaded = torch.jit.load(str(path))
    return _max_error(_outputs(reloaded, inputs), _outputs(module, inputs))


def export_onnx(module: nn.Module, inputs: tuple, names: tuple[list[str], list[str]], path: Path) -> tuple[float, list]:
    """Export (dynamic batch), run in ONNX Runtime; return the max error and the graph's inputs.

    The TorchScript-based exporter (``dynamo=False``): 0.01-0.1 s per network here against
    1-3 s for the torch.export-based one, which made the default pipeline 90 s slower. It
    drops inputs a network ignores (``c`` of an unconditional generator, a GAN scorer's
    ``eps``); the card lists each file's real inputs and callers feed only those."""
    import onnxruntime

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=names[0], output_names=names[1], external_data=False,
                              dynamic_axes={name: {0: "batch"} for name in names[0] + names[1]})
        except torch.onnx.errors.UnsupportedOperatorError:  # slower, but covers more operators
            torch.onnx.export(module, inputs, str(path), dynamo=True, opset_version=ONNX_OPSET,
                              input_names=names[0], output_names=names[1], external_data=False,
                              dynamic_shapes=tuple({0: torch.export.Dim("batch")} for _ in inputs))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = [i.name for i in session.get_inputs()]
    feeds = {name: tensor.numpy() for name, tensor in zip(names[0], inputs) if name in declared}
    return _max_error(session.run(None, feeds), _outputs(module, inputs)), declared


def _signature(names: list[str], tensors: list[torch.Tensor]) -> dict[str, Any]:
    return {name: {"shape": ["N", *t.shape[1:]], "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in zip(names, tensors)}


def export_network(name: str, item, tmp: Path, model_name: str, tolerance: float | None = None) -> dict[str, Any]:
    module, inputs, in_names, out_names = item
    module.eval()
    tolerance = tolerance or TOLERANCE.get(name, PARITY_TOLERANCE)
    files = {"torchscript": f"{name}.torchscript.pt", "onnx": f"{name}.onnx"}
    onnx_error, onnx_inputs = export_onnx(module, inputs, (in_names, out_names), tmp / files["onnx"])
    errors = {"torchscript": export_torchscript(module, inputs, tmp / files["torchscript"]), "onnx": onnx_error}
    for kind, error in errors.items():
        if not error <= tolerance:
            raise RuntimeError(f"{kind} export of {model_name}'s {name} differs from eager by {error:.3g} "
                               f"(> {tolerance})")
    return {"files": files, "inputs": _signature(in_names, list(inputs)), "onnx_inputs": onnx_inputs,
            "outputs": _signature(out_names, _outputs(module, inputs)),
            "parity": {"max_error": errors, "tolerance": tolerance, "n": len(inputs[0]),
                       "error": "max |exported - eager| / max(1, |eager|)"}}


def _data_section(meta: dict[str, Any], data_dir: Path | None) -> dict[str, Any]:
    section = {"dataset": meta["spec"]["dataset"], "manifest_sha256": meta["data_manifest_sha256"],
               "num_classes": meta["num_classes"]}
    if data_dir is not None and (data_dir / "manifest.json").exists():
        manifest = read_manifest(data_dir)
        section.update(kind=manifest["kind"], shape=manifest["shape"], class_names=manifest.get("class_names"))
    return section


def _metrics_section(metrics_path: Path | None) -> dict[str, Any] | None:
    """Every metric of the evaluate stage's details file (metrics/<model>.details.json, beside the
    headline metrics/<model>.json) and its protocol."""
    details = None if metrics_path is None else catalog.details_path(metrics_path)
    if details is None or not details.exists():
        return None
    metrics = json.loads(details.read_text())
    # the card's values are numbers; per-seed values and the ROC curve stay in the details file
    return {"values": {k: v for k, v in metrics.items() if k not in ("protocol", "per_seed", "anomaly_roc")},
            "protocol": metrics.get("protocol")}


def model_card(model, meta: dict[str, Any], nets: dict[str, Any], data_dir: Path | None,
               metrics_path: Path | None) -> dict[str, Any]:
    card = {
        "format": "genflow-export", "format_version": 3, "name": meta["name"], "model": meta["model"],
        "spec": meta["spec"], "seed": meta["seed"],
        "task": model.task, "io": model.card_io(),
        "networks": nets, "onnx_opset": ONNX_OPSET,
        "data": _data_section(meta, data_dir), "metrics": _metrics_section(metrics_path),
        "weights": {"file": WEIGHTS_FILE, "load": "safetensors; registry.build(spec, data_shape, num_classes)"},
        "model_state_sha256": meta["state_sha256"], "model_code_revision": meta["code_revision"],
        "code_revision": code_revision(),
    }
    if "selected" in meta:  # probed during training: which weights train.select exported (picked on val)
        card["selected"] = {**meta["selected"], **meta["monitor"]}
    if "scorer" in nets:
        card["anomaly"] = {"noise_shape": list(model.anomaly_noise_shape()),
                           "score": type(model).anomaly_score_from_noise.__doc__.strip().splitlines()[0]}
    return card


def export_model(model_dir: str | Path, out: str | Path, *, data_dir: str | Path | None = None,
                 metrics_path: str | Path | None = None, log=print) -> dict[str, Any]:
    """Export the first seed's networks (a model's seeds are replicas; the card names the seed)."""
    model, meta, _ = load_trained(trained_seeds(model_dir)[0])
    with atomic_dir(out) as tmp:
        nets = {name: export_network(name, item, tmp, meta["name"], model.export_tolerances.get(name))
                for name, item in networks(model).items()}
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE),
                  # one key: safetensors writes metadata in hash-map order, and the file must be
                  # byte-identical from run to run
                  metadata={"genflow": json.dumps({"name": meta["name"], "model_state_sha256": meta["state_sha256"]},
                                                  sort_keys=True)})
        card = model_card(model, meta, nets, Path(data_dir) if data_dir else None,
                          Path(metrics_path) if metrics_path else None)
        write_json(tmp / CARD_FILE, card)
    worst = max(e for net in nets.values() for e in net["parity"]["max_error"].values())
    log(f"[export] {meta['name']}: {', '.join(nets)} as TorchScript + ONNX (opset {ONNX_OPSET}); "
        f"max |diff| vs eager {worst:.2e}")
    return card
