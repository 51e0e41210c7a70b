"""The source layout: every module's path says its import name, a plain checkout imports, stdlib stays stdlib.

argomlops/trainer, argomlops/operator and argomlops/workflows are symlinks to the top-level folders; the
top-level operator/ has no __init__.py, so nothing on sys.path can stand in for the standard library's
`operator` (README.md, Layout).
"""

from __future__ import annotations

import importlib.util
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_files() -> dict[str, Path]:
    """Every .py file under argomlops/ (through the symlinks) by the import name its path spells."""
    found = {}
    for folder, _dirs, files in os.walk(ROOT / "argomlops", followlinks=True):
        for file in files:
            if file.endswith(".py"):
                path = Path(folder) / file
                parts = path.relative_to(ROOT).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_every_module_path_is_its_import_name() -> None:
    files = _module_files()
    # The three folders and the config package are all there (a broken symlink would drop one).
    for package in ("argomlops.config", "argomlops.trainer", "argomlops.operator", "argomlops.workflows"):
        assert any(name.startswith(package + ".") for name in files), package
    for name, path in files.items():
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin == str(path), f"{name}: imported from {spec and spec.origin}"


def test_stdlib_operator_is_not_shadowed_from_the_checkout() -> None:
    script = "import operator, argomlops.operator as o; print(operator.__file__, list(o.__path__)[0])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    stdlib, ours = out.stdout.split()
    assert stdlib.endswith("/operator.py") and not stdlib.startswith(str(ROOT))
    assert ours == str(ROOT / "argomlops" / "operator")
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_root_first_on_the_path_still_gives_the_stdlib_operator() -> None:
    # -S: no site, so nothing has imported `operator` yet (as in a fresh venv running `python -m pip`
    # from the checkout); the repository root comes first on the path.
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "import operator, collections, runpy; print(operator.__file__, operator.eq(2, 2), collections.deque)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    path, equal, _ = out.stdout.split(maxsplit=2)
    assert path.endswith("/operator.py") and not path.startswith(str(ROOT)) and equal == "True"


def test_a_plain_checkout_imports_without_the_installed_finder() -> None:
    # -S skips .pth files, so the editable install's import hook is absent: only the checkout on the path,
    # plus the venv's site-packages for third-party libraries.
    extra = [str(ROOT), *site.getsitepackages()]
    script = (
        f"import sys; sys.path[:0] = {extra!r}; "
        "import argomlops.config, argomlops.workflows.template, argomlops.operator.crd, argomlops.trainer.storage; "
        "print(argomlops.operator.crd.__file__)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / "argomlops" / "operator" / "crd.py")
