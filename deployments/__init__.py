"""Ray Serve deployments: the ingress, one deployment per model family, and the model manager."""
