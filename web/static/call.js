// The call page: /call?character=ID or /call?scene=ID (&start=1: the gallery's Call button,
// which starts the call at once). Before the call the video box shows the character's picture
// (or the scene's) and name; the status says what happens in words.
// Local transport: this page and the server are the two WebRTC peers (one connection: the
// microphone out, the character's audio and video in, its state and the transcript on a data
// channel). LiveKit transport: /static/livekit-call.js joins a room instead
// (window.startLiveKitCall). Either call object has hangup(), setMuted(bool) and micTrack.
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
  const transcript = new window.Transcript($("transcript"), $("transcript-empty"));
  const latency = new window.LatencyMeter({ video, box: $("latency") });
  let transport = "local";
  let names = []; // the characters called, by speaker index
  let current = null; // the call under way
  let muted = false;

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

  // {state, character?} from the local call's state channel or from livekit-call.js;
  // {transcript: line} from either
  function onMessage(update) {
    if (!current) return;
    if (update.transcript) {
      transcript.update(update.transcript);
      return;
    }
    const speaker = update.character || (names.length === 1 ? names[0] : null);
    if (update.state === "speaking") {
      setState("speaking", speaker ? `Speaking: ${speaker}` : "Speaking");
      latency.speaking();
    } else if (update.state === "listening") {
      setState("listening", muted ? "Listening (you are muted)" : "Listening");
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
    const [micTrack] = mic.getAudioTracks();
    const hangup = () => {
      pc.close();
      mic.getTracks().forEach((t) => t.stop());
    };
    try {
      mic.getTracks().forEach((track) => pc.addTrack(track, mic));
      pc.addTransceiver("video", { direction: "recvonly" });
      const channel = pc.createDataChannel("state", { negotiated: true, id: STATE_CHANNEL_ID });
      channel.onmessage = (event) => onMessage(JSON.parse(event.data));
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
    const setMuted = (on) => (micTrack.enabled = !on);
    return { pc, hangup, setMuted, micTrack };
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
      names,
      onState: onMessage,
      onTranscript: (line) => onMessage({ transcript: line }),
      onError: (err) => end(err.message || String(err)),
    });
  }

  // A browser that refuses to play sound before a click here (the gallery's Call button
  // starts the call on arrival) gets a button for it.
  function playVideo() {
    $("sound").hidden = true;
    video.play().catch((err) => {
      if (err.name === "NotAllowedError") $("sound").hidden = false;
    });
  }

  // the call's microphone track, once it has one (LiveKit opens it after the call starts)
  const micTrack = () => (current ? current.micTrack : null);

  function setMuted(on) {
    muted = on;
    if (current) current.setMuted(on);
    const button = $("mute");
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Unmute" : "Mute";
    if (document.body.dataset.state === "listening") onMessage({ state: "listening" });
  }

  async function start() {
    showError("");
    transcript.clear();
    $("start").disabled = true;
    setState("connecting", "Connecting…");
    const remote = new MediaStream();
    video.srcObject = remote;
    playVideo(); // within the click: lets the character's audio play
    try {
      current = transport === "livekit" ? await startLiveKit() : await startLocal(remote);
      window.avatarCall = current; // for tests and the console
      if (muted) current.setMuted(true);
      if ($("show-latency").checked) latency.start(micTrack);
      $("start").hidden = true;
      $("mute").hidden = false;
      $("hangup").hidden = false;
      $("hangup").focus();
    } catch (err) {
      current = null;
      end(err instanceof CallError ? err.message : `The call could not start: ${err.message}`);
    }
  }

  function end(message) {
    const call = current;
    current = null; // first: a transport that reports its own end finds no call to end again
    if (call) call.hangup();
    latency.stop();
    video.srcObject = null;
    $("sound").hidden = true;
    document.body.classList.remove("has-video");
    showError(message || "");
    if (message) {
      setState("error", message.startsWith("Busy:") ? "Busy" : "Call failed");
    } else {
      setState("ended", "Call ended");
    }
    const focused = document.activeElement;
    $("hangup").hidden = true;
    $("mute").hidden = true;
    $("start").hidden = false;
    $("start").disabled = false;
    $("start").textContent = "Call again";
    if (focused === $("hangup") || focused === $("mute")) $("start").focus();
  }

  function showWho(cast) {
    names = cast.characters;
    document.title = `Call ${cast.name}`;
    $("title").textContent = cast.name;
    $("poster-name").textContent = cast.name;
    $("portrait").alt =
      names.length > 1 ? `${names.join(" and ")} together` : `Portrait of ${cast.name}`;
    $("portrait").src = cast.picture;
  }

  async function init() {
    if (who.character && who.scene) {
      setState("error", "Call failed");
      showError("Ask for a character or a scene, not both.");
      return;
    }
    const query = new URLSearchParams(who).toString();
    const [cast, config] = await Promise.all([fetch(`/api/cast?${query}`), fetch("/api/config")]);
    if (!cast.ok) {
      const unknown = who.scene ? "Unknown scene" : "Unknown character";
      setState("error", cast.status === 404 ? unknown : "Call failed");
      showError(await detail(cast));
      return;
    }
    showWho(await cast.json());
    transport = (await config.json()).transport;
    setState("idle", "Ready");
    $("start").disabled = false;
    if (params.get("start") === "1") start();
  }

  const showVideo = () => video.videoWidth > 0 && document.body.classList.add("has-video");
  video.addEventListener("resize", showVideo); // its first frame: the picture gives way
  video.addEventListener("loadeddata", showVideo);
  $("sound").addEventListener("click", playVideo);
  $("start").addEventListener("click", start);
  $("hangup").addEventListener("click", () => end());
  $("mute").addEventListener("click", () => setMuted(!muted));
  $("show-latency").addEventListener("change", (event) => {
    $("latency").hidden = !event.target.checked;
    if (!event.target.checked) latency.stop();
    else if (current) latency.start(micTrack);
  });
  window.addEventListener("pagehide", () => current && current.hangup());
  init().catch((err) => {
    setState("error", "Call failed");
    showError(`The page could not load: ${err.message}`);
  });
})();
