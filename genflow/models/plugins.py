"""Model families of other packages, found through the ``genflow.models`` entry point group.

A package adds a family without editing genflow by declaring, in its pyproject.toml::

    [project.entry-points."genflow.models"]
    tinygan = "genflow_plugin_example.spec:TinyGanSpec"

The entry point's name is the family's name (``model: tinygan`` in params.yaml) and its value the
family's typed spec: a torch-free pydantic class extending ``genflow.models.specs.NetworkSpec``
whose ``model`` field is ``Literal["<name>"]`` and whose ``network`` class variable names the
``GenerativeModel`` subclass (``"package.module:Class"``) that the registry builds. The spec is all
that validating params.yaml loads, so a bad config still fails before torch is imported; the
network is imported only when a model is built (genflow.models.registry).

This module is the one place that reads the entry points, once per process and only when first
asked (never at ``import genflow``). A plugin that does not load, or declares itself wrongly,
stops the command with a :class:`PluginError` naming the plugin and its package (exit 2).
"""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from functools import cache
from importlib import import_module, metadata
from typing import Annotated, Union

from pydantic import BaseModel, Field

from genflow.errors import ConfigError
from genflow.models.specs import SPEC_BY_MODEL, NetworkSpec, TrainSpec

GROUP = "genflow.models"
# a family's name is a params.yaml value and part of messages; the built-ins' names look like this too
FAMILY_NAME = r"^[a-z][a-z0-9_]{0,39}$"
NETWORK_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class PluginError(ConfigError):
    """An installed model plugin cannot be used; the message names it and its package."""


@dataclass(frozen=True)
class Plugin:
    name: str            # the family, as params.yaml's ``model:`` names it
    spec: type           # its typed config (a NetworkSpec subclass)
    package: str         # the distribution that declares it, with its version
    target: str          # the entry point's value, "module:Class"

    @property
    def origin(self) -> str:
        return f"plugin {self.name!r} ({self.target}, from {self.package}; entry point group {GROUP})"


def _package(entry: metadata.EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown package"


def _spec_problem(name: str, spec: object) -> str | None:
    """Why ``spec`` cannot be family ``name``'s typed config, or None."""
    if not (isinstance(spec, type) and issubclass(spec, NetworkSpec)):
        return f"it names {spec!r}, not a subclass of genflow.models.specs.NetworkSpec"
    model = spec.model_fields.get("model")
    if model is None or typing.get_args(model.annotation) != (name,):
        return f"its spec {spec.__name__} must declare the field model: Literal[{name!r}] (the entry point's name)"
    train = spec.model_fields["train"].annotation if "train" in spec.model_fields else None
    if not (isinstance(train, type) and issubclass(train, TrainSpec)):
        return f"its spec {spec.__name__} needs a field train whose type extends genflow.models.specs.TrainSpec"
    if not isinstance(getattr(spec, "network", None), str) or not re.match(NETWORK_PATH, spec.network):
        return (f"its spec {spec.__name__} must name its network class as a class variable "
                "network: ClassVar[str] = 'package.module:Class'")
    return None


def _load(entry: metadata.EntryPoint) -> Plugin:
    plugin = Plugin(entry.name, object, _package(entry), entry.value)
    if not re.match(FAMILY_NAME, entry.name):
        raise PluginError(f"{plugin.origin}: a family name is lower-case letters, digits and '_' (at most 40)")
    if entry.name in SPEC_BY_MODEL:
        raise PluginError(f"{plugin.origin}: {entry.name!r} is a built-in family of genflow; rename the entry point")
    try:
        spec = entry.load()
    except Exception as exc:  # noqa: BLE001  (any error of someone else's import: name the plugin instead)
        raise PluginError(f"{plugin.origin} cannot be loaded: {type(exc).__name__}: {exc}; fix or uninstall "
                          f"{plugin.package}") from None
    problem = _spec_problem(entry.name, spec)
    if problem:
        raise PluginError(f"{plugin.origin}: {problem}")
    return Plugin(entry.name, spec, plugin.package, entry.value)


@cache
def installed() -> dict[str, Plugin]:
    """Every installed plugin family by name, loaded on the first call (a PluginError if any is
    broken: a config naming a family of a broken package must not be validated without it)."""
    found: dict[str, Plugin] = {}
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        plugin = _load(entry)
        if plugin.name in found:
            raise PluginError(f"{plugin.origin}: family {plugin.name!r} is also declared by "
                              f"{found[plugin.name].package}; uninstall one of them")
        found[plugin.name] = plugin
    return found


def spec_by_model() -> dict[str, type[BaseModel]]:
    """Every model family's typed spec: the built-in ones and the installed plugins'."""
    return {**SPEC_BY_MODEL, **{name: plugin.spec for name, plugin in installed().items()}}


def installed_note() -> str:
    """What an unknown-family message says about plugins."""
    plugins = installed()
    if not plugins:
        return f"no model plugins installed (a package adds one through the entry point group {GROUP!r})"
    return "installed model plugins: " + ", ".join(f"{name} ({p.package})" for name, p in plugins.items())


def spec_class(name: str) -> type[BaseModel]:
    """Family ``name``'s typed spec; a ConfigError listing every known family if there is none."""
    specs = spec_by_model()
    if name not in specs:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(specs))}; {installed_note()}")
    return specs[name]


def validate_spec(spec: dict) -> BaseModel:
    """A model entry (as JSON, e.g. from a checkpoint or a worker's config) validated as its family's spec."""
    return spec_class(spec["model"]).model_validate(spec)


def provenance(family: str) -> dict[str, str]:
    """What a run of ``family`` records of the plugin that provides it (its package and version,
    its entry point): the plugin's code is not part of genflow's code revision, nor a DVC
    dependency, so its metadata must say which one trained it. {} for a built-in family."""
    if family in SPEC_BY_MODEL or family not in installed():
        return {}
    plugin = installed()[family]
    return {"plugin": {"family": plugin.name, "package": plugin.package, "target": plugin.target}}


def network_class(name: str) -> object:
    """The network class plugin family ``name`` names (imported now, for the registry to check)."""
    plugin = installed()[name]
    module, _, attr = plugin.spec.network.partition(":")
    try:
        return getattr(import_module(module), attr)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"{plugin.origin}: its network {plugin.spec.network} cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from None


def model_spec_union() -> object:
    """The discriminated union params.yaml's ``models`` entries are validated against."""
    return Annotated[Union[tuple(spec_by_model().values())], Field(discriminator="model")]
