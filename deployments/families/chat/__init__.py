"""Chat completion with causal LMs, and seed 004's product descriptions."""
