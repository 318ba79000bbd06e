"""Kalshi's protocol, shared by the collector and the simulator: request signing
(`auth`), parsing frames and REST objects (`messages`). Pure: no I/O, no Django."""
