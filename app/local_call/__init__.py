"""The local call transport: the server process is the browser's WebRTC peer (aiortc)."""

from app.local_call.admission import CallerLimited, CallsBusy
from app.local_call.call import LocalCall
from app.local_call.calls import LocalCalls
from app.local_call.limits import CallLimits
from app.local_call.offer import OfferError, parse_offer

__all__ = [
    "CallLimits",
    "CallerLimited",
    "CallsBusy",
    "LocalCall",
    "LocalCalls",
    "OfferError",
    "parse_offer",
]
