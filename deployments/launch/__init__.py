"""scripts/serve.sh's launcher: Serve brought up in stages behind a starting gate."""
