"""The kopf operator: MLOps objects in, per-run ConfigMaps and Argo Workflows out (never imports TensorFlow).

This folder is the package `argomlops.operator` (a package mapping in pyproject.toml). Run Python with
the repository root first on sys.path (`python -m ...` from a checkout) before anything has imported the
standard library's `operator`, and `import operator` finds this folder instead: numpy, collections and
half the standard library would break. So when imported under that name, this file loads the standard
library's module and hands it over in its place.
"""

import sys

if __name__ == "operator":
    import os
    from importlib.machinery import SourceFileLoader  # plain import machinery: nothing that needs `operator`

    _path = os.path.join(os.path.dirname(os.__file__), "operator.py")
    _stdlib = type(sys)("operator")
    _stdlib.__file__ = _path
    SourceFileLoader("operator", _path).exec_module(_stdlib)
    # The import system returns whatever sys.modules holds for the name once this file has run.
    sys.modules["operator"] = _stdlib
