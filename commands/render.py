"""`avatar render`: an mp4 of a character (or a picture, or a scene) speaking, offline."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the imports that need torch wait until a command runs
    import numpy as np

    from app.avatar.engine import AvatarEngine
    from app.characters import Box
    from app.render import Turn
    from llm_bridge.persona import Persona

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".webm")
SCRIPT_FORMAT = """\
A script is a text file, one turn per line, spoken in order:

  ada: Hi, I'm Ada. What shall we talk about?
  bo: lines/reply.wav

Before the colon: a character id of the scene (or the --character). After it: text, spoken
with that character's espeak-ng voice from its persona, or an audio file (one word ending in
.wav .flac .ogg .mp3 .m4a or .webm; relative paths are from the script's folder). Blank
lines and lines starting with # are skipped. Each turn starts when the one before ends."""


@dataclass(frozen=True)
class ScriptCast:
    """Who is in the picture."""

    picture: np.ndarray  # [H, W, 3] uint8 RGB
    face_boxes: list[Box]  # per character, fractions of the picture
    ids: list[str]  # per character: how a script names it
    personas: list[Persona | None]  # per character (None for a bare --image)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    render = sub.add_parser(
        "render",
        help="render an mp4 of a character, picture or scene speaking",
        description="Render an mp4 (h264 + aac) whose video follows the audio:\n"
        "  avatar render (--character ID | --image FILE) --audio FILE -o out.mp4\n"
        "  avatar render --scene ID --script FILE -o out.mp4",
        epilog=SCRIPT_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = render.add_mutually_exclusive_group(required=True)
    who.add_argument("--character", metavar="ID", help="a character of the library")
    who.add_argument(
        "--image", type=Path, metavar="FILE", help="a picture; its largest face speaks"
    )
    who.add_argument("--scene", metavar="ID", help="a scene of the library (with --script)")
    speech = render.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", type=Path, metavar="FILE", help="speech to lip-sync")
    speech.add_argument("--script", type=Path, metavar="FILE", help="who says what (below)")
    render.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4")
    render.add_argument(
        "--model", type=Path, metavar="DIR", help="an exported model (default: the embedded one)"
    )
    render.add_argument(
        "--data", type=Path, metavar="DIR", help="the library (default: $AVATAR_DATA or XDG)"
    )
    render.add_argument("--device", default="cpu", help="the engine's device, e.g. cuda")
    render.add_argument("--seed", type=int, default=0)
    render.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace, *, engine: AvatarEngine | None = None) -> int:
    """Exit 2 with one line on stderr for anything the user can fix, and 130 on Ctrl-C; write
    nothing then.

    Args:
        engine: an AvatarEngine to render with (tests); None builds --model's.
    """
    try:
        return _render(args, engine)
    except KeyboardInterrupt:
        print("\navatar render: interrupted; nothing was written", file=sys.stderr)
        return 130


def _render(args: argparse.Namespace, engine: AvatarEngine | None) -> int:
    from tqdm import tqdm

    from app.avatar.engine import load_engine
    from app.inputs import InputError
    from app.render import render
    from avatar_engine.embedded import EmbeddedModel

    try:
        _check_output(args.output)
        cast = _cast(args)
        turns = _turns(args, cast)
        if engine is None:
            engine = load_engine(
                device=args.device, model=None if args.model is None else EmbeddedModel(args.model)
            )
        with tqdm(desc="render", unit="frame") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            rendered = render(
                engine, cast.picture, cast.face_boxes, turns, seed=args.seed, progress=progress
            )
        rendered.save(args.output)
    except (InputError, LookupError, ValueError, OSError) as err:
        print(f"avatar render: {err}", file=sys.stderr)
        return 2
    seconds = len(rendered.audio) / rendered.rate
    print(
        f"wrote {args.output}: {len(rendered.frames)} frames at {rendered.fps} fps, {seconds:.2f} s"
    )
    return 0


def _check_output(path: Path) -> None:
    from app.inputs import InputError

    if not path.parent.is_dir():
        raise InputError(f"the output directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"the output {path} is a directory; name an .mp4 file")


def _cast(args: argparse.Namespace) -> ScriptCast:
    from app.characters import crop_portrait
    from app.inputs import InputError, load_image
    from app.store import Store
    from avatar_engine.framing import detect_faces

    if args.image is not None:
        if args.script is not None:
            raise InputError("--script needs --scene or --character (a script names who speaks)")
        image = load_image(args.image)
        faces = detect_faces(image)
        if not faces:
            print(
                f"avatar render: no face was found in {args.image.name}; the centre of the "
                "picture speaks",
                file=sys.stderr,
            )
        crop = crop_portrait(image, faces[0] if faces else None)  # none found: the centre
        return ScriptCast(crop.image, list(crop.face_boxes), ["image"], [None])
    library = Store(args.data).library
    if args.character is not None:
        c = library.character(args.character)
        return ScriptCast(c.picture(), [c.face_box], [c.id], [c.persona])
    if args.audio is not None:
        raise InputError("--scene needs a --script (who says what), not one --audio")
    scene = library.scene(args.scene)
    return ScriptCast(
        scene.picture,
        list(scene.face_boxes),
        [c.id for c in scene.characters],
        [c.persona for c in scene.characters],
    )


def _turns(args: argparse.Namespace, cast: ScriptCast) -> list[Turn]:
    from app.inputs import load_audio
    from app.render import Turn

    if args.audio is not None:
        wave, rate = load_audio(args.audio)
        return [Turn(0, wave, rate)]
    return parse_script(args.script, cast)


def parse_script(path: Path, cast: ScriptCast) -> list[Turn]:
    """The script's turns (SCRIPT_FORMAT), text already spoken; together at most
    AUDIO_MAX_SECONDS, as one --audio file (refused at the first turn past it)."""
    from livekit.agents import APIError

    from app.inputs import AUDIO_MAX_SECONDS, InputError, load_audio
    from app.render import Turn, speak

    if not path.is_file():
        raise InputError(f"script file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"the script {path} is not UTF-8 text") from None
    turns, seconds = [], 0.0
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"script line {number}"
        name, colon, what = (part.strip() for part in line.partition(":"))
        if not colon or not what:
            raise InputError(f"{where}: write `CHARACTER: text or audio file`, not {line!r}")
        if name not in cast.ids:
            raise InputError(f"{where}: no character {name!r} here; use {', '.join(cast.ids)}")
        speaker = cast.ids.index(name)
        try:
            if " " not in what and what.lower().endswith(AUDIO_SUFFIXES):
                wave, rate = load_audio(path.parent / what)
            else:
                persona = cast.personas[speaker]
                if persona is None:
                    raise InputError(
                        "a bare --image has no voice to speak with: give an audio file"
                    )
                wave, rate = speak(persona, what)
        except (InputError, RuntimeError, APIError) as err:
            raise InputError(f"{where}: {err}") from None
        seconds += len(wave) / rate
        if seconds > AUDIO_MAX_SECONDS:
            raise InputError(
                f"{where}: the script's speech reaches {seconds:.1f} s; the limit is "
                f"{AUDIO_MAX_SECONDS:g} s in all, as for one --audio file"
            )
        turns.append(Turn(speaker, wave, rate))
    if not turns:
        raise InputError(f"the script {path} has no turns")
    return turns
