"""Model registry: name -> model class. Adding a model is one file plus ``@register``
(and its hyperparameter schema in specs.py)."""
from __future__ import annotations

import importlib

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
    _load_all()
    return sorted(_REGISTRY)


def model_class(name: str) -> type:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build(spec, data_shape: tuple[int, ...], num_classes: int):
    """Instantiate the model ``spec.model`` for data of ``data_shape``."""
    model = model_class(spec.model)(spec, tuple(data_shape), num_classes)
    model.enable_ema(spec.train.ema_decay)
    return model
