"""Hyperparameter schemas of every registered model (torch-free).

They live apart from the networks so that params.yaml is validated before
torch or Ray is imported. A new model adds its spec here (one class and one
entry in ``SPEC_BY_MODEL``) and its networks plus ``@register`` in its own file;
a model family of another package extends :data:`NetworkSpec` and declares itself
through an entry point instead (genflow/models/plugins.py).
"""
from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genflow.data.specs import DataFacts, Seed
from genflow.sweep.dimension import Dimension, dim

# Sweep presets (each family's ``sweep_presets``), adapted from Lucic et al. 2018 ("Are GANs
# Created Equal?"): "wide" is their wide range (learning rate 1e-5..1e-2 on a log scale, Adam's
# betas anywhere in [0, 1), 1-5 discriminator steps, penalty weight 0.1..100 on a log scale),
# "narrow" a range around the values that worked for most losses. Adam's beta must stay below 1
# here (the schema's bound). docs/sweeps.md lists them.
Presets = dict[str, dict[str, Dimension]]

GAN_LOSSES = ("ns", "minimax", "lsgan", "hinge", "wgan-gp")
MAX_STEPS = 100_000_000  # every count of steps: a bound, so that no typo'd exponent runs for ever


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TrainSpec(_Strict):
    """Optimisation settings shared by every model."""

    steps: int = Field(2000, ge=1, le=MAX_STEPS)
    batch_size: int = Field(64, ge=1, le=65_536)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="0 turns the EMA of G off")
    checkpoint_every: int = Field(500, ge=1, le=MAX_STEPS)
    log_every: int = Field(50, ge=1, le=MAX_STEPS)
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast the networks' forward passes "
                                               "(no loss scaler needed); weights, optimizer, losses and metrics "
                                               "stay fp32 (genflow/train/precision.py)")
    compile: bool = Field(False, description="torch.compile each network's training step (slower on this CPU: "
                                             "docs/benchmarks.md)")
    channels_last: bool = Field(False, description="NHWC memory layout for conv models (faster on GPUs)")
    # evaluation during training (#27): the sweeps' probe on the val split, every eval_every steps
    eval_every: int = Field(0, ge=0, le=MAX_STEPS, description="steps between val probes during training "
                            "(0 = off); their values go into the training log")
    eval_samples: int = Field(1000, ge=10, le=100_000, description="samples (and val rows) per probe")
    select: Literal["last", "best"] = Field("last", description="the weights evaluate/export/report use: the "
                                            "last step's, or the best probe's (selected on val, measured on test)")
    patience: int = Field(0, ge=0, le=100_000, description="stop after this many probes without a better one "
                          "(0 = never)")
    init_from: str | None = Field(None, min_length=1, max_length=1000,
                                  description="start from these weights (fine-tuning): an export folder "
                                  "(export/<model>) or a run's checkpoint (models/<model>/seed_<s>); the "
                                  "architecture must match; optimizers start fresh (genflow/train/init_from.py)")

    @field_validator("init_from")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"[\s'\"$`\\]", value):  # dvc.yaml puts it on the stage's command line
            raise ValueError("a path without spaces, quotes, '$', '`' or backslashes")
        return value

    @model_validator(mode="after")
    def _selection_needs_probes(self):
        # a bare ValueError's text is what the config error shows under models.<name>.train
        if self.select == "best" and not self.eval_every:
            raise ValueError("select 'best' needs probes during training: set eval_every > 0")
        if self.patience and not self.eval_every:
            raise ValueError(f"patience {self.patience} counts probes during training: set eval_every > 0")
        return self


class GanTrain(TrainSpec):
    lr_g: float = Field(2e-4, gt=0.0, le=1.0)
    lr_d: float = Field(2e-4, gt=0.0, le=1.0)
    n_critic: int = Field(1, ge=1, le=100, description="D steps per G step")


class VaeTrain(TrainSpec):
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)


class SrGanTrain(GanTrain):
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0, description="0 turns the EMA of G off; shorter than a GAN's: "
                             "SR is scored per pixel, which a lagging average pays for (sprites x4, 1,500 steps: "
                             "EMA 0.999 +1.0 dB over bicubic, 0.99 +4.1 dB, G itself +3.9 dB)")


class _Network(_Strict):
    """Architecture knobs shared by every model."""

    # the loss columns of its training log (train_log.csv): dvc.yaml's training-curve plots
    log_losses: ClassVar[tuple[str, ...]] = ("D_loss", "G_loss")
    sweep_presets: ClassVar[Presets] = {}
    # what the model does (its network class's ``task``): the evaluate protocol picks its metrics by it
    task: ClassVar[str] = "generate"

    dataset: str
    arch: Literal["mlp", "conv"] = "conv"
    z_dim: int = Field(64, ge=1, le=4096)
    c_dim: int = Field(0, ge=0, le=100_000, description="number of classes; 0 = unconditional")
    width: int = Field(64, ge=4, le=4096)
    depth: int = Field(3, ge=1, le=32, description="hidden layers of an MLP")
    resblocks: bool = Field(False, description="conv arch: a residual block at every resolution (32/64 px)")
    seeds: list[Seed] = Field(
        [0], min_length=1, max_length=1000, description="one training run per seed (init, data order, noise)")
    holdout_class: int | None = Field(None, ge=0, le=100_000, description="anomaly detection: train without this "
                                      "class; evaluate scores the test split and reports the AUROC of finding it")

    @model_validator(mode="after")
    def _holdout_is_unconditional(self):
        if self.holdout_class is not None and self.c_dim:
            raise ValueError("holdout_class: anomaly detection needs an unconditional model (c_dim 0): "
                             "a test image's class is what the score must find")
        return self

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:  # name the repeats only: the list may hold a thousand seeds
            raise ValueError(f"seeds must be distinct; repeated: {repeated[:10]}")
        return seeds

    def sweep_preset(self, name: str) -> dict[str, Dimension]:
        """The dimensions of preset ``name`` (wide, narrow; none: {}) that apply to this model."""
        return dict(self.sweep_presets.get(name, {}))

    def check_data(self, name: str, data: DataFacts, world_size: int = 1) -> list[str]:
        """What this model needs of its dataset, one message per problem, each naming its key
        (``models.<name>.<key>: ...``); ``world_size``: the data-parallel workers of a run, each
        taking a batch of its own. Families add their own by extending this method."""
        where, problems = f"models.{name}", []
        train_rows, batch = data.rows("train"), self.train.batch_size
        if train_rows is not None and batch * world_size > train_rows:
            workers = f" x {world_size} workers" if world_size > 1 else ""
            problems.append(f"{where}.train.batch_size: dataset {data.name!r} has {train_rows} training rows, fewer "
                            f"than one batch of {batch}{workers}; at most {train_rows // world_size}")
        if data.kind == "points" and self.arch != "mlp":
            problems.append(f"{where}.arch: dataset {data.name!r} holds 2-D points; only arch 'mlp' fits it "
                            f"(got {self.arch!r})")
        if data.size is not None and self.arch == "conv":
            height, width = data.size
            if height != width or height < 8 or height & (height - 1):
                problems.append(f"{where}.arch: dataset {data.name!r} has {height}x{width} images; 'conv' needs "
                                "square power-of-two images of at least 8x8 (prepare them so: an IDX source "
                                "takes pad_to, e.g. 32 for 28x28 MNIST; an image folder size)")
        n = data.num_classes
        if n is not None and self.holdout_class is not None and not self.holdout_class < n:
            problems.append(f"{where}.holdout_class: dataset {data.name!r} has {n} classes (0..{n - 1}); got "
                            f"{self.holdout_class}" if n else f"{where}.holdout_class: dataset {data.name!r} has "
                            "no classes")
        if n == 0 and self.c_dim:
            problems.append(f"{where}.c_dim: dataset {data.name!r} has no labels, so a conditional model cannot "
                            f"train on it; use c_dim 0 or a labelled dataset (got {self.c_dim})")
        elif n is not None and self.c_dim not in (0, n):
            problems.append(f"{where}.c_dim: a conditional model needs c_dim equal to the {n} classes of dataset "
                            f"{data.name!r} (or 0 = unconditional); got {self.c_dim}")
        return problems


class GanSpec(_Network):
    model: Literal["gan"]
    loss: Literal[GAN_LOSSES] = "ns"
    gp_lambda: float = Field(10.0, ge=0.0, le=1e4, description="WGAN-GP penalty weight")
    r1_gamma: float = Field(0.0, ge=0.0, le=1e4, description="R1 penalty weight (0 = off)")
    spectral_norm: bool = False
    pac: int = Field(1, ge=1, le=16, description="PacGAN packing: D sees pac samples at once")
    mbstd: bool = Field(False, description="minibatch standard deviation feature in D")
    # PacGAN's 2-D setting (Lin et al. 2018, Table 1) has a G of 4 x 400 ReLU + BatchNorm and a D of
    # 3 x 200 maxout units: G and D differ in width, depth and activation (arch mlp only)
    d_act: Literal["leaky_relu", "maxout"] = Field("leaky_relu", description="arch mlp: D's hidden units, "
                                                   "LeakyReLU(0.2) or maxout over maxout_pieces linear pieces")
    maxout_pieces: int = Field(5, ge=2, le=16, description="linear pieces per maxout unit (d_act: maxout)")
    d_width: int | None = Field(None, ge=4, le=4096, description="arch mlp: D's hidden width (null: width)")
    d_depth: int | None = Field(None, ge=1, le=32, description="arch mlp: D's hidden layers (null: depth)")
    g_batchnorm: bool = Field(False, description="arch mlp: BatchNorm in G's hidden layers (a conv G always "
                                                 "has it)")
    pac_embed: bool = Field(False, description="arch mlp, PacGAN: D's first depth - 1 layers read each sample "
                            "of a pack alone (shared weights), its last layer the pack's concatenated features")
    train: GanTrain = GanTrain()
    sweep_presets: ClassVar[Presets] = {
        "wide": {"train.lr_g": dim(loguniform=[1e-5, 1e-2]), "train.lr_d": dim(loguniform=[1e-5, 1e-2]),
                 "train.beta1": dim(uniform=[0.0, 0.99]), "train.beta2": dim(uniform=[0.0, 0.999]),
                 "train.n_critic": dim(int=[1, 5]), "gp_lambda": dim(loguniform=[0.1, 100.0])},
        "narrow": {"train.lr_g": dim(loguniform=[1e-4, 1e-3]), "train.lr_d": dim(loguniform=[1e-4, 1e-3]),
                   "train.beta1": dim(choice=[0.0, 0.5]), "train.beta2": dim(choice=[0.9, 0.999]),
                   "train.n_critic": dim(choice=[1, 5]), "gp_lambda": dim(choice=[1.0, 10.0])},
    }

    def sweep_preset(self, name: str) -> dict[str, Dimension]:
        """Without searching what this GAN does not use: the penalty weight without WGAN-GP, extra
        critic steps without a penalty."""
        uses = {"gp_lambda": self.loss == "wgan-gp", "train.n_critic": self.loss == "wgan-gp" or self.r1_gamma > 0}
        return {key: value for key, value in super().sweep_preset(name).items() if uses.get(key, True)}

    @model_validator(mode="after")
    def _mlp_only_keys(self):
        """The MLP-only keys refuse a conv model, and the maxout key a LeakyReLU D, rather than
        being silently ignored (the default passes: a saved spec is re-validated with every field)."""
        if self.arch != "mlp":
            for key in ("d_width", "d_depth", "g_batchnorm", "pac_embed"):
                if getattr(self, key) not in (None, False):
                    raise ValueError(f"{key}: applies to arch 'mlp' only (a conv G and D take width; a conv G "
                                     f"always has BatchNorm); got arch {self.arch!r}")
            if self.d_act != "leaky_relu":
                raise ValueError(f"d_act: maxout is an MLP discriminator's unit; got arch {self.arch!r} "
                                 "(set arch: mlp or d_act: leaky_relu)")
        if self.pac_embed and (self.d_depth or self.depth) < 2:
            raise ValueError("pac_embed: needs a D of at least 2 hidden layers (d_depth, or depth): one per "
                             "sample, one over the pack")
        if self.d_act != "maxout" and self.maxout_pieces != GanSpec.model_fields["maxout_pieces"].default:
            raise ValueError(f"maxout_pieces: applies to d_act: maxout only (got d_act {self.d_act!r})")
        return self

    @model_validator(mode="after")
    def _holdout_scores_single_images(self):
        if self.holdout_class is not None and self.pac > 1:
            raise ValueError("holdout_class: anomaly scores come from D on single images; PacGAN's D reads packs "
                             f"of {self.pac} (set pac: 1)")
        return self

    def check_data(self, name: str, data: DataFacts, world_size: int = 1) -> list[str]:
        problems = super().check_data(name, data, world_size)
        if self.train.batch_size % self.pac:
            problems.append(f"models.{name}.train.batch_size: must be a multiple of pac ({self.pac}) so that D "
                            f"sees whole packs; got {self.train.batch_size}")
        return problems


class VaeSpec(_Network):
    log_losses: ClassVar[tuple[str, ...]] = ("loss",)
    model: Literal["vae"]
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = Field(1.0, ge=0.0, le=1e3, description="weight of the KL term")
    kl_warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description="KL weight ramps 0 -> beta over these steps")
    z_dim: int = Field(16, ge=1, le=4096)
    train: VaeTrain = VaeTrain()
    sweep_presets: ClassVar[Presets] = {
        "wide": {"train.lr": dim(loguniform=[1e-5, 1e-2]), "beta": dim(loguniform=[0.1, 10.0])},
        "narrow": {"train.lr": dim(loguniform=[3e-4, 3e-3]), "beta": dim(choice=[0.5, 1.0, 2.0])},
    }


class VaeGanSpec(_Network):
    log_losses: ClassVar[tuple[str, ...]] = ("D_loss", "E_loss", "G_loss")
    model: Literal["vaegan"]
    beta: float = Field(1.0, ge=0.0, le=1e3, description="weight of the KL term (encoder loss)")
    gamma: float = Field(1e-2, ge=0.0, le=1e3, description="weight of the feature-space reconstruction "
                                                           "error against the GAN loss in the decoder update")
    spectral_norm: bool = False
    z_dim: int = Field(16, ge=1, le=4096)
    train: GanTrain = GanTrain()
    sweep_presets: ClassVar[Presets] = {
        "wide": {"train.lr_g": dim(loguniform=[1e-5, 1e-2]), "train.lr_d": dim(loguniform=[1e-5, 1e-2]),
                 "train.beta1": dim(uniform=[0.0, 0.99]), "beta": dim(loguniform=[0.1, 10.0]),
                 "gamma": dim(loguniform=[1e-3, 1.0])},
        "narrow": {"train.lr_g": dim(loguniform=[1e-4, 1e-3]), "train.lr_d": dim(loguniform=[1e-4, 1e-3]),
                   "beta": dim(choice=[0.5, 1.0, 2.0]), "gamma": dim(loguniform=[1e-3, 1e-1])},
    }


class StyleGanTrain(GanTrain):
    """StyleGAN2's Adam: no momentum (beta1 0), beta2 0.99; G's weights are stored at unit scale
    (equalized learning rate), so G takes a 10x larger step than the GAN family's D."""

    beta1: float = Field(0.0, ge=0.0, lt=1.0)
    beta2: float = Field(0.99, ge=0.0, lt=1.0)
    lr_g: float = Field(2e-3, gt=0.0, le=1.0)


class StyleGanSpec(_Network):
    """StyleGAN2-style generator (mapping network, modulated convs, noise, skip toRGBs) for
    8-64 px images, against the conv discriminator of the GAN family with lazy R1."""

    model: Literal["stylegan"]
    w_dim: int = Field(64, ge=1, le=4096, description="size of the intermediate latent w (and styles' input)")
    mapping_layers: int = Field(4, ge=1, le=8, description="linear layers of the mapping network z -> w")
    mapping_lr_mul: float = Field(0.01, gt=0.0, le=1.0, description="learning-rate multiplier of the mapping "
                                  "network (StyleGAN: 0.01)")
    mixing_prob: float = Field(0.9, ge=0.0, le=1.0, description="share of fakes drawn with two latents' styles "
                               "(style-mixing regularisation)")
    r1_gamma: float = Field(1.0, ge=0.0, le=1e4, description="R1 penalty weight on D (0 = off)")
    r1_every: int = Field(4, ge=1, le=1000, description="lazy R1: applied every r1_every steps, scaled by it")
    pl_weight: float = Field(0.0, ge=0.0, le=1e4, description="path-length regularisation of G (0 = off; "
                             "roughly doubles G's step cost when applied)")
    pl_every: int = Field(4, ge=1, le=1000, description="lazy path-length regularisation interval")
    mbstd: bool = Field(True, description="minibatch standard deviation feature in D")
    resblocks: bool = Field(False, description="residual blocks in D at every resolution (StyleGAN2's resnet D); "
                            "G is always the skip architecture")
    train: StyleGanTrain = StyleGanTrain()
    sweep_presets: ClassVar[Presets] = {
        "wide": {"train.lr_g": dim(loguniform=[1e-4, 1e-2]), "train.lr_d": dim(loguniform=[1e-5, 1e-2]),
                 "r1_gamma": dim(loguniform=[0.01, 100.0]), "mixing_prob": dim(uniform=[0.0, 1.0])},
        # G has equalized-lr weights (StyleGAN2 trains them at 2.5e-3); D is the GAN family's
        "narrow": {"train.lr_g": dim(loguniform=[5e-4, 5e-3]), "train.lr_d": dim(loguniform=[1e-4, 1e-3]),
                   "r1_gamma": dim(choice=[0.1, 1.0, 10.0])},
    }

    @model_validator(mode="after")
    def _conv_only(self):
        if self.arch != "conv":
            raise ValueError(f"arch: stylegan is a conv model (modulated convolutions), got {self.arch!r}; "
                             "set arch: conv")
        # the default passes: a saved spec is re-validated with every field written out
        if self.depth != _Network.model_fields["depth"].default:
            raise ValueError(f"depth: stylegan has no MLP of that depth (got {self.depth}); its MLP is the "
                             "mapping network (set mapping_layers)")
        return self


class CycleGanSpec(_Network):
    """Unpaired image-to-image translation between two classes of one labelled image dataset
    (Zhu et al. 2017): ResNet generators A->B and B->A, PatchGAN critics, cycle and identity
    losses. E.g. sprites squares (0) <-> ellipses (1): the shape changes, the pose is kept.
    Always conv and unconditional; z_dim, depth, resblocks and holdout_class do not apply
    (a non-default value is rejected)."""

    model: Literal["cyclegan"]
    task: ClassVar[str] = "translate"
    domain_a: int = Field(0, ge=0, le=100_000, description="class label of domain A")
    domain_b: int = Field(1, ge=0, le=100_000, description="class label of domain B (not domain_a)")
    lambda_cycle: float = Field(10.0, ge=0.0, le=1e4, description="weight of the L1 cycle-consistency loss")
    lambda_identity: float = Field(0.5, ge=0.0, le=100.0, description="weight of the L1 identity loss relative "
                                                                      "to lambda_cycle, as in the paper (0 = off)")
    n_res: int = Field(3, ge=0, le=32, description="residual blocks of each generator at its bottleneck")
    loss: Literal["lsgan", "ns", "hinge"] = Field("lsgan", description="GAN loss (the paper: lsgan)")
    train: GanTrain = GanTrain()

    @model_validator(mode="after")
    def _translation_only(self):
        if self.domain_a == self.domain_b:
            raise ValueError(f"domain_b: must differ from domain_a (both {self.domain_a})")
        if self.c_dim:
            raise ValueError("c_dim: a CycleGAN is unconditional (its domains are domain_a / domain_b); set 0")
        if self.arch != "conv":
            raise ValueError("arch: a CycleGAN translates images with conv networks; set 'conv'")
        for key in ("z_dim", "depth", "resblocks", "holdout_class"):
            if getattr(self, key) != _Network.model_fields[key].default:
                raise ValueError(f"{key}: does not apply to a CycleGAN (it has no latent, no MLP, its own residual "
                                 "blocks (n_res) and no anomaly score); remove it")
        return self

    def check_data(self, name: str, data: DataFacts, world_size: int = 1) -> list[str]:
        problems, n = super().check_data(name, data, world_size), data.num_classes
        for key in ("domain_a", "domain_b"):  # the two classes it translates between
            label = getattr(self, key)
            if n is not None and not label < n:
                have = f"{n} classes (0..{n - 1})" if n else "no class labels"
                problems.append(f"models.{name}.{key}: dataset {data.name!r} has {have}; got {label}")
        return problems


class SrGanSpec(_Network):
    """Super-resolution GAN (Ledig et al. 2017), task "upscale": G maps an image average-pooled by
    ``scale`` back to full size, as bicubic upsampling plus a learned residual; trained with a pixel
    loss, a perceptual loss and a GAN loss against D on full-size images. No pretrained VGG exists
    offline, so the perceptual term is feature matching: the mean squared distance between D's trunk
    features of the upscaled and the real image (D's learned similarity, as in VAE-GAN).
    ``width`` is the channel count of G and of D's first layer; ``resblocks`` puts residual blocks in
    D's trunk. z_dim, depth and holdout_class do not apply (G has no latent; conv only; no anomaly score)."""

    model: Literal["srgan"]
    task: ClassVar[str] = "upscale"
    scale: Literal[2, 4] = Field(4, description="upsampling factor; the low-resolution input is the image "
                                                "average-pooled by it")
    n_res: int = Field(4, ge=0, le=64, description="residual blocks of G at the low resolution")
    pixel_loss: Literal["l1", "l2"] = Field("l1", description="per-pixel loss of G against the real image")
    perceptual_weight: float = Field(0.1, ge=0.0, le=1e3, description="weight of the feature-matching "
                                     "distance in D's features (the stand-in for SRGAN's VGG loss)")
    adversarial_weight: float = Field(1e-3, ge=0.0, le=1e3, description="weight of G's non-saturating GAN loss "
                                      "(1e-3 as in SRGAN)")
    train: SrGanTrain = SrGanTrain()

    @model_validator(mode="after")
    def _only_what_applies(self):
        if self.arch != "conv":
            raise ValueError(f"arch: srgan is a conv model (got {self.arch!r})")
        if self.c_dim:
            raise ValueError(f"c_dim: srgan is unconditional; set c_dim 0 (got {self.c_dim})")
        for key in ("z_dim", "depth", "holdout_class"):
            value, default = getattr(self, key), _Network.model_fields[key].default
            if value != default:
                raise ValueError(f"{key}: does not apply to srgan (no latent, conv only, no anomaly score); "
                                 f"leave it unset (got {value!r})")
        return self

    def check_data(self, name: str, data: DataFacts, world_size: int = 1) -> list[str]:
        problems = super().check_data(name, data, world_size)
        if data.size is not None and min(data.size) // self.scale < 2:
            problems.append(f"models.{name}.scale: dataset {data.name!r} has {data.size[0]}x{data.size[1]} images; "
                            f"divided by scale {self.scale} that leaves less than 2x2 pixels to upscale from")
        return problems


# the base class a plugin family's spec extends (genflow/models/plugins.py): the shared keys and checks
NetworkSpec = _Network

# the built-in families; genflow.models.plugins.spec_by_model() adds the installed plugins' ones
SPEC_BY_MODEL: dict[str, type[_Network]] = {"gan": GanSpec, "vae": VaeSpec, "vaegan": VaeGanSpec,
                                             "stylegan": StyleGanSpec, "cyclegan": CycleGanSpec,
                                             "srgan": SrGanSpec}

ModelSpec = Annotated[Union[GanSpec, VaeSpec, VaeGanSpec, StyleGanSpec, CycleGanSpec, SrGanSpec],
                      Field(discriminator="model")]


def _constraints(info) -> str:
    parts = []
    for item in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                parts.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(parts)


def describe(spec_cls: type[BaseModel], prefix: str = "", tag: str = "model") -> str:
    """Human-readable list of a spec's keys: default, allowed values, meaning. ``tag`` is the
    discriminator key (``model`` for model families, ``source`` for data sources)."""
    tags = getattr(spec_cls.model_fields[tag].annotation, "__args__", None) if tag in spec_cls.model_fields else None
    title = "" if prefix else " | ".join(map(str, tags)) if tags else tag
    summary = " ".join((spec_cls.__doc__ or "").split())
    lines = [f"{title}:  {summary}".rstrip()] if title else []
    for name, info in spec_cls.model_fields.items():
        if name == tag:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(describe(annotation, prefix=f"{prefix}{name}.", tag=tag))
            continue
        default = "required" if info.is_required() else repr(info.default)
        allowed = getattr(annotation, "__args__", None) if "Literal" in str(annotation) else None
        rule = f"one of {', '.join(map(str, allowed))}" if allowed else _constraints(info)
        text = f"  {prefix}{name} = {default}"
        text += f"  [{rule}]" if rule else ""
        text += f"  {info.description}" if info.description else ""
        lines.append(text)
    return "\n".join(lines)
