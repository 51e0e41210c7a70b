"""Write (or check) `workflows/argomlops-train.yaml`, the WorkflowTemplate generated from the hera builder.

python -m argomlops.workflows            # rewrite the YAML next to this module
python -m argomlops.workflows --check    # exit 1 when the committed YAML is out of date
python -m argomlops.workflows -o x.yaml  # write elsewhere ("-" for stdout)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from argomlops.workflows.template import build_train_template

TEMPLATE_YAML = Path(__file__).with_name("argomlops-train.yaml")
HEADER = "# Generated from argomlops/workflows/template.py by `python -m argomlops.workflows`; do not edit by hand.\n"


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the podSpecPatch) as `|` blocks so the YAML stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def template_dict() -> dict[str, Any]:
    """The WorkflowTemplate as a plain dict (what `to_dict()` of the hera builder gives)."""
    return build_train_template().to_dict()


def template_yaml() -> str:
    """The WorkflowTemplate YAML exactly as committed."""
    body = yaml.dump(template_dict(), Dumper=_BlockDumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m argomlops.workflows`."""
    parser = argparse.ArgumentParser(prog="python -m argomlops.workflows", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(TEMPLATE_YAML), help="file to write, '-' for stdout")
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    text = template_yaml()
    if args.check:
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != text:
            print(f"{args.output}: out of date; run python -m argomlops.workflows", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0
