"""Pure-torch streaming engine: the audio-driven DiT, its caches, sampler and chunk loop."""
