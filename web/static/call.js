// The call page: /call?character=ID or /call?scene=ID.
// Local transport: this page and the server are the two WebRTC peers (one connection: the
// microphone out, the character's audio and video in, its state on a data channel).
// LiveKit transport: /static/livekit-call.js joins a room instead (window.startLiveKitCall).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const video = $("avatar");
  const params = new URLSearchParams(location.search);
  const who = {};
  for (const key of ["character", "scene"]) {
    if (params.get(key)) who[key] = params.get(key);
  }
  const STATE_CHANNEL_ID = 0; // negotiated by both peers (app/local_call/call.py)
  const GATHER_TIMEOUT_MS = 3000;
  let transport = "local";
  let names = []; // the characters called
  let current = null; // the call under way: {hangup(), pc?}

  class CallError extends Error {}

  function setState(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  // {state, character?} from the local call's state channel, or {state} from
  // livekit-call.js (which does not say who speaks: the name is known for one character)
  function onState(update) {
    if (!current) return;
    const speaker = update.character || (names.length === 1 ? names[0] : null);
    if (update.state === "speaking") {
      setState("speaking", speaker ? `Speaking: ${speaker}` : "Speaking");
    } else if (update.state === "listening") {
      setState("listening", "Listening");
    } else if (update.state === "waiting") {
      setState("connecting", "Waiting for the character…");
    } else if (update.state === "ended") {
      end(`The server ended the call: ${update.reason}.`); // too long, or nobody spoke
    }
  }

  async function detail(response) {
    try {
      const body = await response.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch {
      return response.statusText;
    }
  }

  async function microphone() {
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw new CallError(window.microphoneProblem(err));
    }
  }

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHER_TIMEOUT_MS); // send what we have
    });
  }

  async function startLocal(remote) {
    const mic = await microphone();
    const pc = new RTCPeerConnection();
    const hangup = () => {
      pc.close();
      mic.getTracks().forEach((t) => t.stop());
    };
    try {
      mic.getTracks().forEach((track) => pc.addTrack(track, mic));
      pc.addTransceiver("video", { direction: "recvonly" });
      const channel = pc.createDataChannel("state", { negotiated: true, id: STATE_CHANNEL_ID });
      channel.onmessage = (event) => onState(JSON.parse(event.data));
      pc.ontrack = (event) => remote.addTrack(event.track);
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "connected" && document.body.dataset.state === "connecting") {
          setState("listening", "Connected");
        } else if (pc.connectionState === "failed") {
          end("The connection failed. Check your network and start the call again.");
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const response = await fetch("/api/call/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...who, sdp: pc.localDescription.sdp, type: "offer" }),
      });
      if (response.status === 503 || response.status === 429) {
        throw new CallError(`Busy: ${await detail(response)}`);
      }
      if (!response.ok) {
        throw new CallError(`The call could not start: ${await detail(response)}`);
      }
      await pc.setRemoteDescription(await response.json());
    } catch (err) {
      hangup();
      throw err;
    }
    return { pc, hangup };
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new CallError(`Could not load ${src}.`));
      document.head.append(script);
    });
  }

  async function startLiveKit() {
    if (!window.startLiveKitCall) {
      await loadScript("/static/vendor/livekit-client.umd.js");
      await loadScript("/static/livekit-call.js");
    }
    return window.startLiveKitCall(who, {
      video,
      onState,
      onError: (err) => end(err.message || String(err)),
    });
  }

  async function start() {
    showError("");
    $("start").disabled = true;
    setState("connecting", "Connecting…");
    const remote = new MediaStream();
    video.srcObject = remote;
    video.play().catch(() => {}); // within the click: lets the character's audio play
    try {
      current = transport === "livekit" ? await startLiveKit() : await startLocal(remote);
      window.avatarCall = current; // for tests and the console
      $("hangup").hidden = false;
      $("start").hidden = true;
    } catch (err) {
      current = null;
      end(err instanceof CallError ? err.message : `The call could not start: ${err.message}`);
    }
  }

  function end(message) {
    if (current) current.hangup();
    current = null;
    video.srcObject = null;
    showError(message || "");
    setState(message ? "error" : "ended", message ? "Call failed" : "Call ended");
    $("hangup").hidden = true;
    $("start").hidden = false;
    $("start").disabled = false;
    $("start").textContent = "Call again";
  }

  async function init() {
    if (who.character && who.scene) {
      setState("error", "");
      showError("Ask for a character or a scene, not both.");
      return;
    }
    const query = new URLSearchParams(who).toString();
    const [cast, config] = await Promise.all([fetch(`/api/cast?${query}`), fetch("/api/config")]);
    if (!cast.ok) {
      setState("error", cast.status === 404 ? "Unknown character" : "");
      showError(await detail(cast));
      return;
    }
    names = (await cast.json()).characters;
    transport = (await config.json()).transport;
    document.title = `Call ${names.join(" & ")}`;
    $("title").textContent = names.join(" & ");
    setState("idle", "Ready");
    $("start").disabled = false;
  }

  $("start").addEventListener("click", start);
  $("hangup").addEventListener("click", () => end());
  window.addEventListener("pagehide", () => current && current.hangup());
  init().catch((err) => {
    setState("error", "");
    showError(`The page could not load: ${err.message}`);
  });
})();
