"""A folder of PNG / JPEG files; class sub-folders become labels (or no labels).

Every file is decoded and checked: an unreadable or non-image file stops the
prepare step with its path, as do an empty folder and images of different
sizes when no ``size`` is set. Hidden files (``.DS_Store``...) are skipped.

Symbolic links are followed, files and folders alike (symlink farms and class
folders linked from elsewhere are common), but never silently: a dangling link,
a folder link that loops back to a folder it sits in, and a file reached twice
(two links to one image, or a class folder linked twice) are refused by name.
A loop would otherwise read as one more class of duplicated images, and a
duplicate puts the same image in train and test. FIFOs, sockets and devices
are refused too (reading a FIFO would wait forever).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genflow.data.images import check_dimensions, fit_square, to_array
from genflow.data.raw import RawData, split_indices
from genflow.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _checked_entry(path: Path) -> str:
    """'dir' or 'file' for what ``path`` leads to, after following links; refused otherwise."""
    if path.is_symlink() and not path.exists():  # exists() is False for a link loop too
        raise DataError(f"{path}: broken symbolic link (to {os.readlink(path)}: missing, or a loop of links)")
    if path.is_dir():
        return "dir"
    if path.is_file():
        return "file"
    raise DataError(f"{path}: not a regular file or folder (a FIFO, socket or device); move it out of the dataset")


def _walk(folder: Path, inside: frozenset[Path], found: list[Path]) -> None:
    """Every visible file under ``folder`` into ``found``. ``inside``: the real folders that hold
    ``folder`` (up to /), so a link to any of them is a loop."""
    real = folder.resolve()
    if real in inside:
        raise DataError(f"{folder}: symbolic link loop (leads back to {real}, which holds it)")
    inside = inside | {real}
    for path in sorted(folder.iterdir()):
        if _is_hidden(path):
            continue
        if _checked_entry(path) == "file":
            found.append(path)
        else:
            _walk(path, inside, found)


def _no_file_twice(files: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for path in files:
        real = path.resolve()
        if real in seen:
            raise DataError(f"{path}: the same file as {seen[real]} (through a symbolic link); "
                            "each image may appear once, or it lands in more than one split")
        seen[real] = path


def _holders(folder: Path, root: Path) -> frozenset[Path]:
    """The real folders that hold ``folder``: root's ancestors, and root itself for a class folder."""
    real_root = root.resolve()
    return frozenset(real_root.parents if folder == root else (real_root, *real_root.parents))


def _visible_files(folder: Path, root: Path) -> list[Path]:
    """The files under ``folder`` (``root`` itself or one of its class folders)."""
    files: list[Path] = []
    _walk(folder, _holders(folder, root), files)
    for path in files:
        if path.suffix.lower() not in EXTENSIONS:
            raise DataError(f"{path}: not an image file (allowed extensions: {', '.join(EXTENSIONS)}); "
                            "move it out of the dataset folder")
    return sorted(files)


def list_images(root: Path, labels: str) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Image paths in a stable order, with class indices when sub-folders are classes."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    if labels == "none":
        files = _visible_files(root, root)
        if not files:
            raise DataError(f"{root}: no images found (extensions: {', '.join(EXTENSIONS)})")
        _no_file_twice(files)
        return files, None, None
    entries = {p: _checked_entry(p) for p in sorted(root.iterdir()) if not _is_hidden(p)}
    classes = [p.name for p, kind in entries.items() if kind == "dir"]
    loose = [p for p, kind in entries.items() if kind == "file"]
    if loose or not classes:
        what = f"{loose[0]} lies outside any class sub-folder" if loose else f"{root} has no class sub-folders"
        raise DataError(f"{what}; with labels: folders every image sits in <root>/<class>/ "
                        "(set labels: none for an unlabeled folder)")
    files, targets = [], []
    for index, name in enumerate(classes):
        members = _visible_files(root / name, root)
        if not members:
            raise DataError(f"{root / name}: class folder holds no images")
        files += members
        targets += [index] * len(members)
    _no_file_twice(files)
    return files, np.asarray(targets, dtype=np.int64), classes


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale (PNG mode I;16 / I) keeps its top 8 bits; Pillow's own convert would clip."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image).astype(np.uint32) >> 8
        return Image.fromarray(wide.clip(0, 255).astype(np.uint8))
    return image


def decode(path: Path, grayscale: bool, size: int | None, crop: str) -> np.ndarray:
    """One file -> uint8 (H, W, C), converted to L or RGB and resized when ``size`` is set."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_dimensions(str(path), image.height, image.width)
                image = _to_8bit(ImageOps.exif_transpose(image)).convert("L" if grayscale else "RGB")
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    if size is not None:
        image = fit_square(image, size, crop)
    return to_array(image)


def decode_all(files: list[Path], spec, decode_many=None) -> list[np.ndarray]:
    if decode_many is not None:
        return decode_many(files, spec)
    return [decode(path, spec.grayscale, spec.size, spec.crop) for path in files]


def imagefolder_source(spec, log=print, decode_many=None) -> RawData:
    root = Path(spec.path)
    files, labels, classes = list_images(root, spec.labels)
    where = f" with {spec.num_workers} Ray tasks" if spec.num_workers else ""
    log(f"[prepare] {root}: decoding {len(files)} images" + (f" in {len(classes)} classes" if classes else "") + where)
    arrays, first = decode_all(files, spec, decode_many), None
    for path, array in zip(files, arrays):
        if first is None:
            first = (path, array.shape)
        elif array.shape != first[1]:
            raise DataError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, but {first[0]} is "
                            f"{first[1][1]}x{first[1][0]}; set size: <pixels> to resize every image")
    x = np.stack(arrays)
    return RawData(kind="image", x=x, labels=labels, num_classes=len(classes) if classes else 0,
                   class_names=classes, splits=split_indices(len(x), spec.val_fraction, spec.test_fraction, spec.seed))
