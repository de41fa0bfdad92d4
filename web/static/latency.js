// The call page's latency readout (off by default): frames per second received, and the time
// from the end of the caller's words to the character's first frame of reply, both measured
// in this page. window.LatencyMeter({video, box}).start(micTrack) / .speaking() / .stop(),
// micTrack() giving the microphone's MediaStreamTrack once there is one.
//
// The end of the caller's words is read from the microphone's level (WebAudio): the last
// moment it was above SPEECH_LEVEL before QUIET_MS of quiet. The reply's first frame is the
// first video frame shown after the page learns the character speaks.
"use strict";

window.LatencyMeter = class LatencyMeter {
  static SPEECH_LEVEL = 0.02; // RMS of the samples in [-1, 1]
  static QUIET_MS = 350;
  static TICK_MS = 50;

  constructor({ video, box }) {
    this.video = video;
    this.box = box;
    this.timer = null;
    this.audio = null;
    this.reset();
  }

  reset() {
    this.fps = null;
    this.replyMs = null;
    this.loudAt = null; // the last loud moment of the caller's words under way
    this.wordsEnd = null; // the end of the caller's last words, not yet answered
    this.frames = null; // {count, at}
  }

  start(micTrack) {
    this.stop();
    this.reset();
    this.micTrack = micTrack;
    this.timer = setInterval(() => this.tick(), LatencyMeter.TICK_MS);
    this.show();
  }

  listen(track) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    this.audio = { context, analyser, samples: new Float32Array(analyser.fftSize) };
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.audio) this.audio.context.close();
    this.audio = null;
  }

  // the character started speaking: its next frame shown is the reply's first
  speaking() {
    if (this.wordsEnd === null || !this.timer) return;
    const wordsEnd = this.wordsEnd;
    this.wordsEnd = null;
    this.video.requestVideoFrameCallback((now) => {
      this.replyMs = now - wordsEnd;
      this.show();
    });
  }

  tick() {
    const now = performance.now();
    if (!this.audio && this.micTrack()) this.listen(this.micTrack());
    if (this.audio) {
      const { analyser, samples } = this.audio;
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, s) => sum + s * s, 0) / samples.length);
      if (rms > LatencyMeter.SPEECH_LEVEL) {
        this.loudAt = now;
      } else if (this.loudAt !== null && now - this.loudAt > LatencyMeter.QUIET_MS) {
        this.wordsEnd = this.loudAt;
        this.loudAt = null;
      }
    }
    const count = this.video.getVideoPlaybackQuality().totalVideoFrames;
    if (!this.frames) this.frames = { count, at: now };
    if (now - this.frames.at >= 1000) {
      this.fps = ((count - this.frames.count) * 1000) / (now - this.frames.at);
      this.frames = { count, at: now };
      this.show();
    }
  }

  show() {
    const fps = this.fps === null ? "– fps" : `${this.fps.toFixed(0)} fps`;
    const reply = this.replyMs === null ? "reply –" : `reply ${(this.replyMs / 1000).toFixed(2)} s`;
    this.box.textContent = `${fps} · ${reply}`;
    this.box.dataset.fps = this.fps ?? "";
    this.box.dataset.replyMs = this.replyMs ?? "";
  }
};
