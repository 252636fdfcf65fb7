"""The typed config of the ``tinygan`` family: what params.yaml may say about it.

genflow validates params.yaml against this class before it imports torch, so this module
imports pydantic and genflow's spec bases only. ``network`` names the class genflow builds."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from genflow.models.specs import GanTrain, NetworkSpec


class TinyGanSpec(NetworkSpec):
    """A tiny MLP GAN (the example plugin): G and D are plain MLPs of ``depth`` hidden layers of
    ``width`` units; least-squares or hinge loss; any data shape (images are flattened)."""

    network: ClassVar[str] = "genflow_plugin_example.model:TinyGan"
    # the loss columns of its training log: dvc.yaml's training-curve plot
    log_losses: ClassVar[tuple[str, ...]] = ("D_loss", "G_loss")

    model: Literal["tinygan"]
    arch: Literal["mlp"] = "mlp"
    loss: Literal["lsgan", "hinge"] = Field("lsgan", description="the GAN loss")
    z_dim: int = Field(8, ge=1, le=1024)
    train: GanTrain = GanTrain()

    @model_validator(mode="after")
    def _unconditional(self):
        if self.c_dim:
            raise ValueError(f"c_dim: tinygan is unconditional; set c_dim 0 (got {self.c_dim})")
        return self
