"""``genflow`` command line: every pipeline step, plus introspection.

params.yaml is validated before torch or Ray is imported, so a bad config
fails in well under two seconds with the offending key named. The DVC stage
scripts in stages/ are thin calls into these commands.
"""
from __future__ import annotations

import argparse
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
    from genflow.models.specs import SPEC_BY_MODEL, describe

    if args.name in SPEC_BY_SOURCE:
        print(describe(SPEC_BY_SOURCE[args.name], tag="source"))
        return
    if args.name == "data":
        print("\n\n".join(describe(cls, tag="source") for cls in DATA_SPECS))
        return
    families = [args.name] if args.name else sorted(SPEC_BY_MODEL)
    for family in families:
        _require({**SPEC_BY_MODEL, **SPEC_BY_SOURCE, "data": None}, family, "model family or data source",
                 "known")
        print(describe(SPEC_BY_MODEL[family]))


def cmd_validate(args) -> None:
    params = _params(args)
    print(f"{args.params}: ok ({len(params.data)} datasets, {len(params.models)} models)")


def cmd_prepare(args) -> None:
    spec = _require(_params(args).data, args.dataset, "dataset")
    from genflow.data.prepare import prepare

    prepare(spec, Path(args.out or f"data/prepared/{args.dataset}"))


def cmd_featurenet(args) -> None:
    params = _params(args)
    _require(params.data, args.dataset, "dataset")
    from genflow.featurenet_stage import build_feature_space

    build_feature_space(Path(args.data_root) / args.dataset, params.featurenet,
                        Path(args.out or f"models/featurenet/{args.dataset}"))


def cmd_train(args) -> None:
    params = _params(args)
    _require(params.models, args.model, "model")
    from genflow.training import train_model

    train_model(args.model, params, args.data_root, Path(args.out or f"models/{args.model}"))


def cmd_evaluate(args) -> None:
    params = _params(args)
    spec = _require(params.models, args.model, "model")
    from genflow.evaluate import evaluate_model

    evaluate_model(Path(args.models_root) / args.model, Path(args.data_root) / spec.dataset,
                   Path(args.models_root) / "featurenet" / spec.dataset, params.evaluate,
                   Path(args.metrics_root) / f"{args.model}.json", Path(args.samples_root) / f"{args.model}.png")


def cmd_export(args) -> None:
    _require(_params(args).models, args.model, "model")
    from genflow.export import export_model

    export_model(Path(args.models_root) / args.model, Path(args.out or f"export/{args.model}"))


def cmd_report(args) -> None:
    params = _params(args)
    from genflow.report import build_report

    text = build_report(params.models, args.metrics_root, args.samples_root, args.out,
                        Path(args.models_root) / "featurenet")
    print(f"[report] wrote {Path(args.out) / 'comparison.md'} ({len(params.models)} models)")
    if args.verbose:
        print(text)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    common.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a param, e.g. --set models.gan_digits.train.steps=100 (repeatable)")
    for root, default in (("data", "data/prepared"), ("models", "models"), ("metrics", "metrics"),
                          ("samples", "samples")):
        common.add_argument(f"--{root}-root", default=default, help=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="genflow", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text):
        cmd = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        cmd.set_defaults(func=func)
        return cmd

    add("models", cmd_models, "print the registered model names, one per line")
    c = add("describe", cmd_describe, "list the keys of a model family or data source, with defaults and ranges")
    c.add_argument("name", nargs="?", help="a model family (gan, vae, vaegan...; default: all families), "
                   "a data source (idx, sprites...), or 'data' for every source")
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
    c = add("evaluate", cmd_evaluate, "compute a trained model's metrics and sample picture")
    c.add_argument("--model", required=True)
    c = add("export", cmd_export, "export a trained generator to TorchScript with a parity check")
    c.add_argument("--model", required=True)
    c.add_argument("--out")
    c = add("report", cmd_report, "write reports/comparison.md from every model's metrics")
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
