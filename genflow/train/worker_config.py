"""What a training worker needs to run one seed, typed: built by the driver, read on the worker
(which may be on another node, so every field is plain JSON-able data)."""
from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genflow.config import Params, fingerprint
from genflow.data.shards import manifest_hash, read_manifest
from genflow.data.specs import DataFacts
from genflow.errors import ConfigError, DataError
from genflow.io import code_revision, package_digest
from genflow.train.init_from import resolve as resolve_init
from genflow.train.progress import progress_mode, run_label


@dataclass(frozen=True)
class WorkerConfig:
    name: str                    # the models.<name> entry
    spec: dict[str, Any]         # that entry as JSON; validated again where the model is built
    seed: int
    data_dir: str                # data/prepared/<dataset>, absolute
    data_shape: list[int]        # (C, H, W) for images, (D,) for points
    num_classes: int
    data_manifest_sha256: str
    threads: int                 # torch intra-op threads of the worker
    code_revision: str
    code_digest: str | None      # sha256 of the driver's genflow source: a worker refuses other code
    fingerprint: str             # of (spec, seed): the run name, so a changed config never resumes
    progress: str = "lines"      # "bar" | "lines", decided by the driver (a worker has no terminal)
    trial: str | None = None     # the sweep trial this run is, if any
    split_rows: dict[str, int] | None = None  # rows of each split (the manifest's)
    init_from: dict[str, Any] | None = None   # train.init_from located: path, kind, file, sha256

    @property
    def label(self) -> str:
        """How progress lines name this run: model, sweep trial (if any) and seed."""
        return run_label(self.name, self.seed, self.trial)

    @property
    def data_facts(self) -> DataFacts:
        """What the prepared data is, as the model specs' check_data reads it."""
        image = len(self.data_shape) == 3
        return DataFacts(self.spec["dataset"], "image" if image else "points",
                         tuple(self.data_shape[1:]) if image else None, self.num_classes, self.split_rows)

    @property
    def steps(self) -> int:
        return self.spec["train"]["steps"]

    def replace(self, **changes: Any) -> "WorkerConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """For Ray Train / Tune configs, which must be dicts."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "WorkerConfig":
        return cls(**values)


def worker_config(name: str, params: Params, data_root: str | Path, seed: int | None = None) -> WorkerConfig:
    """The config of one seed of model ``name``, checked against its prepared data first."""
    spec = params.models[name]
    seed = spec.seeds[0] if seed is None else seed
    data_dir = Path(data_root) / spec.dataset
    manifest = read_manifest(data_dir)
    problems = spec.check_data(name, DataFacts.from_manifest(spec.dataset, manifest))
    if problems:
        raise ConfigError("\n  ".join(problems))
    shape = manifest["shape"]
    spec_json = spec.model_dump(mode="json")
    init = resolve_init(name, spec)
    # the source's content is part of the run's name: a changed source never resumes a stale run
    identity = {"spec": spec_json, "seed": seed, **({"init_sha256": init["sha256"]} if init else {})}
    return WorkerConfig(
        name=name, spec=spec_json, seed=seed, data_dir=str(data_dir.resolve()),
        data_shape=[shape[2], shape[0], shape[1]] if manifest["kind"] == "image" else list(shape),
        num_classes=manifest["num_classes"], data_manifest_sha256=manifest_hash(data_dir),
        threads=params.ray.threads_per_worker, code_revision=code_revision(), code_digest=package_digest(),
        fingerprint=fingerprint(identity), progress=progress_mode(),
        split_rows={split: entry["rows"] for split, entry in manifest["splits"].items()}, init_from=init)


def check_worker_environment(config: WorkerConfig) -> None:
    """On a worker of another node: the same genflow code as the driver, and the data in reach."""
    if config.code_digest not in (None, package_digest()):
        raise RuntimeError(f"this worker imports genflow from {Path(__file__).parents[1]} (source digest "
                           f"{package_digest()}), not the driver's code (digest {config.code_digest}); "
                           "attach through ray.address / RAY_ADDRESS, which ships the driver's genflow, or "
                           "install the same revision on every node")
    if not Path(config.data_dir).is_dir():
        raise DataError(f"{config.data_dir}: the prepared data is not visible on node {socket.gethostname()}; "
                        "on a multi-node cluster the DVC workspace must be on storage every node mounts "
                        "(infra/README.md, 'Shared storage')")


def run_name(config: WorkerConfig) -> str:
    """Stable per (model, params, seed): a rerun resumes, a changed config starts afresh."""
    return f"{config.name}-s{config.seed}-{config.fingerprint}"
