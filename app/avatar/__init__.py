"""The avatar engine behind livekit-agents' VideoGenerator contract, and its real-time playout."""

from app.avatar.engine import AvatarEngine, build_engine
from app.avatar.frames import AvatarFrame
from app.avatar.generator import AvatarVideoGenerator
from app.avatar.playout import AvatarPlayout

__all__ = ["AvatarEngine", "AvatarFrame", "AvatarPlayout", "AvatarVideoGenerator", "build_engine"]
