"""`python -m argomlops.workflows`: regenerate the WorkflowTemplate YAML."""

from __future__ import annotations

import sys

from argomlops.workflows.generate import main

sys.exit(main())
