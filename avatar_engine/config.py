"""Configs and named presets. Every size the engine uses is derived here, never in model code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
WAN_PATCH = (1, 2, 2)
WAN_VAE_STRIDE = (4, 8, 8)


def _derive(obj: object, **values: object) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def _named(table: dict[str, T], name: str, what: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known {what}s: {', '.join(table)}") from None


@dataclass(frozen=True)
class DiTConfig:
    """The Wan-style DiT trunk plus its audio conditioning modules."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 36  # noisy latent (out_dim) + mask (temporal stride) + reference latent (out_dim)
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    image_dim: int | None = None  # CLIP image token width; None = no image branch
    image_len: int = 257
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = WAN_PATCH
    temporal_stride: int = WAN_VAE_STRIDE[0]  # video frames per latent frame (after the first)
    rope_theta: float = 10000.0
    # audio conditioning
    audio_feature_dim: int = 768  # one speech feature vector per video frame
    audio_window: int = 2  # latent frames of audio context on each side of a latent frame
    audio_frame_dim: int = 256  # per-video-frame projection width
    audio_hidden_dim: int = 1024
    audio_tokens: int = 32  # audio context tokens per latent frame and character
    audio_token_dim: int = 768
    audio_attn_dim: int = 2560  # inner width of the per-block audio cross-attention
    audio_heads: int = 20
    max_characters: int = 4
    # The reference latent conditions every latent frame (mask 1 still marks only frame 0),
    # not just the first as in Wan I2V: a small model trained from scratch then keeps the
    # identity without having to learn to copy it through attention.
    reference_every_frame: bool = False
    # With reference_every_frame, the latent frames after the first carry the picture held
    # still through the causal VAE (its nearly settled latent, vae.detail.encode_still) instead
    # of the image latent: the VAE encodes frame 0 alone and later frames in groups, so the two
    # differ by about a latent's own size, and only the still one is what a part of the
    # picture that does not move must come out as.
    still_reference: bool = False
    # derived
    head_dim: int = field(init=False)
    rope_split: tuple[int, int, int] = field(init=False)  # complex pairs for (time, height, width)
    audio_window_frames: int = field(init=False)  # video-frame feature vectors per latent window
    audio_head_dim: int = field(init=False)
    cond_dim: int = field(init=False)  # conditioning channels concatenated to the noisy latent

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        head_dim = self.dim // self.num_heads
        if head_dim % 2:
            raise ValueError(f"head_dim {head_dim} must be even for RoPE")
        if self.audio_attn_dim % self.audio_heads:
            raise ValueError(
                f"audio_attn_dim {self.audio_attn_dim} is not divisible by audio_heads "
                f"{self.audio_heads}"
            )
        i2v_dim = 2 * self.out_dim + self.temporal_stride
        if self.in_dim != i2v_dim:
            raise ValueError(
                f"in_dim {self.in_dim} must be out_dim + mask + reference = {i2v_dim} "
                "(the reference image conditions as in Wan I2V)"
            )
        pairs = head_dim // 2
        _derive(
            self,
            head_dim=head_dim,
            rope_split=(pairs - 2 * (pairs // 3), pairs // 3, pairs // 3),
            audio_window_frames=(2 * self.audio_window + 1) * self.temporal_stride,
            audio_head_dim=self.audio_attn_dim // self.audio_heads,
            cond_dim=self.in_dim - self.out_dim,
        )


WAN_VAE_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_VAE_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
VAE_KERNEL = 3  # Wan's VAE convs are 3 wide in time and space


@dataclass(frozen=True)
class VAEConfig:
    """The causal video VAE (Wan2.1's architecture); defaults are the official Wan2.1 VAE.

    Stage i of the encoder has `num_res_blocks` residual blocks of width base_dim * dim_mult[i],
    then (except the last stage) a spatial x2 downsample that is also temporal x2 where
    temporal_downsample[i]. The decoder mirrors it with `decoder_res_blocks` blocks per stage.
    """

    z_dim: int = 16
    base_dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    # Residual blocks per decoder stage; None = num_res_blocks + 1, as Wan has.
    decoder_res_blocks: int | None = None
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    # Per-channel statistics of the encoder mean: latents are (mu - mean) / std.
    latent_mean: tuple[float, ...] = WAN_VAE_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN_VAE_LATENT_STD
    stride: tuple[int, int, int] = WAN_VAE_STRIDE  # (time, height, width) compression
    # derived
    encoder_dims: tuple[int, ...] = field(init=False)  # stem, then each stage's width
    decoder_dims: tuple[int, ...] = field(init=False)  # middle, then each stage's width
    temporal_upsample: tuple[bool, ...] = field(init=False)  # per decoder stage
    cache_frames: int = field(init=False)  # past input frames each causal conv keeps

    def __post_init__(self) -> None:
        stages = len(self.dim_mult)
        if len(self.temporal_downsample) != stages - 1:
            raise ValueError(
                f"temporal_downsample needs one entry per downsample ({stages - 1} for "
                f"{stages} stages), got {self.temporal_downsample}"
            )
        derived = (2 ** sum(self.temporal_downsample), 2 ** (stages - 1), 2 ** (stages - 1))
        if tuple(self.stride) != derived:
            raise ValueError(
                f"stride {self.stride} does not match the architecture, which compresses by "
                f"{derived}; change dim_mult / temporal_downsample or the stride"
            )
        decoder_res_blocks = self.decoder_res_blocks
        if decoder_res_blocks is None:
            decoder_res_blocks = self.num_res_blocks + 1
        if min(self.num_res_blocks, decoder_res_blocks) < 1:
            raise ValueError(
                "num_res_blocks and decoder_res_blocks must be at least 1 (the first block of a "
                "stage changes the width)"
            )
        if len(self.latent_mean) != self.z_dim or len(self.latent_std) != self.z_dim:
            raise ValueError(f"latent_mean and latent_std need z_dim = {self.z_dim} values each")
        if min(self.latent_std) <= 0:
            raise ValueError("latent_std values must be positive")
        decoder_dims = tuple(self.base_dim * m for m in (self.dim_mult[-1], *self.dim_mult[::-1]))
        if any(d % 2 for d in decoder_dims[1:-1]):
            raise ValueError(
                f"decoder widths {decoder_dims[1:-1]} must be even: each upsample halves them"
            )
        _derive(
            self,
            decoder_res_blocks=decoder_res_blocks,
            encoder_dims=tuple(self.base_dim * m for m in (1, *self.dim_mult)),
            decoder_dims=decoder_dims,
            temporal_upsample=self.temporal_downsample[::-1],
            cache_frames=VAE_KERNEL - 1,
        )

    @classmethod
    def from_name(cls, name: str) -> VAEConfig:
        return _named(VAE_PRESETS, name, "VAE preset")


@dataclass(frozen=True)
class AudioConfig:
    """Speech front-end: how per-video-frame features are made from 16 kHz audio."""

    encoder: str = "mel"  # "mel" (light, learned) or "wav2vec2" (pretrained, local path)
    sample_rate: int = 16000
    feature_dim: int = 64  # one vector per video frame
    # mel: causal log-mel frames, then a small learned causal conv encoder
    mel_bins: int = 40
    mel_window: int = 400  # samples per STFT frame (25 ms at 16 kHz)
    mel_frames_per_video_frame: int = 4  # the hop is a quarter of a video frame (10 ms at 25 fps)
    mel_channels: int = 128  # width of the learned encoder
    mel_kernel: int = 3  # temporal kernel of each of its two causal convs
    # wav2vec2: hidden states of these layers, stacked (layers 1..12 of wav2vec2-base)
    wav2vec2_layers: tuple[int, ...] = tuple(range(1, 13))
    wav2vec2_context_frames: int = 25  # video frames of past audio each chunk's window includes

    def __post_init__(self) -> None:
        if self.encoder not in ("mel", "wav2vec2"):
            raise ValueError(f"unknown audio encoder {self.encoder!r}; use 'mel' or 'wav2vec2'")
        if self.encoder == "wav2vec2" and self.feature_dim % len(self.wav2vec2_layers):
            raise ValueError(
                f"feature_dim {self.feature_dim} must be a multiple of the "
                f"{len(self.wav2vec2_layers)} stacked wav2vec2 layers"
            )


@dataclass(frozen=True)
class StreamConfig:
    """Stream geometry and the few-step student schedule."""

    height: int = 128
    width: int = 128
    fps: int = 25
    chunk_latent_frames: int = 3
    # Flow time of each denoising step; t = 0 is pure noise, t = 1 is data.
    denoise_times: tuple[float, ...] = (0.0, 0.5)
    vae_stride: tuple[int, int, int] = WAN_VAE_STRIDE
    patch_size: tuple[int, int, int] = WAN_PATCH
    # Add back to each decoded frame the reference picture's detail that the VAE loses, where
    # the frame still shows the picture (avatar_engine/vae/detail.py): for VAEs that blur.
    restore_detail: bool = False
    # The frame people see (avatar_engine/canvas.py): the picture at this size, the model's
    # frames pasted back into a window of it around the faces. 0: the model's own size.
    output_height: int = 0
    output_width: int = 0
    # derived
    latent_h: int = field(init=False)
    latent_w: int = field(init=False)
    grid_h: int = field(init=False)  # token grid after patch embedding
    grid_w: int = field(init=False)
    tokens_per_latent_frame: int = field(init=False)
    tokens_per_chunk: int = field(init=False)
    video_frames_per_chunk: int = field(init=False)  # steady-state chunk
    first_chunk_video_frames: int = field(init=False)  # chunk 0: first latent frame is 1 frame
    chunk_duration_s: float = field(init=False)
    num_steps: int = field(init=False)

    def __post_init__(self) -> None:
        _, sh, sw = self.vae_stride
        pt, ph, pw = self.patch_size
        if self.height % (sh * ph) or self.width % (sw * pw):
            raise ValueError(
                f"{self.height}x{self.width} must be a multiple of {sh * ph}x{sw * pw} "
                "(VAE stride times patch size)"
            )
        if self.chunk_latent_frames % pt:
            raise ValueError("chunk_latent_frames must be a multiple of the temporal patch size")
        times = self.denoise_times
        if not times or any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"denoise_times {times} must be non-empty and increasing")
        if not 0.0 <= times[0] or not times[-1] < 1.0:
            raise ValueError(f"denoise_times {times} must lie in [0, 1)")
        out_h, out_w = self.output_height or self.height, self.output_width or self.width
        if out_h < self.height or out_w < self.width or out_h * self.width != out_w * self.height:
            raise ValueError(
                f"the output {out_h}x{out_w} must be at least the model's {self.height}x"
                f"{self.width}, with the same aspect ratio"
            )
        latent_h, latent_w = self.height // sh, self.width // sw
        grid_h, grid_w = latent_h // ph, latent_w // pw
        tokens = grid_h * grid_w
        frames = self.chunk_latent_frames * self.vae_stride[0]
        _derive(
            self,
            output_height=out_h,
            output_width=out_w,
            latent_h=latent_h,
            latent_w=latent_w,
            grid_h=grid_h,
            grid_w=grid_w,
            tokens_per_latent_frame=tokens,
            tokens_per_chunk=tokens * self.chunk_latent_frames // pt,
            video_frames_per_chunk=frames,
            first_chunk_video_frames=frames - self.vae_stride[0] + 1,
            chunk_duration_s=frames / self.fps,
            num_steps=len(times),
        )


@dataclass(frozen=True)
class Preset:
    """A named, consistent set of component configs."""

    name: str
    dit: DiTConfig
    stream: StreamConfig
    audio: AudioConfig
    vae: VAEConfig

    def __post_init__(self) -> None:
        if self.dit.audio_feature_dim != self.audio.feature_dim:
            raise ValueError("dit.audio_feature_dim must equal audio.feature_dim")
        if self.dit.out_dim != self.vae.z_dim:
            raise ValueError("dit.out_dim must equal vae.z_dim")
        if self.dit.patch_size != self.stream.patch_size:
            raise ValueError("dit.patch_size must equal stream.patch_size")
        if self.vae.stride != self.stream.vae_stride:
            raise ValueError("vae.stride must equal stream.vae_stride")
        if self.dit.temporal_stride != self.vae.stride[0]:
            raise ValueError("dit.temporal_stride must equal the VAE's temporal stride")

    @classmethod
    def from_name(cls, name: str) -> Preset:
        return _named(PRESETS, name, "preset")


TINY_VAE_LATENT_MEAN = (
    -0.0839, 0.3293, 0.1654, -0.0785, -0.3497, -0.1986, -0.2602, -0.1979,
    0.5252, 0.458, 0.0904, 0.0502, -0.2079, -0.0281, -0.2942, 0.2492,
)  # fmt: skip
TINY_VAE_LATENT_STD = (
    0.3259, 1.457, 0.9752, 1.358, 1.962, 0.9723, 1.371, 1.101,
    3.763, 1.829, 0.7046, 1.046, 1.279, 1.228, 1.576, 1.073,
)  # fmt: skip

VAE_PRESETS: dict[str, VAEConfig] = {
    # The official Wan2.1 VAE (about 127M parameters).
    "wan2.1": VAEConfig(),
    # Wan's stages (x8 space, x4 time) at widths 8..64 and one residual block per stage. Trained
    # in this project (docs/TRAINING.md); its latent statistics were measured on 24 training clips
    # after training, as Wan's were.
    "tiny": VAEConfig(
        base_dim=8,
        dim_mult=(1, 2, 4, 8),
        num_res_blocks=1,
        decoder_res_blocks=1,
        latent_mean=TINY_VAE_LATENT_MEAN,
        latent_std=TINY_VAE_LATENT_STD,
    ),
}

WAV2VEC2_FEATURES = 12 * 768  # wav2vec2-base hidden states of layers 1..12, stacked

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="tiny",
            dit=DiTConfig(
                dim=128,
                ffn_dim=512,
                num_heads=2,
                num_layers=6,
                text_dim=64,
                text_len=8,
                audio_feature_dim=64,
                audio_frame_dim=32,
                audio_hidden_dim=256,
                audio_tokens=4,
                audio_token_dim=128,
                audio_attn_dim=256,
                audio_heads=4,
                reference_every_frame=True,
                still_reference=True,
            ),
            stream=StreamConfig(
                height=128, width=128, restore_detail=True, output_height=512, output_width=512
            ),
            audio=AudioConfig(encoder="mel", feature_dim=64),
            vae=VAE_PRESETS["tiny"],
        ),
        Preset(
            name="wan2.1-1.3b",
            dit=DiTConfig(
                dim=1536,
                ffn_dim=8960,
                num_heads=12,
                num_layers=30,
                audio_feature_dim=WAV2VEC2_FEATURES,
                audio_attn_dim=768,
                audio_heads=6,
            ),
            stream=StreamConfig(height=512, width=512),
            audio=AudioConfig(encoder="wav2vec2", feature_dim=WAV2VEC2_FEATURES),
            vae=VAE_PRESETS["wan2.1"],
        ),
        Preset(
            name="talkingmachines-14b",
            dit=DiTConfig(
                dim=5120,
                ffn_dim=13824,
                num_heads=40,
                num_layers=40,
                image_dim=1280,
                audio_feature_dim=WAV2VEC2_FEATURES,
            ),
            stream=StreamConfig(height=512, width=512),
            audio=AudioConfig(encoder="wav2vec2", feature_dim=WAV2VEC2_FEATURES),
            vae=VAE_PRESETS["wan2.1"],
        ),
    )
}
