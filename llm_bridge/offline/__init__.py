"""The offline demo voice, used when no OpenAI key is configured: webrtcvad ends the user's
turn, each utterance becomes a turn, the character answers with its scripted lines, and
espeak-ng speaks them. Each part is a livekit-agents component (VAD, STT, LLM, TTS), so the
AgentSession handles turns, interruptions and truncation as it does for any voice."""

from llm_bridge.offline.llm import ScriptedLLM
from llm_bridge.offline.stt import UtteranceSTT, utterance_text
from llm_bridge.offline.tts import EspeakTTS
from llm_bridge.offline.vad import WebRtcVAD

__all__ = ["EspeakTTS", "ScriptedLLM", "UtteranceSTT", "WebRtcVAD", "utterance_text"]
