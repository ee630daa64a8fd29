"""The HTTP API as a whole: catalog, console, current models, errors, the spec, the serving path."""
