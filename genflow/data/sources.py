"""Every data source, by its ``source`` name: :func:`load_source` turns a ``data.<name>`` params
entry into :class:`~genflow.data.raw.RawData`. Each source has its own module (the digits and
the mixtures share genflow.data.embedded), imported only when used.
"""
from __future__ import annotations

from genflow.data.embedded import digits, mixture
from genflow.data.raw import RawData
from genflow.errors import ConfigError

def load_source(spec, log=print, decode_many=None) -> RawData:
    """Build the raw data a ``data.<name>`` params entry describes. ``decode_many(files, spec)``
    decodes an image folder's files elsewhere (Ray tasks, chosen by genflow.launch)."""
    source = spec.source
    if source == "digits":
        return digits()
    if source in ("ring8", "grid25"):
        return mixture(source, spec.n_samples, spec.std, spec.seed, spec.radius)
    if source == "stacked_digits":
        from genflow.data.stacked_digits import stacked_digits

        return stacked_digits(spec.n_samples, spec.resolution, spec.val_fraction, spec.test_fraction, spec.seed)
    if source == "sprites":
        from genflow.data.sprites import sprites

        return sprites(spec.n_samples, spec.resolution, spec.color, spec.val_fraction, spec.test_fraction, spec.seed)
    if source == "idx":
        from genflow.data.idx import idx_source

        return idx_source(spec)
    if source in ("cifar10", "cifar100"):
        from genflow.data.cifar import cifar_source

        return cifar_source(spec)
    if source == "imagefolder":
        from genflow.data.imagefolder import imagefolder_source

        return imagefolder_source(spec, log=log, decode_many=decode_many)
    if source == "parquet":
        from genflow.data.parquet_source import parquet_source

        return parquet_source(spec)
    raise ConfigError(f"unknown data source {source!r}")
