"""Checking a browser's SDP offer before anything is built for it.

aiortc's SDP parser accepts almost any text (an empty string is a valid description with no
media), so a call checks what it needs itself and says what is wrong: the microphone as an
Opus audio section the browser sends, a video section it receives in a codec we can send,
and ICE and DTLS parameters on every section.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiortc import RTCSessionDescription
from aiortc.sdp import MediaDescription, SessionDescription

logger = logging.getLogger(__name__)

MAX_SDP_CHARS = 64 * 1024  # a browser's offer is a few kilobytes
VIDEO_CODECS = {"vp8", "h264"}  # what aiortc encodes
SENDS = {"sendrecv", "sendonly"}
RECEIVES = {"sendrecv", "recvonly"}


class OfferError(ValueError):
    """The offer cannot make a call; the message says why."""


@dataclass(frozen=True)
class Offer:
    description: RTCSessionDescription
    data_channel: bool  # the offer has an SCTP section: the state channel can be used


def parse_offer(sdp: str, kind: str) -> Offer:
    if kind != "offer":
        raise OfferError(f'expected an SDP of type "offer", got {kind!r}')
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f"the SDP offer is {len(sdp)} characters; at most {MAX_SDP_CHARS}")
    if not sdp.startswith("v=0"):
        raise OfferError("the SDP offer does not start with 'v=0': it is not SDP")
    try:
        parsed = SessionDescription.parse(sdp)
    except (AssertionError, ValueError, IndexError, KeyError, TypeError, StopIteration) as err:
        # the parser's own words name aiortc's internals: the log keeps them
        logger.info("unparsable SDP offer", extra={"error": f"{type(err).__name__}: {err}"})
        raise OfferError(
            "the SDP offer cannot be parsed: a line is not valid SDP (send the browser's offer "
            "unchanged)"
        ) from None
    media = parsed.media
    if not media:
        raise OfferError("the SDP offer has no media sections (m= lines)")
    for section, attributes in zip(media, _attributes(sdp), strict=False):
        _check_transport(section, attributes)
    audio = [m for m in media if m.kind == "audio"]
    if not any(m.direction in SENDS and _codecs(m) & {"opus"} for m in audio):
        raise OfferError("the SDP offer sends no Opus audio: the call needs the microphone")
    video = [m for m in media if m.kind == "video"]
    if not any(m.direction in RECEIVES and _codecs(m) & VIDEO_CODECS for m in video):
        raise OfferError(
            "the SDP offer receives no video in VP8 or H264: the call sends the character's video"
        )
    data_channel = any(m.kind == "application" for m in media)
    return Offer(RTCSessionDescription(sdp=sdp, type=kind), data_channel)


def _codecs(section: MediaDescription) -> set[str]:
    return {codec.mimeType.split("/")[-1].lower() for codec in section.rtp.codecs}


def _attributes(sdp: str) -> list[set[str]]:
    """The attribute names (a=NAME) that apply to each media section, the session's included:
    aiortc drops a section's DTLS parameters whole when one of them is missing."""
    session: set[str] = set()
    sections: list[set[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append(set(session))
        elif line.startswith("a="):
            (sections[-1] if sections else session).add(line[2:].split(":", 1)[0])
    return sections


def _check_transport(section: MediaDescription, attributes: set[str]) -> None:
    where = f"the SDP offer's {section.kind} section"
    if section.ice is None or not section.ice.usernameFragment or not section.ice.password:
        raise OfferError(f"{where} has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    if section.dtls is None or not section.dtls.fingerprints:
        if "fingerprint" in attributes and "setup" not in attributes:
            raise OfferError(f"{where} has no DTLS role (a=setup)")
        raise OfferError(f"{where} has no DTLS fingerprint (a=fingerprint)")
    if section.kind in ("audio", "video") and not section.rtp.codecs:
        raise OfferError(f"{where} offers no codecs (a=rtpmap)")
    if section.kind in ("audio", "video") and not section.rtcp_mux:
        raise OfferError(f"{where} does not multiplex RTCP with RTP (a=rtcp-mux)")
