"""An exported model, loaded from its folder alone: the model card and ONNX Runtime.

No genflow training code, no torch model classes and no pickle are involved: the
``.onnx`` files are protobuf, the card is JSON. This is what the ``genflow
sample / interpolate / reconstruct / score / inpaint / mix`` commands run on, and what
a user's own service would do.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from genflow.errors import DataError, GenflowError

CARD_FILE = "model_card.json"


class ExportedModel:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        card_path = self.directory / CARD_FILE
        if not card_path.is_file():
            raise DataError(f"{card_path}: no model card; is {self.directory} an `export/<model>` folder "
                            "(dvc repro export@<model>)?")
        try:
            self.card: dict[str, Any] = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{card_path}: not valid JSON ({exc})") from None
        if self.card.get("format") != "genflow-export":
            raise DataError(f"{card_path}: not a genflow model card")
        self.io = self.card["io"]
        self._sessions: dict[str, Any] = {}

    # -- what the model offers -------------------------------------------------
    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def task(self) -> str:
        return self.card.get("task", "generate")  # cards before format 3 were all generators

    @property
    def is_image(self) -> bool:
        return len(self.io["data_shape"]) == 3

    def has(self, network: str) -> bool:
        return network in self.card["networks"]

    def require(self, network: str, command: str) -> None:
        if not self.has(network):
            why = {"generator": f"a {self.card['model']} model {self.task}s images rather than drawing them "
                                f"from a latent; `genflow {self.task}` runs it",
                   "encoder": f"a {self.card['model']} has no encoder; {command} needs a VAE or VAE-GAN",
                   "scorer": "anomaly scores are exported for unconditional models only (and not for PacGAN)",
                   "mapping": f"a {self.card['model']} model has no separate mapping network; {command} needs a "
                              "style-based generator (stylegan)",
                   "synthesis": f"a {self.card['model']} model has no synthesis network taking per-layer styles; "
                                f"{command} needs a style-based generator (stylegan)",
                   "translate_ab": f"it is a {self.task} model; {command} needs a translation model (CycleGAN)",
                   "translate_ba": f"it is a {self.task} model; {command} needs a translation model (CycleGAN)",
                   "upscaler": f"it is a {self.card['model']} model (task {self.task!r}); {command} needs a "
                               "super-resolution export such as srgan's"}
            raise GenflowError(f"{command}: model {self.name!r} has no {network} ({why.get(network, '')})")

    def _session(self, network: str):
        if network not in self._sessions:
            import onnxruntime

            path = self.directory / self.card["networks"][network]["files"]["onnx"]
            if not path.is_file():
                raise DataError(f"{path}: listed in the model card but missing")
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._sessions[network] = onnxruntime.InferenceSession(str(path), options,
                                                                   providers=["CPUExecutionProvider"])
        return self._sessions[network]

    # -- the networks ----------------------------------------------------------
    def labels(self, c: np.ndarray | None, n: int) -> np.ndarray:
        c_dim = self.io["c_dim"]
        if c is None:
            return (np.arange(n) % c_dim if c_dim else np.zeros(n)).astype(np.int64)
        c = np.asarray(c, dtype=np.int64)
        if not c_dim:
            raise GenflowError(f"model {self.name!r} is unconditional: --label does not apply")
        if c.min() < 0 or c.max() >= c_dim:
            raise GenflowError(f"label {int(c.max() if c.max() >= c_dim else c.min())} is outside 0..{c_dim - 1} "
                               f"of model {self.name!r}")
        return c

    def _run(self, network: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run a network, feeding only the inputs its ONNX graph declares (the exporter drops
        inputs a network ignores, such as an unconditional generator's labels)."""
        session = self._session(network)
        return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})

    def generate(self, z: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        self.require("generator", "generate")
        z = np.asarray(z, dtype=np.float32)
        return self._run("generator", {"z": z, "c": self.labels(c, len(z))})[0]

    def map(self, z: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """z (N, z_dim) -> w (N, w_dim): a style-based model's mapping network."""
        z = np.asarray(z, dtype=np.float32)
        return self._run("mapping", {"z": z, "c": self.labels(c, len(z))})[0]

    def synthesize(self, ws: np.ndarray) -> np.ndarray:
        """ws (N, num_ws, w_dim) -> images: a style-based model's synthesis network."""
        return self._run("synthesis", {"ws": np.asarray(ws, dtype=np.float32)})[0]

    def encode(self, x: np.ndarray, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.check_images(x)
        mu, logvar = self._run("encoder", {"x": x.astype(np.float32), "c": self.labels(c, len(x))})
        return mu, logvar

    def score(self, x: np.ndarray, seed: int = 0) -> np.ndarray:
        self.check_images(x)
        noise = np.random.default_rng(seed).standard_normal((len(x), *self.card["anomaly"]["noise_shape"]))
        return self._run("scorer", {"x": x.astype(np.float32), "eps": noise.astype(np.float32)})[0]

    def translate(self, x: np.ndarray, direction: str) -> np.ndarray:
        """Domain A -> B (``"ab"``) or B -> A (``"ba"``) with a translation model's networks."""
        if direction not in ("ab", "ba"):
            raise GenflowError(f"unknown direction {direction!r}; allowed: ab, ba")
        self.require(f"translate_{direction}", "translate")
        self.check_images(x)
        return self._run(f"translate_{direction}", {"x": x.astype(np.float32)})[0]

    def upscale(self, lr: np.ndarray, network: str = "upscaler") -> np.ndarray:
        """Low-resolution images (N, C, h, w) -> (N, C, h * scale, w * scale); ``network="bicubic"``:
        the baseline the export ships beside the model."""
        self.require(network, "upscale")
        self.check_images(lr, expected=self.io["input_shape"])
        return self._run(network, {"lr": lr.astype(np.float32)})[0]

    def check_images(self, x: np.ndarray, where: str = "input", expected=None) -> None:
        expected = tuple(self.io["data_shape"] if expected is None else expected)
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise DataError(f"{where}: inputs of shape {tuple(x.shape[1:])}, but model {self.name!r} takes "
                            f"{expected}")
