"""The kopf operator: MLOps objects in, per-run ConfigMaps and Argo Workflows out (never imports TensorFlow)."""
