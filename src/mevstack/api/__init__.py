"""The engine REST API and the WebSocket protocol handlers."""
