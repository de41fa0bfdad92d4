"""Per-character routing: the speech goes to the speaking character, everyone else listens."""

from __future__ import annotations

import torch


def route_to_speaker(
    features: torch.Tensor | None,
    speaker: int | None,
    characters: int,
    *,
    feature_shape: tuple[int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build a chunk's features and speaking flags for StreamSession.next_chunk.

    Args:
        features: [Fc, W, Da] one chunk's speech features, or None when nobody speaks.
        speaker: index of the speaking character, or None: all listen (silence embeddings).
        characters: K, characters in the scene.
        feature_shape: (Fc, W, Da), needed only when features is None.

    Returns:
        features [1, K, Fc, W, Da] (zeros for listeners: their tokens are replaced by the
        silence embedding anyway, and zeros cannot leak speech), speaking [1, K] bool.
    """
    if speaker is not None and not 0 <= speaker < characters:
        raise ValueError(f"speaker {speaker} is not one of the scene's {characters} characters")
    if features is None:
        if feature_shape is None:
            raise ValueError("give feature_shape when there are no features")
        routed = torch.zeros(1, characters, *feature_shape)
        return routed, torch.zeros(1, characters, dtype=torch.bool)
    if speaker is None:
        raise ValueError("features were given but no speaker: pass the speaking character")
    routed = torch.zeros(1, characters, *features.shape, dtype=features.dtype)
    routed[0, speaker] = features
    speaking = torch.zeros(1, characters, dtype=torch.bool)
    speaking[0, speaker] = True
    return routed, speaking
