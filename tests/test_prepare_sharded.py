"""prepare with Ray tasks: an image folder decoded by 1 and by 2 real Ray workers writes
byte-identical shards and manifest, the same as the one-process prepare."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from genflow import config
from genflow import launch
from genflow.errors import DataError

from conftest import quiet, tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """45 PNG / JPEG files of mixed sizes in 3 class folders (resized to 16x16 by prepare)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(45):
        side = int(rng.integers(12, 40))
        pixels = rng.integers(0, 256, size=(side, side + index % 5, 3), dtype=np.uint8)
        (root / f"class{index % 3}").mkdir(exist_ok=True)
        suffix = ".jpg" if index % 4 == 0 else ".png"
        Image.fromarray(pixels).save(root / f"class{index % 3}" / f"img{index:03d}{suffix}")
    return root


def _spec(path, workers: int):
    raw = tiny_params_dict()
    raw["data"]["folder"] = {"source": "imagefolder", "path": str(path), "size": 16, "seed": 0,
                              "val_fraction": 0.2, "test_fraction": 0.2, "num_workers": workers}
    return config.validate(raw)


def _files(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_one_and_two_workers_write_byte_identical_shards(ray_session, folder, tmp_path):
    outputs = {}
    for workers in (0, 1, 2):
        params = _spec(folder, workers)
        launch.prepare(params.data["folder"], tmp_path / str(workers), params, log=quiet)
        outputs[workers] = _files(tmp_path / str(workers))
    assert {"manifest.json", "train-00000.parquet", "val-00000.parquet", "test-00000.parquet"} <= set(outputs[0])
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


def test_an_unreadable_file_is_named_by_a_worker_too(ray_session, folder, tmp_path):
    broken = tmp_path / "images"
    for path in folder.rglob("*"):
        if path.is_file():
            (broken / path.parent.name).mkdir(parents=True, exist_ok=True)
            (broken / path.parent.name / path.name).write_bytes(path.read_bytes())
    (broken / "class1" / "img010.png").write_bytes(b"not a png")
    params = _spec(broken, 2)
    with pytest.raises(DataError, match=r"class1/img010\.png: unreadable image") as caught:
        launch.prepare(params.data["folder"], tmp_path / "out", params, log=quiet)
    assert "Traceback" not in str(caught.value)
    assert not (tmp_path / "out").exists()
