"""The catalog file and its schema."""
