"""The model manager: downloads, the cache, lifecycles, models from S3."""
