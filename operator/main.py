"""`argomlops operator`: run the kopf operator with settings from flags and the environment."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from argomlops.errors import EXIT_INVALID, InputError
from argomlops.operator import settings as settings_module


def build_parser() -> argparse.ArgumentParser:
    """The options of `argomlops operator` (each also settable by env; see argomlops.operator.settings)."""
    parser = argparse.ArgumentParser(prog="argomlops operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        help=f"serve this namespace (repeatable; default: ${settings_module.ENV_NAMESPACES}, else all)",
    )
    parser.add_argument("--price-per-gpu-hour", type=float, help=f"USD (default ${settings_module.ENV_PRICE})")
    parser.add_argument("--history-limit", type=int, help=f"past runs kept (default ${settings_module.ENV_HISTORY})")
    parser.add_argument(
        "--watch-timeout", type=int, help=f"watch timeout in s (default ${settings_module.ENV_WATCH_TIMEOUT})"
    )
    parser.add_argument("--liveness", metavar="URL", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--standalone", action="store_true", help="run without kopf peering (one replica)")
    parser.add_argument("--verbose", action="store_true", help="debug logs")
    return parser


def operator_command(argv: list[str]) -> int:
    """Run the operator until SIGTERM/SIGINT; returns the exit code (2 for a bad setting)."""
    args = build_parser().parse_args(argv)
    # Flags win over the environment; the startup handler reads the environment.
    overrides = {
        settings_module.ENV_NAMESPACES: ",".join(args.namespaces) if args.namespaces else None,
        settings_module.ENV_PRICE: args.price_per_gpu_hour,
        settings_module.ENV_HISTORY: args.history_limit,
        settings_module.ENV_WATCH_TIMEOUT: args.watch_timeout,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    try:
        ours = settings_module.load_settings()
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
        clusterwide=ours.clusterwide,
        namespaces=ours.namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0
