"""What a training pod and the trainer in it agree on: environment variables and paths inside the pod.

The WorkflowTemplate (argomlops/workflows/template.py) sets these and declares the files as outputs;
the trainer reads them. Both import them from here, the shared core, so neither part needs the other
and a run's `code/` (the trainer's source) holds every name the trainer used.
"""

from __future__ import annotations

REPORT_ENV = "ARGOMLOPS_REPORT_FILE"
REPORT_PATH = "/tmp/argomlops-report.json"  # nosec B108 # the pod's own emptyDir /tmp, shared with nobody
"""Where the trainer writes its report (newest checkpoint, bucket requests by class); an output parameter."""

NEWEST_IMAGES_ENV = "ARGOMLOPS_NEWEST_IMAGES"
NEWEST_IMAGES_PATH = "/tmp/argomlops/newest.png"  # nosec B108 # the pod's own emptyDir /tmp, as above
"""Where the trainer copies each new grid; the stage node's output artifact in the Argo UI."""
