"""``genflow`` command line: every pipeline step, plus introspection.

params.yaml is validated before torch or Ray is imported, so a bad config
fails in well under two seconds with the offending key named. The DVC stage
scripts in stages/ are thin calls into these commands.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from genflow import config
from genflow.errors import GenflowError


def _params(args) -> config.Params:
    return config.load(args.params, args.set)


def _require(mapping: dict, key: str, what: str, where: str = "params.yaml defines"):
    if key not in mapping:
        raise GenflowError(f"unknown {what} {key!r}; {where}: {', '.join(sorted(mapping)) or 'none'}")
    return mapping[key]


def cmd_models(args) -> None:
    from genflow.models import registry

    print("\n".join(registry.names()))


def cmd_describe(args) -> None:
    from genflow.data.specs import DATA_SPECS, SPEC_BY_SOURCE
    from genflow.models.plugins import installed, spec_by_model
    from genflow.models.specs import describe

    if args.name in SPEC_BY_SOURCE:
        print(describe(SPEC_BY_SOURCE[args.name], tag="source"))
        return
    if args.name == "sweep":
        from genflow.sweep.space import SweepSpec

        print(describe(SweepSpec, tag="sweep"))
        return
    if args.name == "study":
        from genflow.study.spec import StudySpec

        print(describe(StudySpec, tag="study"))
        return
    if args.name == "data":
        print("\n\n".join(describe(cls, tag="source") for cls in DATA_SPECS))
        return
    specs = spec_by_model()
    families = [args.name] if args.name else sorted(specs)
    for family in families:
        _require({**specs, **SPEC_BY_SOURCE, "data": None}, family, "model family or data source", "known")
        plugin = installed().get(family)
        print(f"[{plugin.origin}]\n" if plugin else "", describe(specs[family]), sep="")


def cmd_validate(args) -> None:
    params = _params(args)
    print(f"{args.params}: ok ({len(params.data)} datasets, {len(params.models)} models)")


def cmd_prepare(args) -> None:
    params = _params(args)
    spec = _require(params.data, args.dataset, "dataset")
    from genflow import launch

    launch.prepare(spec, Path(args.out or f"data/prepared/{args.dataset}"), params)


def cmd_featurenet(args) -> None:
    params = _params(args)
    _require(params.data, args.dataset, "dataset")
    from genflow.featurenet.stage import build_feature_space

    build_feature_space(Path(args.data_root) / args.dataset, params.featurenet,
                        Path(args.out or f"models/featurenet/{args.dataset}"),
                        metrics_out=Path(args.metrics_root) / "featurenet" / f"{args.dataset}.json")


def cmd_train(args) -> None:
    if args.best_params:  # a sweep's winner: its values as --set overrides of this model's entry
        import json

        from genflow.sweep.results import read_best_overrides

        best = read_best_overrides(args.best_params, args.model)
        args.set = [*(f"models.{args.model}.{k}={json.dumps(v)}" for k, v in best.items()), *args.set]
    params = _params(args)
    spec = _require(params.models, args.model, "model")
    _check_tracked_init(args.model, spec, args.tracked_init_from)
    config.check_prepared_data(params, args.data_root, train=args.model)  # before Ray starts
    from genflow import launch

    launch.train(args.model, params, args.data_root, Path(args.out or f"models/{args.model}"),
                 featurenet_root=Path(args.models_root) / "featurenet")


def _check_tracked_init(name: str, spec, tracked: str | None) -> None:
    """dvc.yaml's train stage passes the init_from source it tracks as a dependency: training from
    another one would leave DVC blind to the source (a `dvc exp run -S` changes params.yaml only)."""
    wanted = spec.train.init_from or "none"
    if tracked is not None and tracked != wanted:
        raise config.ConfigError(f"models.{name}.train.init_from: params.yaml says {wanted}, but dvc.yaml's "
                                 f"train@{name} tracks {tracked} as its source; run python "
                                 "stages/dvc_yaml_blocks.py to update dvc.yaml, then rerun")


def cmd_sweep(args) -> None:
    params = _params(args)
    _require(params.sweeps, args.sweep, "sweep", "params.yaml's sweeps section defines")
    config.check_prepared_data(params, args.data_root, sweep=args.sweep)  # before Ray starts
    from genflow import launch

    launch.sweep(args.sweep, params, args.data_root, Path(args.models_root) / "featurenet",
                Path(args.out or f"sweeps/{args.sweep}"),
                metrics_out=Path(args.metrics_root) / "sweeps" / f"{args.sweep}.json")


def cmd_study(args) -> None:
    """One stage of an equal-budget study (presets/study/dvc.yaml runs them; genflow/study/stage.py)."""
    from genflow.study import stage

    if args.step != "report" and not args.model:
        raise GenflowError(f"genflow study {args.step}: give --model (one of the study's models)")
    if args.step in ("train", "evaluate") and not args.variant:
        raise GenflowError(f"genflow study {args.step}: give --variant (tuned or default)")
    data_root, models_root, root = Path(args.data_root), Path(args.models_root), Path(".")
    if args.step == "train":  # loads params itself: the winner's values become overrides
        stage.train(args.study, args.model, args.variant, args.params, args.set, data_root, models_root, root)
        return
    params = _params(args)
    if args.step == "sweep":
        stage.sweep(args.study, args.model, params, data_root, models_root / "featurenet", root)
    elif args.step == "evaluate":
        stage.evaluate(args.study, args.model, args.variant, params, data_root, models_root, root)
    else:
        stage.report(args.study, params, root)


def cmd_evaluate(args) -> None:
    params = _params(args)
    spec = _require(params.models, args.model, "model")
    config.check_prepared_data(params, args.data_root, evaluate=args.model)  # before torch loads the data
    from genflow import launch

    launch.evaluate(args.model, params, Path(args.models_root) / args.model, Path(args.data_root) / spec.dataset,
                    Path(args.models_root) / "featurenet" / spec.dataset, Path(args.metrics_root) / f"{args.model}.json",
                    Path(args.samples_root) / f"{args.model}.png")


def cmd_fid(args) -> None:
    params = _params(args)
    _require(params.data, args.dataset, "dataset")
    from genflow.evaluate.score_folder import score_images
    from genflow.export.apps import fid_samples

    score_images(args.images, Path(args.data_root) / args.dataset, Path(args.models_root) / "featurenet" / args.dataset,
                 params.evaluate, args.split or params.evaluate.reference_split, args.out, sample_export=fid_samples)


def cmd_export(args) -> None:
    spec = _require(_params(args).models, args.model, "model")
    from genflow.export.write import export_model

    export_model(Path(args.models_root) / args.model, Path(args.out or f"export/{args.model}"),
                 data_dir=Path(args.data_root) / spec.dataset,
                 metrics_path=Path(args.metrics_root) / f"{args.model}.json")


def cmd_report(args) -> None:
    params = _params(args)
    from genflow.report.build import build_report

    build_report(params.models, args.metrics_root, args.samples_root, args.out, Path(args.models_root) / "featurenet",
                 models_dir=args.models_root, sweeps_dir=args.sweeps_root, baselines=params.report.baselines)
    out = Path(args.out)
    print(f"[report] wrote {out / 'comparison.html'} (self-contained), {out / 'comparison.md'} and "
          f"{out / 'plots'}/ for {len(params.models)} models")
    if args.verbose:
        print((out / "comparison.md").read_text())


def _exported(args):
    from genflow.export.exported import ExportedModel

    return ExportedModel(args.model_dir)


def cmd_sample(args) -> None:
    from genflow.export import apps

    apps.sample(_exported(args), args.n, args.seed, args.out, label=args.label)
    print(f"[sample] wrote {args.out}")


def cmd_interpolate(args) -> None:
    from genflow.export import apps

    apps.interpolate(_exported(args), args.pairs, args.steps, args.seed, args.out, label=args.label)
    print(f"[interpolate] wrote {args.out}: {args.pairs} paths of {args.steps} images")


def cmd_reconstruct(args) -> None:
    from genflow.export import apps

    error = apps.reconstruct(_exported(args), args.images, args.out)
    print(f"[reconstruct] wrote {args.out} (originals above reconstructions); mean squared error {error:.4g}")


def cmd_score(args) -> None:
    from genflow.export import apps

    scores = apps.score(_exported(args), args.images, args.out, seed=args.seed)
    median = statistics.median(scores.tolist())
    print(f"[score] wrote {args.out}: {len(scores)} images, anomaly score median {median:.4g}")


def cmd_inpaint(args) -> None:
    from genflow.export import apps

    error = apps.inpaint(_exported(args), args.images, args.mask, args.out, iterations=args.iterations)
    print(f"[inpaint] wrote {args.out} (masked, completed, original); squared error in the region {error:.4g}")


def cmd_mix(args) -> None:
    from genflow.export.style_app import style_mixing

    model = _exported(args)
    style_mixing(model, args.rows, args.cols, args.crossover, args.seed, args.out)
    k = model.io["num_ws"] // 2 if args.crossover is None else args.crossover
    print(f"[mix] wrote {args.out}: {args.rows} x {args.cols} mixes, styles ws[:{k}] from the left column, "
          f"ws[{k}:] from the top row")


def cmd_translate(args) -> None:
    from genflow.export import apps

    error = apps.translate(_exported(args), args.images, args.out, direction=args.direction)
    print(f"[translate] wrote {args.out} (input, translation {args.direction}, translated back); "
          f"cycle mean squared error {error:.4g}")


def cmd_upscale(args) -> None:
    from genflow.export.upscale_app import upscale

    result = upscale(_exported(args), args.images, args.out)
    if result.had_originals:
        print(f"[upscale] wrote {args.out} (input, bicubic, model, original) for {result.n} images, each "
              f"average-pooled first; PSNR model {result.psnr_model:.2f} dB, bicubic {result.psnr_bicubic:.2f} dB")
    else:
        print(f"[upscale] wrote {args.out} (input, bicubic, model) for {result.n} images")


def cmd_compress(args) -> None:
    from genflow.export import codec_app

    result = codec_app.compress(_exported(args), args.images, args.out, step=args.step)
    print(f"[compress] wrote {args.out}: {result.line()}")


def cmd_decompress(args) -> None:
    from genflow.export import codec_app

    result = codec_app.decompress(_exported(args), args.file, args.out, originals=args.originals)
    print(f"[decompress] wrote {args.out}: {result.line()}")


def _add_codec_apps(add_app) -> None:
    c = add_app("compress", cmd_compress, "lossy compression with a VAE: quantized encoder means, zlib/lzma-coded")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, a Parquet file in genflow's schema, or an "
                   ".npz with 'x' (uint8 images) and, for a conditional model, 'c' (labels)")
    # the default lives in genflow.export.codec (numpy): not imported to build the parser
    c.add_argument("--step", type=float, help="quantization step of the latent means, in prior standard "
                   "deviations (default 0.25: genflow.export.codec.DEFAULT_STEP)")
    c = add_app("decompress", cmd_decompress, "decode a `genflow compress` file with the same exported VAE")
    c.add_argument("file", help="the compressed file")
    c.add_argument("--originals", help="the original images, to print the PSNR")


def cmd_augment(args) -> None:  # issue 29: data augmentation
    from genflow.export.augment_app import augment, check_request

    check_request(args.model_dir, args.per_class, args.out)
    model = _exported(args)
    labels = augment(model, args.per_class, args.seed, args.out)
    print(f"[augment] wrote {args.out}: {len(labels)} samples of {model.name}, {args.per_class} per class of "
          f"{model.io['c_dim']}; prepare it with `source: parquet` in params.yaml's data section")


def _add_apps(add_app) -> None:
    c = add_app("sample", cmd_sample, "a grid of samples from an exported model")
    c.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    c.add_argument("--label", type=int, help="class of every sample (conditional models; default: all classes)")
    c = add_app("interpolate", cmd_interpolate, "latent interpolation: one row of images per random pair of latents")
    c.add_argument("--pairs", type=int, default=4)
    c.add_argument("--steps", type=int, default=8)
    c.add_argument("--label", type=int, help="class along every path (conditional models)")
    c = add_app("reconstruct", cmd_reconstruct, "encode and decode images (VAE, VAE-GAN)")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, or a Parquet file in genflow's schema")
    c = add_app("score", cmd_score, "anomaly score per image -> CSV (higher = less like the training data)")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, or a Parquet file in genflow's schema")
    c = add_app("inpaint", cmd_inpaint, "complete a masked region of each image (VAE, VAE-GAN)")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, or a Parquet file in genflow's schema")
    c.add_argument("--mask", default="right", help="region to complete: left, right, top, bottom, center")
    c.add_argument("--iterations", type=int, default=20, help="encode-decode-paste rounds (default 20)")
    c = add_app("mix", cmd_mix, "style mixing (StyleGAN): coarse styles of the left column's latents with the fine "
                "styles of the top row's")
    c.add_argument("--rows", type=int, default=3, help="latents A, the left column (default 3)")
    c.add_argument("--cols", type=int, default=4, help="latents B, the top row (default 4)")
    c.add_argument("--crossover", type=int, help="K: cells take ws[:K] from A and ws[K:] from B "
                   "(0..num_ws; default num_ws // 2)")
    c = add_app("translate", cmd_translate, "translate images between a CycleGAN's two domains")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, or a Parquet file in genflow's schema")
    c.add_argument("--direction", choices=("ab", "ba"), default="ab",
                   help="ab: domain A -> B (default), ba: B -> A (the card's io.domains names the classes)")
    c = add_app("upscale", cmd_upscale, "super-resolution (srgan): full-size images are downsampled first and "
                "compared with the result (PSNR vs bicubic); images of the model's input size are upscaled")
    c.add_argument("images", help="a folder of PNG/JPEG files, one image, or a Parquet file in genflow's schema")
    c = add_app("augment", cmd_augment, "a labelled dataset drawn from a conditional model, as Parquet in genflow's "
                "schema (`source: parquet` prepares it)")
    c.add_argument("--per-class", type=int, required=True, metavar="N", help="samples per class (at least 1)")


class _Version(argparse.Action):
    """``genflow --version``: the package version and the git revision of the code (what every
    artifact records), computed only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        import genflow
        from genflow.io import code_revision

        print(f"genflow {genflow.__version__} (code revision {code_revision()})")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    common.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a param, e.g. --set models.gan_digits.train.steps=100 (repeatable)")
    for root, default in (("data", "data/prepared"), ("models", "models"), ("metrics", "metrics"),
                          ("samples", "samples"), ("sweeps", "sweeps")):
        common.add_argument(f"--{root}-root", default=default, help=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="genflow", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_Version, nargs=0, help="print genflow's version and code revision, then exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        cmd = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        cmd.set_defaults(func=func)
        return cmd

    add("models", cmd_models, "print the registered model names, one per line")
    c = add("describe", cmd_describe, "list the keys of a model family or data source, with defaults and ranges")
    c.add_argument("name", nargs="?", help="a model family (gan, vae, vaegan...; default: all families), "
                   "a data source (idx, sprites...), 'data' for every source, 'sweep' or 'study'")
    add("validate", cmd_validate, "check params.yaml and exit")
    c = add("prepare", cmd_prepare, "build data/prepared/<dataset> (Parquet shards + manifest)")
    c.add_argument("--dataset", required=True)
    c.add_argument("--out")
    c = add("featurenet", cmd_featurenet, "train the feature network of a dataset (the FID feature space)")
    c.add_argument("--dataset", required=True)
    c.add_argument("--out")
    c = add("train", cmd_train, "train one model of params.yaml on Ray Train (or in-process)")
    c.add_argument("--model", required=True)
    c.add_argument("--out")
    c.add_argument("--tracked-init-from", help=argparse.SUPPRESS)  # what dvc.yaml tracks (none: unset)
    c.add_argument("--best-params", metavar="FILE", help="apply a sweep's best_params.yaml to the model's params "
                   "(explicit --set values still win)")
    c = add("sweep", cmd_sweep, "hyperparameter sweep of params.yaml's sweeps.<name> (Ray Tune + Optuna + ASHA) "
            "-> sweeps/<name>/")
    c.add_argument("--sweep", required=True, help="a key of params.yaml's sweeps section")
    c.add_argument("--out")
    c = add("study", cmd_study, "one stage of an equal-budget study of params.yaml's studies section: a model's "
            "sweep, the training or evaluation of its tuned or default config over the study's seeds, the report "
            "-> studies/<study>/")
    c.add_argument("step", choices=("sweep", "train", "evaluate", "report"))
    c.add_argument("--study", required=True, help="a key of params.yaml's studies section")
    c.add_argument("--model", help="one of the study's models (sweep, train, evaluate)")
    c.add_argument("--variant", choices=("tuned", "default"), help="train, evaluate: the sweep's winner or the "
                   "model's hand-set config")
    c = add("evaluate", cmd_evaluate, "compute a trained model's metrics and sample picture")
    c.add_argument("--model", required=True)
    c = add("fid", cmd_fid, "score images against a prepared dataset's split in evaluate's feature space and "
            "protocol: FID, KID, precision, recall, density, coverage, each beside its real-vs-real floor")
    c.add_argument("images", help="a folder of PNG/JPEG files (or one file); an .npz whose array 'images' (or "
                   "'arr_0', or its only array) is uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1]; or an "
                   "export folder (export/<model>), sampled evaluate.n_samples times from evaluate.seed")
    c.add_argument("--dataset", required=True, help="a dataset of params.yaml, prepared, with its featurenet")
    c.add_argument("--split", choices=("train", "val", "test"), help="the rows compared with (default: "
                   "evaluate.reference_split); the floor scores train rows against them, as evaluate does")
    c.add_argument("--out", help="write the scores, floors and protocol as JSON")
    c = add("export", cmd_export,
            "export a trained model (TorchScript, ONNX, safetensors, model card), parity-checked")
    c.add_argument("--model", required=True)
    c.add_argument("--out")
    def add_app(name, func, help_text):
        cmd = sub.add_parser(name, help=help_text, description=help_text + ". Runs on the exported model alone "
                             "(ONNX Runtime + model_card.json).")
        cmd.add_argument("model_dir", help="an exported model folder, e.g. export/gan_digits")
        cmd.add_argument("--out", required=True, help="output file (PNG; CSV for score; Parquet for augment)")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.set_defaults(func=func)
        return cmd

    _add_apps(add_app)
    _add_codec_apps(add_app)
    c = add("report", cmd_report, "write reports/comparison.html (self-contained), comparison.md and plots/ from "
                                  "every model's metrics, training logs, samples and sweeps")
    c.add_argument("--out", default="reports")
    c.add_argument("--verbose", action="store_true", help="also print the report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except GenflowError as exc:
        print(f"genflow: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
