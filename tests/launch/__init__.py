"""scripts/serve.sh: as shipped, and its failures."""
