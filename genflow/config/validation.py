"""validate(): a parsed params mapping -> Params, or one ConfigError that lists every problem.

pydantic checks an entry as a whole only once its every key is valid, and Params' checks across
entries only once every entry is: so validate() validates each entry on its own, without the keys
that were refused, and runs the checks across entries on what validated. Each message names its
dotted key and quotes at most a short excerpt of a bad value.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genflow.config.across import Entries, cross_field_problems, kept
from genflow.config.schema import (NAME_PATTERN, RUN_BY_VALIDATE, EvaluateSpec, FeatureNetSpec, Params, RaySpec,
                                   ReportSpec, params_class, union_tags)
from genflow.data.specs import SPEC_BY_SOURCE, DataFacts
from genflow.errors import ConfigError, excerpt
from genflow.models.plugins import installed_note, spec_by_model
from genflow.study.spec import StudySpec
from genflow.sweep.space import SweepSpec, check_sweep


def _clean_loc(loc: tuple) -> str:
    # A discriminated union puts its tag after the entry name
    # (models.<name>.<tag>.lr): drop it so the path matches params.yaml.
    parts = list(loc)
    if len(parts) > 2 and parts[0] in ("data", "models") and parts[2] in union_tags():
        del parts[2]
    return ".".join(str(p) for p in parts)


def _error_key(err: dict[str, Any]) -> str:
    """The dotted key an error is about: its location, plus the key a model validator names
    (our own checks say "key: message"), or the union's tag key."""
    path = _clean_loc(err["loc"])
    if err["type"] == "union_tag_invalid":
        return f"{path}.{str(err.get('ctx', {}).get('discriminator', '')).strip(chr(39))}"
    if err["type"] == "value_error":
        key = re.match(r"(\w+): ", err["msg"].removeprefix("Value error, "))
        if path and key:
            return f"{path}.{key[1]}"
    return path


def _format_error(err: dict[str, Any], model_fields: dict[str, list[str]]) -> str:
    path, key = _clean_loc(err["loc"]), _error_key(err)
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
        plugins = f"; {installed_note()}" if key.startswith("models.") else ""
        return (f"{key}: unknown {key.rsplit('.', 1)[-1]} {excerpt(ctx.get('tag'))}; allowed: "
                f"{ctx.get('expected_tags')}{plugins}")
    if kind == "value_error":  # our own checks name their key: "key: message"
        msg = err["msg"].removeprefix("Value error, ")
        if key != path:
            return f"{key}: {msg.split(': ', 1)[1]}"
        return f"{path}: {msg}" if path else msg
    return f"{path}: {err['msg']} (got {excerpt(err.get('input'))})"


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
    for name, _ in _entries(params, "studies"):
        allowed[f"studies.{name}"] = list(StudySpec.model_fields)
        allowed[f"studies.{name}.budget"] = list(StudySpec.model_fields["budget"].annotation.model_fields)
    for name, entry in _entries(params, "models"):
        cls = spec_by_model().get(_tag(entry, "model"))
        if cls:
            allowed[f"models.{name}"] = list(cls.model_fields)
            allowed[f"models.{name}.train"] = list(cls.model_fields["train"].annotation.model_fields)
    return allowed


MAX_LINE = 1000  # one problem's line: a few keys and their allowed values, never a whole value


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise ConfigError listing every problem: each key that
    its schema refuses, and the checks across entries on every entry that validates."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    # pydantic would check across entries only once every field is valid: run here instead, on
    # what validated, so that those problems are reported together with the fields' problems
    try:
        params = params_class().model_validate(raw, context=RUN_BY_VALIDATE)
        lines, entries, more = [], Entries.of(params), []
    except ValidationError as exc:
        errors = _merge_scalar_unions(exc.errors())
        allowed = _allowed_keys(raw)
        lines = [_format_error(err, allowed) for err in errors]
        entries, more = _validated_entries(raw, errors)
    lines += more + cross_field_problems(entries)
    if not lines:
        return params
    lines = [_bounded(line) for line in dict.fromkeys(lines)]
    raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(lines))


def _bounded(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 1] + "…"


_SECTIONS = {"featurenet": FeatureNetSpec, "ray": RaySpec, "evaluate": EvaluateSpec, "report": ReportSpec}


def _keyed() -> dict[str, tuple]:
    """The sections of named entries: the key that picks each entry's class, and those classes."""
    return {"data": ("source", SPEC_BY_SOURCE), "models": ("model", spec_by_model()), "sweeps": (None, SweepSpec),
            "studies": (None, StudySpec)}


def _validated_entries(raw: dict[str, Any], errors: list[dict[str, Any]]) -> tuple[Entries, list[str]]:
    """Each section and entry of ``raw`` validated on its own, without the keys ``errors`` refuse,
    and the problems of the entries' own checks that pydantic did not reach before (it checks an
    entry as a whole only once its every key is valid)."""
    refused = {_error_key(err): err["type"] != "extra_forbidden" for err in errors}
    entries = Entries(names={section: {name for name, _ in _entries(raw, section)} for section in _keyed()})
    problems = []
    for section, cls in _SECTIONS.items():
        value = raw.get(section, {} if section == "report" else None)  # report has defaults
        spec, found = _validate_alone(cls, value, section, refused, entries)
        setattr(entries, section, spec)
        problems += found
    for section, (tag, classes) in _keyed().items():
        for name, entry in _entries(raw, section):
            cls = classes if tag is None else classes.get(_tag(entry, tag))  # (untagged: one class)
            if cls is None or not re.match(NAME_PATTERN, str(name)):
                continue
            spec, found = _validate_alone(cls, entry, f"{section}.{name}", refused, entries)
            if spec is not None:
                getattr(entries, section)[name] = spec
            problems += found
    return entries, problems


def _validate_alone(cls, entry: Any, where: str, refused: dict[str, bool], entries: Entries):
    """``entry`` validated as ``cls`` without its refused keys (their defaults stand in: recorded
    in ``entries.dropped``): (the spec or None, problems of its own checks not yet reported)."""
    if not isinstance(entry, dict) or where in refused:
        return None, []
    inside = {key[len(where) + 1:]: stands_in for key, stands_in in refused.items() if key.startswith(where + ".")}
    trimmed, dropped = _without(entry, inside)
    try:
        spec = cls.model_validate(trimmed)
    except ValidationError as exc:  # a required key refused, or the entry's own checks
        own = [err for err in exc.errors() if err["type"] == "value_error" and inside]
        prefix = tuple(where.split(".", 1))
        found = [_format_error({**err, "loc": prefix + tuple(err["loc"])}, {}) for err in own]
        return None, kept(found, dropped)
    entries.dropped[where] = dropped
    return spec, []


def _without(entry: dict[str, Any], keys: dict[str, bool]) -> tuple[dict[str, Any], set[str]]:
    """A copy of ``entry`` without the dotted ``keys`` (a key inside a list drops the list), and
    the names of the dropped keys whose default now stands in (not those unknown to the schema)."""
    out, dropped = dict(entry), set()
    for key, stands_in in keys.items():
        node, parts = out, key.split(".")
        while len(parts) > 1 and isinstance(node.get(parts[0]), dict):
            node[parts[0]] = dict(node[parts[0]])
            node, parts = node[parts[0]], parts[1:]
        if node.pop(parts[0], None) is not None and stands_in:
            dropped.add(parts[0])
    return out, dropped


def prepared_facts(dataset: str, data_root: str | Path) -> DataFacts | None:
    """What the manifest of ``data_root/<dataset>`` tells, read as plain JSON (no numpy, torch or
    Ray); None while there is none that reads (the stage then names the file when it opens it)."""
    try:
        return DataFacts.from_manifest(dataset, json.loads((Path(data_root) / dataset / "manifest.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def check_prepared_data(params: Params, data_root: str | Path, *, train: str | None = None,
                        sweep: str | None = None, evaluate: str | None = None) -> None:
    """What only the prepared data tells (rows per split, image size, classes), checked before a
    stage imports torch or starts Ray: model ``train`` of the train stage, sweep ``sweep``'s
    search space, the evaluation protocol on model ``evaluate``'s data. Every problem at once."""
    problems = []
    if train is not None:
        spec = params.models[train]
        facts = prepared_facts(spec.dataset, data_root)
        problems += spec.check_data(train, facts, max(1, params.ray.num_workers)) if facts else []
    if sweep is not None:
        spec = params.sweeps[sweep]
        facts = prepared_facts(params.models[spec.model].dataset, data_root)
        problems += check_sweep(sweep, spec, params.models, spec_by_model(), facts) if facts else []
    if evaluate is not None and params.models[evaluate].task == "generate":
        facts = prepared_facts(params.models[evaluate].dataset, data_root)
        problems += params.evaluate.check_data(facts) if facts else []
    if problems:
        raise ConfigError(f"params do not fit the prepared data in {data_root}:\n  "
                          + "\n  ".join(_bounded(p) for p in dict.fromkeys(problems)))
