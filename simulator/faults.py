"""Fault injection: what a real network and a real exchange do to a stream.

Faults change what is SENT on one connection, never the exchange's truth.
Each connection draws its faults from its own generator, seeded from the
simulator's seed and the connection's number, so the same seed and the same
frames give the same faults.

  * drop_rate: a sequenced channel message is not sent (a gap in its sid's seq).
  * duplicate_rate: a message is sent twice (a duplicate seq).
  * reorder_rate: a sequenced message is held back and sent after the next
    frame (a seq jump, then an old seq).
  * malformed_rate: an extra unparseable frame (truncated JSON, garbage) is
    sent before a message; the message itself still follows.
  * numeric_rate: a message is sent with JSON numbers where Kalshi sends
    strings ("0.5600" -> 0.56); still valid, still exact.
  * terminal_error_rate: a sequenced channel message is replaced by a
    terminal error (terminal_error_code, 10 or 25) and its subscription ends.
  * disconnect_every_frames / disconnect_every_seconds: the server closes the
    connection, as in Kalshi's maintenance window.
  * silent_pings: no heartbeat pings (a dead-looking connection).
The slow-consumer rule (error 25 when a client's queue passes its bound)
is always on; see SimulatorConfig.outbound_queue_limit.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from decimal import Decimal

from .session import Frame

# Keys whose fixed-point string values the numeric fault turns into numbers.
_NUMERIC_SUFFIXES = ("_dollars", "_fp")


@dataclass(frozen=True)
class FaultConfig:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    malformed_rate: float = 0.0
    numeric_rate: float = 0.0
    terminal_error_rate: float = 0.0
    terminal_error_code: int = 25
    disconnect_every_frames: int | None = None
    disconnect_every_seconds: float | None = None
    silent_pings: bool = False

    def none(self) -> bool:
        """No fault at all: every frame is sent as it is (no random draw is spent)."""
        return not (self.drop_rate or self.duplicate_rate or self.reorder_rate or self.malformed_rate
                    or self.numeric_rate or self.terminal_error_rate)

    def __post_init__(self):
        for name in (
            "drop_rate",
            "duplicate_rate",
            "reorder_rate",
            "malformed_rate",
            "numeric_rate",
            "terminal_error_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.terminal_error_code not in (10, 25):
            raise ValueError("terminal_error_code must be 10 or 25")


@dataclass(frozen=True)
class Decision:
    """What to do with one frame: send these texts, and maybe end its sid."""

    texts: tuple[str, ...]
    terminal_sid: int | None = None


class FaultInjector:
    """The faults of one connection."""

    def __init__(self, config: FaultConfig, *, seed: int, connection: int):
        self.config = config
        self.rng = random.Random(f"{seed}:{connection}")
        self.dropped = 0
        self.duplicated = 0
        self.malformed = 0
        self.held: tuple[str, ...] = ()  # a message held back by the reorder fault

    def decide(self, frame: Frame) -> Decision:
        cfg, rng = self.config, self.rng
        if not frame.data or (not self.held and cfg.none()):
            return Decision((frame.text(),) + self._release())
        sequenced = frame.seq is not None
        # One draw per fault, always in the same order: determinism.
        drop, dup, bad, num, term, swap = (rng.random() for _ in range(6))
        if sequenced and term < cfg.terminal_error_rate:
            return Decision((), terminal_sid=frame.sid)
        if sequenced and drop < cfg.drop_rate:
            self.dropped += 1
            return Decision(())
        text = (
            json.dumps(numbers_for_strings(frame.body), separators=(",", ":"))
            if num < cfg.numeric_rate
            else frame.text()
        )
        texts = [text]
        if bad < cfg.malformed_rate:
            self.malformed += 1
            texts.insert(0, corrupt(text, rng))
        if dup < cfg.duplicate_rate:
            self.duplicated += 1
            texts.append(text)
        if sequenced and swap < cfg.reorder_rate and not self.held:
            self.held = tuple(texts)
            return Decision(())
        return Decision(tuple(texts) + self._release())

    def _release(self) -> tuple[str, ...]:
        held, self.held = self.held, ()
        return held


def corrupt(text: str, rng: random.Random) -> str:
    """An unparseable frame: the message cut short, or plain garbage."""
    if rng.random() < 0.7 and len(text) > 2:
        return text[: rng.randint(1, len(text) - 1)]
    return "".join(rng.choice('{}[]:,"\\xyz0123 \x00') for _ in range(rng.randint(1, 40)))


def numbers_for_strings(value):
    """The same message with fixed-point strings as JSON numbers (exact via repr)."""
    if isinstance(value, dict):
        return {k: _number_field(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_for_strings(v) for v in value]
    return value


def _number_field(key: str, value):
    if key.endswith(_NUMERIC_SUFFIXES):
        if isinstance(value, str):
            return _number(value)
        if isinstance(value, list):  # [[price, count], ...] levels
            return [[_number(x) for x in level] if isinstance(level, list) else level for level in value]
    return numbers_for_strings(value)


def _number(text: str):
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() and "." not in text else float(number)
