"""The web dashboard, served statically; it talks only to the gateway and the WebSocket."""
