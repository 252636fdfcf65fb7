"""Evaluation during training on Ray (#27): the probe travels to a Ray task and to Ray Train
workers (rank 0 probes, every rank follows its early stop), and a task run probes exactly as an
in-process run does."""
from __future__ import annotations

import pytest

from genflow import config, launch
from genflow.train import checkpoint

from conftest import tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]


def _params(tmp_path, num_workers: int, launcher: str = "auto", **train) -> config.Params:
    raw = tiny_params_dict()
    raw["models"] = {"gan_ring8": raw["models"]["gan_ring8"]}
    raw["models"]["gan_ring8"]["train"].update(steps=12, log_every=2, checkpoint_every=4, eval_every=3, **train)
    raw["ray"].update(num_workers=num_workers, launcher=launcher, storage_path=str(tmp_path / "storage"))
    return config.validate(raw)


def test_a_ray_task_probes_exactly_as_in_process(ray_session, prepared_dir, features_dir, tmp_path):
    outs = {}
    for workers in (0, 1):
        params = _params(tmp_path / str(workers), workers, select="best")
        launch.train("gan_ring8", params, prepared_dir, tmp_path / str(workers) / "m", featurenet_root=features_dir)
        outs[workers] = tmp_path / str(workers) / "m" / "seed_0"
    for item in (checkpoint.STATE_FILE, checkpoint.LOG_FILE):
        assert (outs[1] / item).read_bytes() == (outs[0] / item).read_bytes(), item
    _, log, _ = checkpoint.load(outs[1])
    assert [row["step"] for row in log if "val_modes" in row] == [3, 6, 9, 12]


def test_ray_train_ddp_probes_on_rank_0_and_stops_every_rank_together(ray_session, prepared_dir, features_dir,
                                                                      tmp_path):
    params = _params(tmp_path, 2, "trainer", patience=1, select="best")
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "m", featurenet_root=features_dir)
    state, log, meta = checkpoint.load(tmp_path / "m" / "seed_0")
    assert meta["world_size"] == 2
    probed = [row["step"] for row in log if "val_modes" in row]
    assert probed and probed == list(range(3, state["step"] + 1, 3))
    monitor = state["monitor"]
    # stopped on patience (every rank left the loop at that step: no hang) or trained to the end
    assert state["step"] == (monitor["stopped_at"] if monitor["stopped_at"] >= 0 else 12)
    assert monitor["best_step"] in probed
