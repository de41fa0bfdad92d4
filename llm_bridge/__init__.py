"""Characters as conversational agents: OpenAI Realtime voices, the offline voice, turn-taking."""
