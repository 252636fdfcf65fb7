"""Evaluation sharded over real Ray tasks: 1 and 2 workers score the same sample draw as the
in-process evaluation, so every metric agrees within 1e-6 (relative)."""
from __future__ import annotations

import math

import pytest
import torch

from genflow import config, launch

from genflow.evaluate import protocol as evaluate
from genflow.evaluate.model_metrics import SAMPLE_CHUNK, generate, generate_chunks
from genflow.integrations.ray_eval import blocks
from genflow.train.worker import load_trained, trained_seeds

from conftest import tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

N_SAMPLES = 2 * SAMPLE_CHUNK + 452  # three chunks, the last one short: blocks of 2 + 1 chunks


def test_blocks_cover_every_chunk_once_in_order():
    for n_chunks in (1, 2, 3, 7, 10):
        for workers in (1, 2, 3, 16):
            parts = blocks(n_chunks, workers)
            assert [i for block in parts for i in block] == list(range(n_chunks))
            assert len(parts) == min(workers, n_chunks) and max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_chunk_is_the_same_whoever_draws_it(trained_dir):
    model, _, _ = load_trained(trained_seeds(trained_dir / "gan_digits")[0])
    whole, _ = generate(model, N_SAMPLES, seed=3)
    assert whole.shape[0] == N_SAMPLES
    assert torch.equal(generate_chunks(model, N_SAMPLES, 3, [2]), whole[2 * SAMPLE_CHUNK:])
    assert torch.equal(generate_chunks(model, N_SAMPLES, 3, [1, 2]), whole[SAMPLE_CHUNK:])
    assert not torch.equal(generate(model, N_SAMPLES, seed=4)[0], whole)


def _spec(workers: int):
    raw = tiny_params_dict()
    raw["evaluate"].update(n_samples=N_SAMPLES, n_real=300, num_workers=workers, cpus_per_worker=1.0,
                           kid_subsets=10, path_samples=50)
    return config.validate(raw)


@pytest.mark.parametrize("name", ["gan_digits", "gan_ring8", "vae_digits"])
def test_two_workers_score_like_one_and_like_in_process(name, ray_session, trained_dir, prepared_dir,
                                                        features_dir):
    params = _spec(0)
    dataset = params.models[name].dataset
    model, _, _ = load_trained(trained_seeds(trained_dir / name)[0])
    scores = {}
    for workers in (0, 1, 2):
        p = _spec(workers)
        ref = evaluate.Reference.load(prepared_dir / dataset, features_dir / dataset, p.evaluate)
        scores[workers], _ = evaluate.seed_metrics(model, ref, launch.sample_draw(p))
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(scores[0])
    for workers in (1, 2):
        assert scores[workers].keys() == scores[0].keys()
        for key, value in scores[0].items():
            assert math.isclose(scores[workers][key], value, rel_tol=1e-6, abs_tol=1e-12), (workers, key)
