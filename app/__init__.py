"""The asyncio application: agents, transports, the character library and the `avatar` CLI."""
