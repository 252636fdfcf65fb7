"""The params schema: one strict pydantic model per section of params.yaml.

Every section forbids unknown keys and bounds every number, so a wrong key, type or
out-of-range value is named with its dotted path. The checks *across* entries (a model
against its data, a sweep against its model) live in genflow.config.across; validate()
runs them on every entry that validates, to report every problem at once.
"""
from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator

from genflow.config.across import Entries, cross_field_problems
from genflow.data.specs import SPEC_BY_SOURCE, DataFacts, DataSpec, Seed
from genflow.models.plugins import installed, model_spec_union
from genflow.models.specs import SPEC_BY_MODEL, ModelSpec
from genflow.study.spec import StudySpec
from genflow.sweep.space import SweepSpec

# discriminator values of the built-in data / model unions (they appear in pydantic's error
# locations); union_tags() adds the installed model plugins' families
UNION_TAGS = {*SPEC_BY_MODEL, *SPEC_BY_SOURCE}
# no '.': dvc.yaml addresses params as models.<name>, and a dot would read as nesting; at most
# 100 characters: a name becomes a folder and a Ray run name (with a fingerprint added)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FeatureNetSpec(Strict):
    """The classifier whose penultimate layer is the feature space for FID."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    width: int = Field(32, ge=4, le=1024)
    seed: Seed = 0


class RaySpec(Strict):
    """How the train stage runs on Ray Train (num_workers 0 = in-process, no Ray)."""

    # required: dvc.yaml tracks these keys, so params.yaml must spell them out
    num_workers: int = Field(ge=0, le=4096)
    use_gpu: bool
    cpus_per_worker: float = Field(1.0, gt=0.0, le=4096)
    threads_per_worker: int = Field(ge=1, le=256)
    address: str | None = None
    # a Ray instance that genflow starts itself serves its dashboard on this interface only
    dashboard_host: str = Field("127.0.0.1", description="'0.0.0.0' exposes the dashboard to the network")
    storage_path: str = ".ray_storage"
    max_failures: int = Field(0, ge=0, le=100)
    # where a run's workers go: PACK fills a node first; STRICT_SPREAD puts each on its own node
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    # auto: a one-worker run (nothing to all-reduce) is a plain Ray task running the engine, which
    # skips Ray Train's controller and worker-group start-up (~10 s a run here, docs/benchmarks.md);
    # a data-parallel run, or one whose storage_path is a URL, is a TorchTrainer. trainer: always.
    launcher: Literal["auto", "trainer"] = "auto"

    @field_validator("storage_path", "address")
    @classmethod
    def _no_credentials_in_urls(cls, value: str | None) -> str | None:
        # the message must not echo the value: it holds the secret
        if value and re.match(r"^[\w+.-]+://[^/@\s]*:[^/@\s]*@", value):
            raise ValueError("credentials in a URL end up in logs and run metadata; give them through the "
                             "environment (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or an instance role")
        return value


class EvaluateSpec(Strict):
    """One protocol for every model: the same counts, seed and feature space."""

    n_samples: int = Field(2500, ge=10, le=1_000_000, description="generated samples per model and seed")
    n_real: int = Field(2500, ge=10, le=1_000_000, description="rows of the reference split (capped at its size)")
    reference_split: Literal["train", "val", "test"] = "test"
    seed: Seed = 0
    grid_size: int = Field(8, ge=1, le=32)
    kid_subsets: int = Field(100, ge=1, le=10_000)
    # each subset is a subset_size^2 kernel matrix: 10,000 is 400 MB in float32 (100,000 was 40 GB)
    kid_subset_size: int = Field(1000, ge=2, le=10_000)
    k_precision_recall: int = Field(3, ge=1, le=100, description="k-NN balls of precision / recall")
    k_density_coverage: int = Field(5, ge=1, le=100, description="k-NN balls of density / coverage")
    iwae_samples: int = Field(64, ge=1, le=100_000, description="importance samples of the IWAE bound (VAEs)")
    path_samples: int = Field(1000, ge=0, le=1_000_000, description="interpolation pairs of the path length "
                                                                    "(0 = off)")
    path_epsilon: float = Field(1e-4, gt=0.0, le=0.1)
    inception_weights: str | None = Field(None, description="pytorch-fid's pt_inception-2015-12-05 .pth: FID, "
                                                            "KID and PRDC in Inception-v3 space instead")
    inception_resize: Literal["tf1", "pytorch-fid"] = Field(
        "tf1", description="how images reach the Inception: tf1 = TF 1.x bilinear resize and (x - 128) / 128, as the "
                           "TF FID code and torch-fidelity; pytorch-fid = torch's half-pixel bilinear and x / 127.5 - 1")
    num_workers: int = Field(0, ge=0, le=4096, description="0: sample and embed in the stage's process; N: in N "
                                                           "Ray tasks (the same samples, the same metrics)")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=1024, description="CPUs (and torch threads) per Ray task")
    linear_probe: bool = Field(True, description="linear probes on each model's frozen features at 1/10/100 % of "
                                                 "the training labels (labelled image datasets; issue #29)")
    # issue 29: CAS and augmentation gain of conditional image models (genflow/evaluate/augmentation.py)
    augmentation_epochs: int = Field(5, ge=0, le=10_000, description="epochs (of the real train split) of each "
                                     "classifier behind CAS and the augmentation gain (conditional image models; "
                                     "0 = off)")

    def check_data(self, data: DataFacts | None = None) -> list[str]:
        """Precision / recall and density / coverage measure each row's distance to its k-th
        nearest neighbour in its own set: every set compared needs more than k rows. The sets:
        the samples, and up to n_real rows of the reference split and of the train split (the
        floors), where ``data`` tells the splits' rows."""
        sets = {"evaluate.n_samples": self.n_samples, "evaluate.n_real": self.n_real}
        for split in dict.fromkeys((self.reference_split, "train")):
            rows = data.rows(split) if data is not None else None
            if rows == 0 and split == self.reference_split:
                return [f"evaluate.reference_split: dataset {data.name!r} has no {split!r} rows to compare with"]
            if rows and rows < self.n_real:  # (no train rows at all: the models' batch size check says so)
                sets[f"the {split!r} split of dataset {data.name!r}"] = rows
        smallest, size = min(sets.items(), key=lambda item: item[1])
        return [f"evaluate.{key}: the k-th nearest neighbour needs more than k rows in every set compared; "
                f"{smallest} gives {size}, so k must be below {size} (got {getattr(self, key)})"
                for key in ("k_precision_recall", "k_density_coverage") if getattr(self, key) >= size]


class ReportSpec(Strict):
    """The comparison report: which model each dataset's others are tested against."""

    baselines: dict[str, str] = Field(default_factory=dict, description="dataset -> model; default: the "
                                                                        "dataset's first model in params.yaml")


# validate()'s context: Params' own check across entries is left to it (see validate)
RUN_BY_VALIDATE = {"checks across entries": "run by genflow.config.validate"}


class Params(Strict):
    data: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DataSpec]
    # sections without defaults: dvc.yaml lists them as params, so they must exist in the file
    featurenet: FeatureNetSpec
    ray: RaySpec
    evaluate: EvaluateSpec
    models: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ModelSpec]
    sweeps: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SweepSpec] = Field(default_factory=dict)
    # equal-budget studies (genflow/study/spec.py); their stages: presets/study/dvc.yaml
    studies: dict[Annotated[str, Field(pattern=NAME_PATTERN)], StudySpec] = Field(default_factory=dict)
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Params":
        """The checks across entries. genflow.config.validate runs them itself, on every entry
        that validates even when others do not, to report every problem at once."""
        if info.context is RUN_BY_VALIDATE:
            return self
        problems = cross_field_problems(Entries.of(self))
        if problems:
            raise ValueError("\n  ".join(problems))
        return self


def union_tags() -> set[str]:
    """Discriminator values of the data / model unions, plugin families included."""
    return {*UNION_TAGS, *installed()}


@cache
def params_class() -> type[Params]:
    """The schema params.yaml is validated against: :class:`Params`, whose ``models`` entries may
    also be the installed plugins' families (genflow.models.plugins, read on the first call)."""
    if not installed():
        return Params
    models = dict[Annotated[str, Field(pattern=NAME_PATTERN)], model_spec_union()]
    return create_model("Params", __base__=Params, __module__=__name__, models=(models, ...))
