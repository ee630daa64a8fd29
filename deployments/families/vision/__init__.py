"""Image classification and description."""
