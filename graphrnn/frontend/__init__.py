"""The front end: spec to a validated Network, its unrolled DAG, pictures, the reference oracle."""
