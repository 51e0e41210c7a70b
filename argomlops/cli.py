"""The `argomlops` command: train, sweep, generate, evaluate, animate, validate, runs, report, operator, spend.

Sub-commands import their part lazily so that `validate`, `runs`, `report` and `operator` never load TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from argomlops.config import ConfigError, load_config, load_raw
from argomlops.errors import EXIT_INVALID, ArgomlopsError


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config_file", nargs="?", metavar="CONFIG", help="run config YAML (or an MLOps manifest)")
    parser.add_argument("--config", dest="config_opt", metavar="CONFIG", help="same as the positional CONFIG")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set training.vqvae.epochs=3 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="argomlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a run (both stages by default) and write its artifacts")
    _add_config_args(train)
    train.add_argument("--run-id", help="run id to write or resume (default: a new one from the UTC time)")
    train.add_argument(
        "--stage",
        dest="stages",
        action="append",
        choices=["vqvae", "pixelcnn", "all"],
        help="run only this stage (repeatable; default: the config's stages)",
    )
    train.add_argument("--artifacts", help="override the config's artifacts location (local path or gs://)")

    sweep = sub.add_parser(
        "sweep", help="run (or continue) an MLOpsSweep here: trials as local train processes, the best within a budget"
    )
    sweep.add_argument("sweep_file", metavar="SWEEP", help="MLOpsSweep manifest or sweep spec YAML")
    sweep.add_argument("--parallel", type=int, metavar="N", help="trials at once (default: the spec's parallelism)")
    sweep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep field (trials=4, budget.maxCost=2) or a template path (artifacts=sweep-runs)",
    )

    generate = sub.add_parser("generate", help="write generated images from a finished run")
    generate.add_argument("--run", required=True, help="run URI: <artifacts>/<run-id> (local or gs://)")
    generate.add_argument("--count", type=int, default=64, help="images to generate")
    generate.add_argument("--out", required=True, help="folder to write PNGs to")
    generate.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    generate.add_argument("--seed", type=int, default=0, help="seed: same seed, same images")
    generate.add_argument("--tags", nargs="*", default=[], help="condition on these tags (conditional priors)")

    animate = sub.add_parser(
        "animate", help="write an animation of a finished run: a latent walk through images, or a pan through its prior"
    )
    animate.add_argument("--run", required=True, help="run URI: <artifacts>/<run-id> (local or gs://)")
    animate.add_argument("--out", required=True, help="file to write: .webp, .gif or .mp4 (local or gs://)")
    animate.add_argument(
        "--through", nargs="+", metavar="IMAGE", help="walk through the encodings of these images (two or more)"
    )
    animate.add_argument("--frames", type=int, default=48, help="frames in the animation (at least 2)")
    animate.add_argument("--fps", type=float, default=12.0, help="frames per second")
    animate.add_argument("--seed", type=int, default=0, help="seed of the prior walk: same seed, same file")
    animate.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of the prior walk")
    animate.add_argument("--tags", nargs="*", default=[], help="condition the prior walk on these tags")
    evaluate = sub.add_parser("evaluate", help="judge a finished run's generated images; writes evaluation.json")
    evaluate.add_argument("--run", required=True, help="run URI: <artifacts>/<run-id> (local or gs://)")
    evaluate.add_argument("--count", type=int, default=64, help="images to generate (per tag for a conditional prior)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed: same seed, same images and figures")
    evaluate.add_argument(
        "--temperature", type=float, default=None, help="softmax temperature (default: the run's sampling temperature)"
    )
    evaluate.add_argument("--tags", nargs="*", default=[], help="judge only these tags (default: all the prior's)")
    runs = sub.add_parser("runs", help="a table of the runs under an artifacts root (local or gs://)")
    runs.add_argument("uri", metavar="URI", help="artifacts root: the folder or gs://bucket/prefix holding run folders")
    runs.add_argument("--json", action="store_true", help="print JSON (one object per run) instead of a table")
    runs.add_argument(
        "--sort",
        default="run",
        metavar="KEY",
        help="run (default), started, state, parent, psnr, perplexity, bits, accuracy or cost; figures best first",
    )
    runs.add_argument(
        "--since", metavar="DATE", help="only runs started at or after DATE (2026-11-27, ISO time, run id)"
    )

    report = sub.add_parser("report", help="write the self-contained HTML page of one run, or compare several")
    report.add_argument("runs", nargs="+", metavar="RUN", help="run URI: <artifacts>/<run-id> (local or gs://)")
    report.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write (local or gs://)")

    validate = sub.add_parser(
        "validate", help="check a run config, MLOps or MLOpsSweep manifest; prints ok or the errors"
    )
    _add_config_args(validate)

    # Listed so `argomlops --help` shows it; main() hands `operator ...` to the operator's own parser first.
    operator = sub.add_parser("operator", help="run the kopf operator")
    operator.add_argument("operator_args", nargs=argparse.REMAINDER, help="options of the operator")
    spend = sub.add_parser("spend", help="a namespace's spend this month, by MLOps object, and its cap")
    spend.add_argument("spend_args", nargs=argparse.REMAINDER, help="--namespace NS, --month YYYY-MM")
    return parser


def _config_path(args: argparse.Namespace) -> str | None:
    if args.config_file and args.config_opt and args.config_file != args.config_opt:
        raise ConfigError([f"two configs given: {args.config_file} and --config {args.config_opt}"])
    path: str | None = args.config_opt or args.config_file
    return path


def _validate(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if path is None:
        raise ConfigError(["validate: give a config file"])
    if load_raw(path).get("kind") == "MLOpsSweep":
        from argomlops.sweeps.local import load_sweep

        name, spec = load_sweep(path, args.overrides)
        print(f"ok: sweep {name}, {spec.total_trials} trials of {len(spec.parameters)} parameters")
        return 0
    load_config(path, args.overrides)
    print("ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `argomlops` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        # The operator parses its own options: argparse.REMAINDER drops leading flags like --standalone.
        from argomlops.operator.main import operator_command

        return operator_command(argv[1:])
    if argv[:1] == ["spend"]:
        try:
            from argomlops.operator.spend import spend_command
        except ImportError as exc:  # the trainer image has no Kubernetes client
            print(
                f"error: argomlops spend needs the operator extra (pip install 'argomlops[operator]'): {exc}",
                file=sys.stderr,
            )
            return EXIT_INVALID
        return spend_command(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "train":
            from argomlops.trainer.commands import train_command

            config = load_config(_config_path(args), args.overrides)
            return train_command(config, args)
        if args.command == "sweep":
            from argomlops.sweeps.local import sweep_command

            return sweep_command(args)
        if args.command == "runs":
            from argomlops.trainer.runs_table import runs_command

            return runs_command(args)
        if args.command == "report":
            from argomlops.trainer.report import report_command

            return report_command(args)
        if args.command == "generate":
            from argomlops.trainer.generate import generate_command

            return generate_command(args)
        if args.command == "animate":
            from argomlops.trainer.animate import animate_command

            return animate_command(args)
        if args.command == "evaluate":
            from argomlops.trainer.evaluate import evaluate_command

            return evaluate_command(args)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_INVALID
    except ArgomlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
