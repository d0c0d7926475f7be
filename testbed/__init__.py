"""The testbed harness: CLI, topology schema, network builder, supervisor, shaping, capture."""
