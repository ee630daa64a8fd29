"""One folder per model family: its Serve deployment, its engines, and protocol.py (what the ingress imports)."""
