// The call page's LiveKit transport:
// window.startLiveKitCall(who, {video, onState, onTranscript, onError}).
// The server mints a token for one new room (web/livekit_token.py); joining that room
// dispatches the avatar worker, which publishes the character as the tracks avatar_video and
// avatar_audio (app/conversation.py). Load /static/vendor/livekit-client.umd.js first.
//
// onState({state, character?}) reports each change, in order: "connecting" (microphone,
// token, room), "waiting" (in the room, the character not yet), then live: "listening" or
// "speaking" with the name of the character who has the floor (the agent's livekit-agents
// state and its avatar.speaker attribute), and "ended" after hangup(). onTranscript(line)
// reports the transcript as the agent publishes it (livekit-agents' lk.transcription text
// streams: the caller's words as transcribed, the character's paced with its audio), as
// {id, role, text, character, final} (transcript.js). onError(Error) reports a failure in
// words for the caller, once; the call is over by then.
"use strict";

(() => {
  const AVATAR_VIDEO = "avatar_video";
  const AVATAR_TRACKS = new Set([AVATAR_VIDEO, "avatar_audio"]);
  // livekit-agents keeps its state in this attribute of the participant that also publishes the
  // avatar (AvatarRunner runs in the agent's job, app/conversation.py)
  const AGENT_STATE = "lk.agent.state";
  const SPEAKER = "avatar.speaker"; // the character who has the floor (app/casting.py)
  const TRANSCRIPTION = "lk.transcription"; // livekit-agents' transcript streams
  const SEGMENT_ID = "lk.segment_id";
  const FINAL = "lk.transcription_final";
  const AGENT_TIMEOUT_MS = 60000; // for a worker to join and publish the character

  class CallError extends Error {}

  async function microphone(LK) {
    try {
      return await LK.createLocalAudioTrack({
        echoCancellation: true,
        noiseSuppression: true,
        autoGainControl: true,
      });
    } catch (err) {
      throw new CallError(window.microphoneProblem(err));
    }
  }

  async function requestToken(who) {
    const response = await fetch("/api/livekit/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(who),
    });
    if (!response.ok) {
      let why = response.statusText;
      try {
        const detail = (await response.json()).detail;
        why = typeof detail === "string" ? detail : JSON.stringify(detail);
      } catch {
        // not JSON: the status text says enough
      }
      const busy = response.status === 429 || response.status === 503;
      throw new CallError(busy ? `Busy: ${why}` : `The call could not start: ${why}`);
    }
    return response.json(); // {url, token, room, identity}
  }

  function connectionMessage(LK, err, url) {
    const reasons = LK.ConnectionErrorReason;
    if (err.reason === reasons.NotAllowed) {
      return `The call server at ${url} refused this call (${err.message}).`;
    }
    if (err.reason === reasons.ServerUnreachable || err.reason === reasons.WebSocket) {
      return (
        `Could not connect to the call server at ${url}: check that the LiveKit server is ` +
        `running and reachable from this browser (${err.message}).`
      );
    }
    return `Could not join the call at ${url} (${err.message}).`;
  }

  window.startLiveKitCall = (who, options) => {
    const LK = window.LivekitClient;
    if (!LK) throw new Error("livekit-client is not loaded (/static/vendor/livekit-client.umd.js)");
    const { video, onState = () => {}, onTranscript = () => {}, onError = () => {} } = options;
    const agentTimeoutMs = options.agentTimeoutMs ?? AGENT_TIMEOUT_MS;
    const E = LK.RoomEvent;
    const room = new LK.Room();
    const attached = [];
    let ended = false;
    let joined = false; // until then, Disconnected is a failed join, which connect() reports
    let mic = null;
    let mutedWanted = false; // asked before the microphone was open
    let character = null; // the participant that publishes the avatar
    let agentTimer = null;

    let reported = null;
    const report = (state, name) => {
      const key = `${state}/${name || ""}`;
      if (ended || key === reported) return;
      reported = key;
      onState(name ? { state, character: name } : { state });
    };
    const speaker = () => (character && character.attributes[SPEAKER]) || null;
    const reportLive = () => {
      if (character.attributes[AGENT_STATE] === "speaking") report("speaking", speaker());
      else report("listening");
    };

    function finish() {
      ended = true;
      clearTimeout(agentTimer);
      attached.forEach((track) => track.detach(video));
      room.disconnect(); // stops the published microphone too
      if (mic) mic.stop();
    }

    function fail(message) {
      if (ended) return;
      finish();
      onError(new Error(message));
    }

    room.on(E.TrackSubscribed, (track, publication, participant) => {
      if (!AVATAR_TRACKS.has(publication.trackName)) return;
      track.attach(video);
      attached.push(track);
      if (publication.trackName === AVATAR_VIDEO) {
        clearTimeout(agentTimer);
        character = participant;
        reportLive();
      }
    });
    room.on(E.ParticipantAttributesChanged, (changed, participant) => {
      if (participant === character && (AGENT_STATE in changed || SPEAKER in changed)) {
        reportLive();
      }
    });
    // One stream per segment: the agent's grow as a reply plays (its text arrives in pieces);
    // the caller's come as one stream per version of the segment, the last one final.
    room.registerTextStreamHandler(TRANSCRIPTION, async (reader, from) => {
      const attributes = reader.info.attributes || {};
      const user = from.identity === room.localParticipant.identity;
      const line = {
        id: attributes[SEGMENT_ID] || reader.info.id,
        role: user ? "user" : "character",
        text: "",
        character: user ? null : speaker(),
        final: attributes[FINAL] === "true",
      };
      for await (const piece of reader) {
        if (ended) return;
        line.text += piece;
        onTranscript({ ...line });
      }
      if (!ended && !user) onTranscript({ ...line, final: true }); // a reply's stream ends with it
    });
    room.on(E.ParticipantDisconnected, (participant) => {
      if (participant === character) fail("The character left the call.");
    });
    room.on(E.Disconnected, (reason) => {
      if (joined) fail(`The call was disconnected (${LK.DisconnectReason[reason] || reason}).`);
    });

    (async () => {
      report("connecting");
      // the microphone first: a caller who refuses it never gets a character dispatched
      mic = await microphone(LK);
      if (ended) return mic.stop();
      if (mutedWanted) await mic.mute();
      const grant = await requestToken(who);
      if (ended) return;
      try {
        await room.connect(grant.url, grant.token);
      } catch (err) {
        throw new CallError(connectionMessage(LK, err, grant.url));
      }
      joined = true;
      if (ended) return;
      if (!character) {
        report("waiting");
        agentTimer = setTimeout(
          () => fail("The character did not join the call: no avatar worker took it. Try again."),
          agentTimeoutMs,
        );
      }
      await room.localParticipant.publishTrack(mic);
    })().catch((err) => {
      fail(err instanceof CallError ? err.message : `The call could not start: ${err.message}`);
    });

    return {
      room, // for tests and debugging
      get micTrack() {
        return mic ? mic.mediaStreamTrack : null;
      },
      setMuted(on) {
        mutedWanted = on;
        if (mic) (on ? mic.mute() : mic.unmute()).catch(() => {}); // keeps the track open
      },
      hangup() {
        if (ended) return;
        finish();
        onState({ state: "ended" });
      },
    };
  };
})();
