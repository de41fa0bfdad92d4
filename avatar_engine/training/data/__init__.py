"""Synthetic talking-head data, deterministic from a seed: portraits, speech and motion."""
