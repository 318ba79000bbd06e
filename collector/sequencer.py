"""Kalshi's per-subscription sequence numbers: in order, duplicate, or gap. Pure.

`seq` is counted per subscription id (sid) and shared by every ticker of that
sid (PROTOCOL.md §5), so the state is keyed by (session, sid), never by
ticker. A new WebSocket session brings new sids and new counters.

* seq == last + 1 (or the first seq of a sid we have not seen numbered yet):
  in order; apply it.
* seq <= last: a duplicate (or a frame re-sent after a gap); drop it.
* seq > last + 1: a gap. Every ticker of the sid is affected; the counter
  moves on to `seq` so that one hole is reported once.

Replies (`ok`, `error`, `unsubscribed`) never go through this rule: whether
a reply's seq uses up a number is not settled by Kalshi's docs (PROTOCOL.md
§5), so `reply()` only remembers the number it carried. A data frame that
carries a remembered reply number proves the "peek" convention (the reply
announced the next data frame's number) for the whole session, and from then
on a skipped reply number is a real gap. A data frame that skips exactly
remembered reply numbers is what "consume" looks like (the reply took that
number), but on a "peek" session it is also what the loss of the very frame
the reply announced looks like. Until `CONSUME_PROOF` such skips have been
seen on the session with no proof of "peek", each is UNCERTAIN: the pipeline
then checks every book of the sid against a fresh snapshot, and a book that
differs is a hole from that frame on (a wrong book is never presented as
complete, a clean one is never presented as a hole). A peek session would need
as many losses, each exactly at a reply's number, to pass for "consume". From
then on the session is "consume" and a skipped reply number is in order.
Either way a reply can never make a data frame look like a duplicate.

The sequencer also remembers what each sid is (its channel and tickers), as
learned by the pipeline, so that a gap can name the tickers it affects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    IN_ORDER = "in_order"
    DUPLICATE = "duplicate"
    GAP = "gap"
    # Skipped exactly the numbers of replies while the convention is unknown:
    # in order if the replies used them up, a loss if they announced them.
    UNCERTAIN = "uncertain"


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    expected: int | None = None  # the seq that should have come (gaps, duplicates)
    received: int | None = None


@dataclass
class SidState:
    channel: str | None = None
    tickers: set[str] = field(default_factory=set)
    # None: no numbered frame yet. 0: subscription confirmed, so the first
    # frame must be seq 1.
    last_seq: int | None = None
    # Numbers carried by replies on this sid, not yet passed by data frames.
    reply_seqs: set[int] = field(default_factory=set)


_IN_ORDER = Outcome(Verdict.IN_ORDER)
# Skips of exactly a reply's number seen before "consume" is taken as proven
# (each of them is UNCERTAIN: its books are checked against fresh snapshots).
CONSUME_PROOF = 2


class Sequencer:
    """Sequence state for every (session, sid)."""

    def __init__(self) -> None:
        self._sids: dict[tuple[int, int], SidState] = {}
        # Sessions whose replies are proven to carry the next data seq ("peek").
        self._peek_sessions: set[int] = set()
        # Per session: data frames seen skipping exactly reply numbers ("consume"?).
        self._consume_votes: dict[int, int] = {}

    # -- bookkeeping ---------------------------------------------------------

    def state(self, session_id: int, sid: int) -> SidState:
        """The sid's state, created empty on first use."""
        key = (session_id, sid)
        state = self._sids.get(key)
        if state is None:
            state = self._sids[key] = SidState()
        return state

    def get(self, session_id: int, sid: int) -> SidState | None:
        return self._sids.get((session_id, sid))

    def subscribed(self, session_id: int, sid: int, channel: str) -> SidState:
        """A `subscribed` reply: the sid's numbering starts at 1.

        If the sid is already known (a subscribe that merged into an open
        subscription), its counter is left alone.
        """
        state = self.state(session_id, sid)
        state.channel = channel
        if state.last_seq is None:
            state.last_seq = 0
        return state

    def forget(self, session_id: int, sid: int) -> SidState | None:
        return self._sids.pop((session_id, sid), None)

    def forget_session(self, session_id: int) -> list[tuple[int, SidState]]:
        """Drop every sid of the session; returns them (sid, state)."""
        gone = [(sid, st) for (sess, sid), st in self._sids.items() if sess == session_id]
        for sid, _ in gone:
            del self._sids[(session_id, sid)]
        self._peek_sessions.discard(session_id)
        self._consume_votes.pop(session_id, None)
        return gone

    def reply_convention(self, session_id: int) -> str:
        """"peek" or "consume" once proven on this session, else "unknown"."""
        if session_id in self._peek_sessions:
            return "peek"
        return "consume" if self._consume_votes.get(session_id, 0) >= CONSUME_PROOF else "unknown"

    def reply(self, session_id: int, sid: int, seq: int) -> None:
        """A reply on `sid` carried `seq`: remember it, advance nothing."""
        state = self.state(session_id, sid)
        if seq in state.reply_seqs:
            # Two replies with one number and no data between: "peek".
            self._peek_sessions.add(session_id)
        last = state.last_seq
        if last is None or seq > last:
            state.reply_seqs.add(seq)

    def prove_peek(self, session_id: int) -> None:
        """A book checked after an UNCERTAIN skip was wrong: the skipped number
        was a lost frame, so the session's replies announce numbers ("peek")."""
        self._peek_sessions.add(session_id)
        self._consume_votes.pop(session_id, None)

    def sids(self, session_id: int) -> list[tuple[int, SidState]]:
        return [(sid, st) for (sess, sid), st in self._sids.items() if sess == session_id]

    # -- the rule ------------------------------------------------------------

    def check(self, session_id: int, sid: int, seq: int) -> Outcome:
        """Classify `seq` on (session, sid) and advance the counter."""
        state = self._sids.get((session_id, sid))
        if state is None:
            state = self.state(session_id, sid)
        last = state.last_seq
        if last is None or seq == last + 1:
            state.last_seq = seq
            if state.reply_seqs:
                self._passed_replies(session_id, state, seq)
            return _IN_ORDER
        if seq <= last:
            return Outcome(Verdict.DUPLICATE, last + 1, seq)
        state.last_seq = seq
        replies = state.reply_seqs
        if replies:
            skipped_only_replies = (
                session_id not in self._peek_sessions
                and seq - last - 1 <= len(replies)
                and all(n in replies for n in range(last + 1, seq))
            )
            self._passed_replies(session_id, state, seq)
            if skipped_only_replies:
                votes = self._consume_votes.get(session_id, 0)
                self._consume_votes[session_id] = votes + 1
                if votes >= CONSUME_PROOF:
                    return _IN_ORDER
                return Outcome(Verdict.UNCERTAIN, last + 1, seq)
        return Outcome(Verdict.GAP, last + 1, seq)

    def _passed_replies(self, session_id: int, state: SidState, seq: int) -> None:
        """Data reached `seq`: reply numbers up to it are settled."""
        if seq in state.reply_seqs:
            self._peek_sessions.add(session_id)  # a data frame used a reply's number
        state.reply_seqs = {n for n in state.reply_seqs if n > seq}
