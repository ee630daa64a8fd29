"""The job store: durability, back-pressure, both backends."""
