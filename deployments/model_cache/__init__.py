"""The model manager (the one writer of the cache) and everything that fills the cache."""
