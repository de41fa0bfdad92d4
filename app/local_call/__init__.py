"""The local call transport: the server process is the browser's WebRTC peer (aiortc)."""

from app.local_call.call import LocalCall
from app.local_call.calls import CallsBusy, LocalCalls
from app.local_call.offer import OfferError, parse_offer

__all__ = ["CallsBusy", "LocalCall", "LocalCalls", "OfferError", "parse_offer"]
