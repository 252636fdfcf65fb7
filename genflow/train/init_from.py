"""``train.init_from``: start a run from trained weights (fine-tuning, or a longer second stage).

The source is an export folder (``export/<model>``: its ``weights.safetensors``) or a run's
checkpoint (``models/<model>/seed_<s>``, or ``models/<model>`` for its first seed: the weights
its ``train.select`` picked). The driver resolves it once (:func:`resolve`): the absolute path,
the weights file and its sha256, which the run's config, its name (a changed source never
resumes a stale run) and its checkpoints' metadata carry. The worker loads the file, refuses it
if its hash changed since, and copies the networks' weights in (:func:`apply`): every network of
the new model (G, D, E...) must find its every tensor, of the same shape, in the source. The
EMA of G starts from the source's EMA where both have one, else from the loaded G; the
optimizers start fresh, at step 0.

Every problem is a ConfigError naming ``models.<name>.train.init_from`` (exit 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genflow.errors import ConfigError, DataError
from genflow.io import sha256_file
from genflow.train import checkpoint

EXPORT_WEIGHTS, EXPORT_CARD = "weights.safetensors", "model_card.json"


def _checkpoint_dir(path: Path) -> Path | None:
    """``path`` itself when it is a checkpoint, else its first ``seed_<n>/`` checkpoint, or None."""
    if (path / checkpoint.STATE_FILE).is_file():
        return path
    seeds = sorted(path.glob("seed_*"), key=lambda d: (len(d.name), d.name))
    return seeds[0] if seeds and (seeds[0] / checkpoint.STATE_FILE).is_file() else None


def resolve(name: str, spec) -> dict[str, Any] | None:
    """Model ``name``'s ``train.init_from``, located: {path, kind, file, sha256}; None when unset."""
    source = spec.train.init_from
    if source is None:
        return None
    where, path = f"models.{name}.train.init_from", Path(source).resolve()
    if not path.is_dir():
        raise ConfigError(f"{where}: {source} is not a folder; give an export folder (export/<model>) or a run's "
                          "checkpoint (models/<model>/seed_<s>)")
    if (path / EXPORT_WEIGHTS).is_file() and (path / EXPORT_CARD).is_file():
        kind, weights = "export", path / EXPORT_WEIGHTS
    elif (found := _checkpoint_dir(path)) is not None:
        kind, weights = "checkpoint", found / checkpoint.STATE_FILE
    else:
        raise ConfigError(f"{where}: {source} holds neither an export ({EXPORT_WEIGHTS} + {EXPORT_CARD}) nor a "
                          f"checkpoint ({checkpoint.STATE_FILE}, or seed_<n>/ folders holding one)")
    return {"path": str(path), "kind": kind, "file": str(weights), "sha256": sha256_file(weights)}


def source_weights(name: str, init: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The source's weights (weights-only loading), once its file still has the recorded sha256."""
    where, weights = f"models.{name}.train.init_from", Path(init["file"])
    if not weights.is_file() or sha256_file(weights) != init["sha256"]:
        raise ConfigError(f"{where}: {weights} changed or vanished since the run was configured (sha256 "
                          f"{init['sha256'][:12]}...); rerun the stage")
    if init["kind"] == "export":
        from safetensors.torch import load_file

        return load_file(str(weights))
    try:
        state, _, meta = checkpoint.load(weights.parent)
    except DataError as err:
        raise ConfigError(f"{where}: {err}") from None
    from genflow.models.plugins import validate_spec
    from genflow.train.monitor import selected_weights

    return selected_weights(state, validate_spec(meta["spec"]).train)[0] if "spec" in meta else state["model"]


def _mismatch(own: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> str | None:
    """The first tensor the source lacks or has in another shape, described; None if it fits."""
    for key, tensor in own.items():
        if key not in source:
            return f"parameter {key} {list(tensor.shape)} is not in the source"
        if source[key].shape != tensor.shape:
            return f"parameter {key} is {list(source[key].shape)} there and {list(tensor.shape)} here"
    return None


def apply(model, name: str, init: dict[str, Any] | None) -> None:
    """Copy the source's weights into ``model``'s networks (and its EMA); a ConfigError naming the
    first mismatched parameter when the architectures differ."""
    if init is None:
        return
    source = source_weights(name, init)
    own = {key: value for key, value in model.state_dict().items()
           if key.split(".", 1)[0] in model.network_names}
    problem = _mismatch(own, source)
    if problem:
        raise ConfigError(f"models.{name}.train.init_from: {init['path']} does not fit model {name!r} "
                          f"(another architecture): {problem}")
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(source[key])
        for net in model.network_names:  # the EMA: the source's where it has one, else the loaded network
            ema = getattr(model, f"{net}_ema", None)
            if ema is not None:
                loaded = {k: v for k, v in source.items() if k.startswith(f"{net}_ema.")}
                mine = {f"{net}_ema.{k}": v for k, v in ema.state_dict().items()}
                if _mismatch(mine, loaded) is None:
                    ema.load_state_dict({k.split(".", 1)[1]: v for k, v in loaded.items()})
                else:
                    ema.load_state_dict(getattr(model, net).state_dict())


def check(config) -> None:
    """On the driver, before any worker starts: the source loads into a freshly built model
    (the same check the worker makes, so a mismatch exits 2 before Ray is involved)."""
    if config.init_from is None:
        return
    from genflow.models import registry
    from genflow.models.plugins import validate_spec

    model = registry.build(validate_spec(config.spec), tuple(config.data_shape), config.num_classes)
    apply(model, config.name, config.init_from)
