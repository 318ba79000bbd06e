"""Talking to Kalshi: signing, message parsing, REST and WebSocket clients."""
