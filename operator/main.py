"""`argomlops operator`: run the kopf operator with settings from flags and the environment."""

from __future__ import annotations

import argparse
import logging
import sys

from argomlops.errors import EXIT_INVALID, InputError
from argomlops.operator.settings import FLAGS, OperatorSettings, env_name, load_settings


def build_parser() -> argparse.ArgumentParser:
    """The options of `argomlops operator`; each setting's flag wins over its variable (settings.py)."""
    parser = argparse.ArgumentParser(prog="argomlops operator", description=__doc__)
    for field, flag in FLAGS.items():
        info = OperatorSettings.model_fields[field]
        default = "all" if field == "namespaces" else info.default
        help_text = f"{info.description} (default ${env_name(field)}, else {default})"
        if field == "namespaces":
            parser.add_argument(flag, dest=field, action="append", help=help_text + "; repeatable")
        else:
            # Read as text: the settings model parses and checks it, so a flag and a variable fail alike.
            parser.add_argument(flag, dest=field, help=help_text)
    parser.add_argument("--liveness", metavar="URL", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--standalone", action="store_true", help="run without kopf peering (one replica)")
    parser.add_argument("--verbose", action="store_true", help="debug logs")
    return parser


def operator_command(argv: list[str]) -> int:
    """Run the operator until SIGTERM/SIGINT; returns the exit code (2 for a bad setting)."""
    args = build_parser().parse_args(argv)
    flags = {field: getattr(args, field) for field in FLAGS}
    if flags["namespaces"] is not None:
        flags["namespaces"] = ",".join(flags["namespaces"])
    try:
        settings = load_settings(flags)
    except InputError as exc:
        print(f"argomlops operator: {exc}", file=sys.stderr)
        return EXIT_INVALID

    import kopf

    # Importing the module registers the handlers with kopf's default registry.
    from argomlops.operator import handlers  # noqa: F401

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    kopf.run(
        standalone=args.standalone,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(settings=settings),
    )
    return 0
