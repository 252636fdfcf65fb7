"""Schemas of every ``data.<name>`` entry in params.yaml (torch-free).

One class per ``source``. File paths are relative to the repository root (where
``dvc repro`` runs); put raw files under ``data/raw/`` and ``dvc add`` them so
DVC versions them (see data/raw/README.md). Paths are checked by the prepare
step, which names the file at fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIXTURES = ("ring8", "grid25")
RING8_RADIUS = 2.0  # genflow's default ring (torch-free here; genflow.data.embedded builds it)

# Every seed of params (data splits, model runs, the feature network, the evaluation draw, a
# sweep): numpy's legacy np.random.seed takes < 2**32 and negative seeds nowhere, and torch
# generator keys are built as seed * 1_000_003 + step; one bound keeps each within every RNG it feeds.
SEED_MAX = 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
# What a generated source may hold in memory as uint8 pixels: prepare keeps the images, the
# Parquet table and a shard in memory at once, so a few times this is the real cost.
MAX_GENERATED_BYTES = 4 * 2**30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Split(_Strict):
    seed: Seed = 0
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)


class DigitsData(_Split):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes)."""

    source: Literal["digits"]


class MixtureData(_Split):
    """PacGAN's 2-D Gaussian mixtures: ring of 8 (radius 2) or 5x5 grid at {-4..4}^2. The paper's
    own (Lin et al. 2018, after VEEGAN): ring radius 1, std 0.01; grid std 0.05."""

    source: Literal["ring8", "grid25"]
    n_samples: int = Field(25_000, ge=100, le=10_000_000)
    std: float = Field(0.05, gt=0.0, le=1.0)
    radius: float = Field(RING8_RADIUS, gt=0.0, le=100.0, description="ring8 only: the circle's radius "
                          "(PacGAN's ring: 1)")
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)

    @model_validator(mode="after")
    def _radius_is_the_rings(self) -> "MixtureData":
        if self.source != "ring8" and self.radius != RING8_RADIUS:
            raise ValueError(f"radius: applies to ring8 only; {self.source}'s means are fixed at "
                             "{-4,-2,0,2,4}^2 (remove it)")
        return self


class StackedDigitsData(_Split):
    """Three digits stacked as R, G, B: 1000 modes (the Stacked-MNIST protocol on bundled digits)."""

    source: Literal["stacked_digits"]
    n_samples: int = Field(25_000, ge=100, le=10_000_000)
    resolution: Literal[8, 16, 32] = 16

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "StackedDigitsData":
        _check_generated_bytes(self.n_samples, self.resolution, 3)
        return self


class SpritesData(_Split):
    """dSprites-like shapes (shape, scale, orientation, x, y, optional colour as columns)."""

    source: Literal["sprites"]
    n_samples: int = Field(20_000, ge=100, le=10_000_000)
    resolution: Literal[32, 64] = 32
    color: bool = False

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "SpritesData":
        _check_generated_bytes(self.n_samples, self.resolution, 3 if self.color else 1)
        return self


def _check_generated_bytes(n_samples: int, resolution: int, channels: int) -> None:
    size = n_samples * resolution * resolution * channels
    if size > MAX_GENERATED_BYTES:
        most = MAX_GENERATED_BYTES // (resolution * resolution * channels)
        raise ValueError(f"n_samples: {n_samples:,} images of {resolution}x{resolution}x{channels} are "
                         f"{size / 2**30:.0f} GiB, more than prepare can hold ({MAX_GENERATED_BYTES // 2**30} GiB); "
                         f"at most {most:,} at this resolution")


class IdxData(_Split):
    """MNIST / Fashion-MNIST / EMNIST IDX files, raw or .gz. With test_images, the official
    test set is the test split and val_fraction of the training images is held out."""

    source: Literal["idx"]
    images: str
    labels: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    test_fraction: float | None = Field(None, gt=0.0, lt=0.5, description="default 0.2; not with test_images")
    transpose: bool = Field(False, description="true for EMNIST, whose images are stored transposed")
    # the conv models and the FID feature network need power-of-two sides; MNIST's digits sit in
    # the middle of a black 28x28 field, so a black border to 32x32 adds no content (LeNet-5 read
    # MNIST padded to 32x32 the same way) where a resize would blur every stroke
    pad_to: int | None = Field(None, ge=8, le=1024, description="pad every image with black (0) borders to "
                               "pad_to x pad_to, centred: 32 turns 28x28 MNIST into conv-sized images")

    @model_validator(mode="after")
    def _test_pair(self) -> "IdxData":
        if self.test_images is not None and self.test_fraction is not None:
            raise ValueError("test_fraction: the official test_images are the test split; drop test_fraction")
        if (self.test_labels is not None) and self.test_images is None:
            raise ValueError("test_labels: given without test_images")
        if self.test_images is not None and (self.labels is None) != (self.test_labels is None):
            raise ValueError("test_labels: give labels for both the training and the test images, or for neither")
        return self


class CifarData(_Split):
    """CIFAR-10 / CIFAR-100 binary version: ``path`` is the extracted cifar-*-batches-bin folder.
    The official test batch is the test split; val_fraction of the training images is held out."""

    source: Literal["cifar10", "cifar100"]
    path: str
    label: Literal["fine", "coarse"] = Field("fine", description="CIFAR-100 only: 100 fine or 20 coarse classes")
    test_fraction: None = Field(None, description="none: the official test batch is the test split")

    @model_validator(mode="after")
    def _label_kind(self) -> "CifarData":
        if self.source == "cifar10" and self.label != "fine":
            raise ValueError("label: CIFAR-10 has a single label kind; 'coarse' is for cifar100")
        return self


class ImageFolderData(_Split):
    """PNG / JPEG files; class sub-folders as labels (labels: folders) or unlabeled (labels: none)."""

    source: Literal["imagefolder"]
    path: str
    labels: Literal["folders", "none"] = "folders"
    size: int | None = Field(None, ge=4, le=1024, description="resize to size x size (required if sizes differ)")
    crop: Literal["center", "none"] = Field("center", description="center: keep aspect and crop; none: stretch")
    grayscale: bool = False
    num_workers: int = Field(0, ge=0, le=4096, description="0: decode in the stage's process; N: in N Ray tasks "
                                                           "(the same shards, byte for byte)")


_Extent = Annotated[int, Field(ge=1, le=65_536)]  # an image's height, width or channels


class ParquetData(_Split):
    """An existing Parquet dataset in genflow's schema (file or folder of *.parquet)."""

    source: Literal["parquet"]
    path: str
    shape: Annotated[list[_Extent], Field(min_length=3, max_length=3)] | None = Field(
        None, description="[H, W, C] if the files lack genflow.shape")
    num_classes: int | None = Field(None, ge=1, le=100_000, description="default: largest label + 1")


DATA_SPECS = (DigitsData, MixtureData, StackedDigitsData, SpritesData, IdxData, CifarData, ImageFolderData,
              ParquetData)
SPEC_BY_SOURCE = {tag: cls for cls in DATA_SPECS for tag in cls.model_fields["source"].annotation.__args__}
DataSpec = Annotated[Union[DATA_SPECS], Field(discriminator="source")]

# classes known from params alone (file sources are checked against the prepared manifest)
NUM_CLASSES = {"digits": 10, "ring8": 0, "grid25": 0, "stacked_digits": 1000, "sprites": 3, "cifar10": 10}
DIGITS_ROWS = 1797  # scikit-learn's bundled digits


@dataclass(frozen=True)
class DataFacts:
    """What a model must fit in its dataset. Params tell some of it for the embedded sources
    (checked by ``genflow validate``); the prepared manifest tells all of it (checked again
    before training). None: not known yet."""

    name: str
    kind: str | None = None               # "image" | "points"
    size: tuple[int, int] | None = None   # image height, width
    num_classes: int | None = None
    split_rows: Mapping[str, int] | None = None  # rows of train / val / test

    def rows(self, split: str) -> int | None:
        """Rows of ``split``; None when not known yet."""
        return None if self.split_rows is None else self.split_rows.get(split, 0)

    @classmethod
    def from_params(cls, name: str, spec: BaseModel) -> "DataFacts":
        # a Parquet file may hold either; every other source holds images or (mixtures) points
        kind = "points" if spec.source in MIXTURES else None if spec.source == "parquet" else "image"
        return cls(name, kind, None, num_classes(spec), split_rows(spec))

    @classmethod
    def from_manifest(cls, name: str, manifest: dict[str, Any]) -> "DataFacts":
        image = manifest["kind"] == "image"
        size = (manifest["shape"][0], manifest["shape"][1]) if image else None
        rows = {split: entry["rows"] for split, entry in manifest.get("splits", {}).items()}
        return cls(name, manifest["kind"], size, manifest["num_classes"], rows)


def num_classes(spec: BaseModel) -> int | None:
    """Classes the prepared data will have, where params alone tell (None: the manifest will)."""
    if spec.source == "cifar100":
        return 100 if spec.label == "fine" else 20
    unlabeled = (spec.source == "imagefolder" and spec.labels == "none") or (spec.source == "idx" and not spec.labels)
    return 0 if unlabeled else NUM_CLASSES.get(spec.source)


def split_rows(spec: BaseModel) -> dict[str, int] | None:
    """Rows per split where params alone tell: the generated sources and digits (file sources:
    the manifest will). The same cut as genflow.data.raw.split_indices, without numpy."""
    n = DIGITS_ROWS if spec.source == "digits" else getattr(spec, "n_samples", None)
    if n is None or spec.source not in (*NUM_CLASSES, "stacked_digits", "sprites"):
        return None
    test, val = int(round(n * spec.test_fraction)), int(round(n * spec.val_fraction))
    return {"train": n - test - val, "val": val, "test": test}
