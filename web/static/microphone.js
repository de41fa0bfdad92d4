// Why the microphone could not be opened, in words a caller can act on. Both transports use
// it: call.js (local) and livekit-call.js (LiveKit).
"use strict";

window.microphoneProblem = function (err) {
  if (err.name === "NotAllowedError" || err.name === "SecurityError") {
    return (
      "Microphone access was denied. Allow the microphone for this page (the icon in " +
      "the address bar) and start the call again."
    );
  }
  if (err.name === "NotFoundError") {
    return "No microphone was found. Connect one and start the call again.";
  }
  return `The microphone could not be opened (${err.name}: ${err.message}).`;
};
