"""Typed, strict view of params.yaml.

Every section is a pydantic model with ``extra="forbid"``: an unknown key, a
wrong type or an out-of-range value raises :class:`ConfigError` naming the
dotted key path and what is allowed. This module imports neither torch nor
Ray, so a bad params.yaml is rejected in well under two seconds, before any
heavy machinery starts.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genflow.data.specs import SPEC_BY_SOURCE, DataFacts, DataSpec
from genflow.errors import ConfigError
from genflow.models.specs import SPEC_BY_MODEL, ModelSpec
from genflow.sweep.space import SweepSpec, check_sweep

# discriminator values of the data / model unions (they appear in pydantic's error locations)
_UNION_TAGS = {*SPEC_BY_MODEL, *SPEC_BY_SOURCE}
# no '.': dvc.yaml addresses params as models.<name>, and a dot would read as nesting
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FeatureNetSpec(Strict):
    """The classifier whose penultimate layer is the feature space for FID."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    width: int = Field(32, ge=4, le=1024)
    seed: int = 0


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
    seed: int = 0
    grid_size: int = Field(8, ge=1, le=32)
    kid_subsets: int = Field(100, ge=1, le=10_000)
    kid_subset_size: int = Field(1000, ge=2, le=100_000)
    k_precision_recall: int = Field(3, ge=1, le=100, description="k-NN balls of precision / recall")
    k_density_coverage: int = Field(5, ge=1, le=100, description="k-NN balls of density / coverage")
    iwae_samples: int = Field(64, ge=1, le=100_000, description="importance samples of the IWAE bound (VAEs)")
    path_samples: int = Field(1000, ge=0, le=1_000_000, description="interpolation pairs of the path length "
                                                                    "(0 = off)")
    path_epsilon: float = Field(1e-4, gt=0.0, le=0.1)
    inception_weights: str | None = Field(None, description="pytorch-fid's pt_inception-2015-12-05 .pth: FID, "
                                                            "KID and PRDC in Inception-v3 space instead")
    num_workers: int = Field(0, ge=0, le=4096, description="0: sample and embed in the stage's process; N: in N "
                                                           "Ray tasks (the same samples, the same metrics)")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=1024, description="CPUs (and torch threads) per Ray task")


class ReportSpec(Strict):
    """The comparison report: which model each dataset's others are tested against."""

    baselines: dict[str, str] = Field(default_factory=dict, description="dataset -> model; default: the "
                                                                        "dataset's first model in params.yaml")


class Params(Strict):
    data: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DataSpec]
    # sections without defaults: dvc.yaml lists them as params, so they must exist in the file
    featurenet: FeatureNetSpec
    ray: RaySpec
    evaluate: EvaluateSpec
    models: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ModelSpec]
    sweeps: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SweepSpec] = Field(default_factory=dict)
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _baselines_exist(self) -> "Params":
        for dataset, model in self.report.baselines.items():
            if dataset not in self.data:
                raise ValueError(f"report.baselines.{dataset}: unknown dataset; allowed: {sorted(self.data)}")
            if model not in self.models or self.models[model].dataset != dataset:
                allowed = sorted(n for n, spec in self.models.items() if spec.dataset == dataset)
                raise ValueError(f"report.baselines.{dataset}: {model!r} is not a model trained on {dataset!r}; "
                                 f"allowed: {allowed}")
        return self

    @model_validator(mode="after")
    def _sweeps_fit_models(self) -> "Params":
        problems = [p for name, sweep in self.sweeps.items() for p in check_sweep(name, sweep, self.models,
                                                                                   SPEC_BY_MODEL)]
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @model_validator(mode="after")
    def _models_use_known_data(self) -> "Params":
        """Each model against what params tell of its dataset (the spec owns the checks; the
        prepared manifest is checked again before training). Every problem, not the first."""
        problems = []
        for name, spec in self.models.items():
            if spec.dataset not in self.data:
                problems.append(f"models.{name}.dataset: unknown dataset {spec.dataset!r}; "
                                f"allowed: {sorted(self.data)} (the keys of 'data')")
                continue
            problems += spec.check_data(name, DataFacts.from_params(spec.dataset, self.data[spec.dataset]))
        if problems:
            raise ValueError("\n  ".join(problems))
        return self


def _clean_loc(loc: tuple) -> str:
    # A discriminated union puts its tag after the entry name
    # (models.<name>.<tag>.lr): drop it so the path matches params.yaml.
    parts = list(loc)
    if len(parts) > 2 and parts[0] in ("data", "models") and parts[2] in _UNION_TAGS:
        del parts[2]
    return ".".join(str(p) for p in parts)


def _format_error(err: dict[str, Any], model_fields: dict[str, list[str]]) -> str:
    path = _clean_loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        allowed = model_fields.get(parent)
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{path}: unknown key{hint}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "union_tag_invalid":  # e.g. data.x.source: unknown source 'foo'; allowed: ...
        ctx = err.get("ctx", {})
        key = str(ctx.get("discriminator", "")).strip("'")
        return f"{path}.{key}: unknown {key} {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
    if kind == "value_error":  # our own cross-field checks name their key: "key: message"
        msg = err["msg"].removeprefix("Value error, ")
        key = re.match(r"(\w+): ", msg)
        if path and key:
            return f"{path}.{key[1]}: {msg[key.end():]}"
        return f"{path}: {msg}" if path else msg
    return f"{path}: {err['msg']} (got {err.get('input')!r})"




_SCALAR_MEMBERS = ("int", "float", "str", "bool")


def _merge_scalar_unions(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A value that fits none of int | float | str | bool gives one error per member: say it once."""
    out = []
    for err in errors:
        loc = err["loc"]
        if len(loc) > 1 and loc[-1] in _SCALAR_MEMBERS and isinstance(loc[-2], int):  # a list item
            err = {**err, "loc": loc[:-1], "msg": "must be a number, a string or a boolean"}
        out.append(err)
    return out


def _entries(params: dict[str, Any], section: str) -> list[tuple[str, Any]]:
    value = params.get(section)
    return list(value.items()) if isinstance(value, dict) else []


def _tag(entry: Any, key: str) -> str | None:
    tag = entry.get(key) if isinstance(entry, dict) else None
    return tag if isinstance(tag, str) else None


def _allowed_keys(params: dict[str, Any]) -> dict[str, list[str]]:
    """Map each section's dotted path to the keys its schema accepts."""
    allowed = {"": list(Params.model_fields)}
    for section in ("featurenet", "ray", "evaluate", "report"):
        allowed[section] = list(Params.model_fields[section].annotation.model_fields)
    for name, entry in _entries(params, "data"):
        cls = SPEC_BY_SOURCE.get(_tag(entry, "source"))
        if cls:
            allowed[f"data.{name}"] = list(cls.model_fields)
    allowed.update({f"sweeps.{name}": list(SweepSpec.model_fields) for name, _ in _entries(params, "sweeps")})
    for name, entry in _entries(params, "models"):
        cls = SPEC_BY_MODEL.get(_tag(entry, "model"))
        if cls:
            allowed[f"models.{name}"] = list(cls.model_fields)
            allowed[f"models.{name}.train"] = list(cls.model_fields["train"].annotation.model_fields)
    return allowed


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        allowed = _allowed_keys(raw)
        lines = list(dict.fromkeys(_format_error(e, allowed) for e in _merge_scalar_unions(exc.errors())))
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(lines)) from None


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: PyYAML reads '1e-4' as a string, DVC (ruamel) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+[eE][-+]?\d+$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _int_or_float(loader: yaml.SafeLoader, node: yaml.Node) -> int | float:
    text = loader.construct_scalar(node)
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
    return float(special.get(text.lower(), text))


_Loader.add_constructor("tag:yaml.org,2002:float", _int_or_float)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


MAX_VALUES = 1_000_000  # a params file is a few hundred values; more is a YAML alias bomb


def unshared(node: Any, budget: list[int] | None = None) -> Any:
    """A copy in which no two places share a mapping or list. YAML aliases (``*anchor``, ``<<:
    *anchor``) load as one shared object, so an override of one model's key would also change
    every model that aliases it. Refuses what expands past MAX_VALUES (an alias bomb)."""
    budget = [MAX_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"params: more than {MAX_VALUES:,} values once YAML aliases are expanded "
                          "(an alias bomb?); write the values out")
    if isinstance(node, dict):
        return {key: unshared(value, budget) for key, value in node.items()}
    if isinstance(node, list):
        return [unshared(value, budget) for value in node]
    return node


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a copy of a nested mapping; each
    changes exactly the key it names, even where the file shares a block through a YAML alias."""
    raw = unshared(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.load(value, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return raw


def load(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    raw = read_yaml(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate(raw, source=str(path))


def fingerprint(obj: Any) -> str:
    """Stable short hash of a config section (used to name resumable Ray runs)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
