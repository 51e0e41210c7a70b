"""hera builders of the argomlops Argo WorkflowTemplate and per-run Workflows."""
