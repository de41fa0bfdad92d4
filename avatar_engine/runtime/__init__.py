"""Execution of the streaming DiT: local, disaggregated and sequence-parallel."""
