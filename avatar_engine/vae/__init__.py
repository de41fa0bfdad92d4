"""The causal video VAE: Wan2.1's architecture with a functional streaming decoder."""

from avatar_engine.vae.model import DecoderState, WanVAE
from avatar_engine.vae.video import to_uint8_frames
from avatar_engine.vae.weights import (
    VAE_CONVERTERS,
    build_vae,
    convert_diffusers_vae,
    convert_wan_vae,
    load_vae,
    load_vae_state,
    random_vae,
    save_vae,
)

__all__ = [
    "VAE_CONVERTERS",
    "DecoderState",
    "WanVAE",
    "build_vae",
    "convert_diffusers_vae",
    "convert_wan_vae",
    "load_vae",
    "load_vae_state",
    "random_vae",
    "save_vae",
    "to_uint8_frames",
]
