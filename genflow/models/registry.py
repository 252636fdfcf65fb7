"""Model registry: name -> model class. Adding a model is one file plus ``@register``
(and its hyperparameter schema in specs.py); another package's family is an entry point
(genflow/models/plugins.py), whose network class is imported here when first built."""
from __future__ import annotations

import importlib

from genflow.models import plugins

_REGISTRY: dict[str, type] = {}
_MODULES = ("genflow.models.gan", "genflow.models.vae", "genflow.models.vaegan", "genflow.models.stylegan",
            "genflow.models.cyclegan", "genflow.models.srgan")


def register(name: str):
    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls
    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """Every family: the built-in ones and the installed plugins'."""
    _load_all()
    return sorted({*_REGISTRY, *plugins.installed()})


def _plugin_class(name: str) -> type:
    """The network class of plugin family ``name``, checked to be a GenerativeModel."""
    from genflow.models.base import GenerativeModel  # (torch: only when a plugin's model is built)

    cls = plugins.network_class(name)
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise plugins.PluginError(f"{plugins.installed()[name].origin}: its network {cls!r} is not a subclass "
                                  "of genflow.models.base.GenerativeModel")
    cls.registry_name = name
    return cls


def model_class(name: str) -> type:
    _load_all()
    if name not in _REGISTRY and name in plugins.installed():
        _REGISTRY[name] = _plugin_class(name)
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(names())}; {plugins.installed_note()}")
    return _REGISTRY[name]


def build(spec, data_shape: tuple[int, ...], num_classes: int):
    """Instantiate the model ``spec.model`` for data of ``data_shape``."""
    model = model_class(spec.model)(spec, tuple(data_shape), num_classes)
    model.enable_ema(spec.train.ema_decay)
    return model
