"""Run the local Kalshi exchange simulator (REST + WebSocket on one host:port)."""

import asyncio
import dataclasses

from django.core.management.base import BaseCommand, CommandError

from simulator import FaultConfig, Simulator, SimulatorConfig
from simulator.config import REPLY_SEQ_MODES, realistic
from simulator.devkey import DEV_KEY_ID, accepted_keys
from simulator.runner import serve


class Command(BaseCommand):
    # Defaults come from SimulatorConfig and FaultConfig, so they are defined once;
    # --markets is the exception: a served exchange lists more than a test's.
    # Options that realistic() sets default to None: "the mode's value", so
    # realistic (the default) and --friendly each keep their own numbers.
    help = "Serve a simulated Kalshi exchange (REST under /trade-api/v2, WebSocket at /trade-api/ws/v2)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--port", type=int, default=8765, help="Port to listen on; 0 picks a free one (default 8765)."
        )
        parser.add_argument(
            "--seed", type=int, default=SimulatorConfig.seed,
            help="Seed: the same seed gives the same exchange (default %(default)s).",
        )
        parser.add_argument(
            "--markets", type=int, default=50, help="Markets listed at the start (default 50)."
        )
        parser.add_argument(
            "--rate",
            type=float,
            default=SimulatorConfig.rate,
            help="Exchange events (order adds, cancels, trades) per second (default %(default)s).",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="Multiplier on the pace of lifecycle changes: new markets, closes, settlements (default 1).",
        )
        parser.add_argument(
            "--legacy-format",
            action="store_true",
            help="Send the legacy integer-cents/integer-count format instead of fixed-point strings.",
        )
        parser.add_argument("--key-id", default=None, help="Key id accepted with --public-key.")
        parser.add_argument(
            "--public-key", default=None, help="PEM file of an accepted RSA public key (with --key-id)."
        )
        parser.add_argument(
            "--dev-key",
            default=None,
            help=f"PEM private key to accept as key id '{DEV_KEY_ID}'; "
            "created if missing (e.g. var/sim-dev-key.pem).",
        )
        parser.add_argument(
            "--public-rest",
            action="store_true",
            help="Accept unsigned REST requests to the public market-data endpoints "
            "(signed ones are still checked).",
        )
        parser.add_argument(
            "--friendly",
            action="store_true",
            help="Serve a friendly exchange: none of the hostility below (default: realistic, as Kalshi).",
        )
        parser.add_argument(
            "--rest-rate",
            type=float,
            default=None,
            help="REST tokens per second per client before 429; 0 for no limit "
            "(realistic 200, friendly 20).",
        )
        parser.add_argument(
            "--rest-read-tokens", type=int, default=None, help="Tokens a REST read costs (realistic 10, friendly 1)."
        )
        parser.add_argument(
            "--market-cap", type=int, default=None,
            help="Markets per subscription beyond which error 26; 0 for no cap (realistic 1000).",
        )
        parser.add_argument(
            "--command-rate", type=float, default=None,
            help="WebSocket commands per second per connection beyond which error 27; 0 for no limit (realistic 10).",
        )
        parser.add_argument(
            "--command-burst", type=int, default=None, help="Commands the pacing bucket holds (default 20)."
        )
        parser.add_argument(
            "--reply-seq", choices=REPLY_SEQ_MODES, default=None,
            help="Replies' seq: consume, peek, none, or mixed per connection (realistic mixed, friendly consume).",
        )
        parser.add_argument(
            "--add-markets-delay", type=float, default=None,
            help="Seconds before add_markets is answered (realistic 0.5).",
        )
        parser.add_argument(
            "--add-markets-refuse-rate", type=float, default=None,
            help="Share of add_markets refused with error 18 (realistic 0.05).",
        )
        parser.add_argument(
            "--outage-every", type=float, default=None,
            help="Seconds between maintenance outages; 0 for none (realistic 600).",
        )
        parser.add_argument(
            "--outage-duration", type=float, default=None, help="Seconds an outage lasts (default 30)."
        )
        parser.add_argument(
            "--auth-fail-seconds", type=float, default=None,
            help="WebSocket handshakes answer 401 for this long after the start (default 0).",
        )
        parser.add_argument(
            "--combo-markets", type=int, default=None,
            help="Multivariate markets listed by /markets unless mve_filter=exclude (realistic 200).",
        )
        parser.add_argument(
            "--historical-age",
            type=float,
            default=SimulatorConfig.historical_age_s,
            help="Seconds after which trades and settled markets move to /historical (default %(default)s).",
        )
        parser.add_argument(
            "--new-market-404-seconds",
            type=float,
            default=None,
            help="REST answers 404 for a new market for this long after its `created` message "
            "(realistic 3, friendly 0).",
        )
        parser.add_argument(
            "--queue-limit",
            type=int,
            default=SimulatorConfig.outbound_queue_limit,
            help="Frames queued for one client beyond which its subscription gets error 25 "
            "(default %(default)s).",
        )
        parser.add_argument(
            "--drop-rate",
            type=float,
            default=FaultConfig.drop_rate,
            help="Fault: share of channel messages not sent (seq gaps).",
        )
        parser.add_argument(
            "--duplicate-rate", type=float, default=FaultConfig.duplicate_rate, help="Fault: share of messages sent twice."
        )
        parser.add_argument(
            "--reorder-rate",
            type=float,
            default=FaultConfig.reorder_rate,
            help="Fault: share of messages held back and sent after the next one.",
        )
        parser.add_argument(
            "--malformed-rate",
            type=float,
            default=FaultConfig.malformed_rate,
            help="Fault: share of messages preceded by a malformed frame.",
        )
        parser.add_argument(
            "--numeric-rate",
            type=float,
            default=FaultConfig.numeric_rate,
            help="Fault: share of messages with JSON numbers where strings belong.",
        )
        parser.add_argument(
            "--terminal-error-rate",
            type=float,
            default=FaultConfig.terminal_error_rate,
            help="Fault: share of channel messages replaced by a terminal error that ends the subscription.",
        )
        parser.add_argument(
            "--terminal-error-code",
            type=int,
            choices=(10, 25),
            default=FaultConfig.terminal_error_code,
            help="Code of those terminal errors (default %(default)s).",
        )
        parser.add_argument(
            "--disconnect-every-frames",
            type=int,
            default=None,
            help="Fault: close each connection after this many frames.",
        )
        parser.add_argument(
            "--disconnect-every-seconds",
            type=float,
            default=None,
            help="Fault: close each connection after this many seconds.",
        )
        parser.add_argument("--silent-pings", action="store_true", help="Fault: send no heartbeat pings.")

    def handle(self, *args, **o):
        try:
            keys = accepted_keys(key_id=o["key_id"], public_key=o["public_key"], dev_key=o["dev_key"],
                                 write=self.stdout.write)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            config = build_config(o)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        sim = Simulator(config, accepted_keys=keys, record_events=False)
        asyncio.run(serve(sim, o["host"], o["port"], write=lambda line: self.stdout.write(line)))


# Options that override a field of the chosen mode when given (0 turns a limit off).
_MODE_OPTIONS = {
    "rest_rate": ("rest_rate_per_s", lambda v: v or None),
    "rest_read_tokens": ("rest_read_tokens", int),
    "market_cap": ("market_cap_per_subscription", lambda v: v or None),
    "command_rate": ("command_rate_per_s", lambda v: v or None),
    "command_burst": ("command_burst", int),
    "reply_seq": ("reply_seq", str),
    "add_markets_delay": ("add_markets_delay_s", float),
    "add_markets_refuse_rate": ("add_markets_refuse_rate", float),
    "outage_every": ("outage_every_s", lambda v: v or None),
    "outage_duration": ("outage_duration_s", float),
    "auth_fail_seconds": ("auth_fail_until_s", float),
    "new_market_404_seconds": ("new_market_rest_delay_s", float),
}


def build_config(o: dict) -> SimulatorConfig:
    """The served exchange: realistic() unless --friendly, then the options given."""
    base = SimulatorConfig() if o["friendly"] else realistic()
    engine = dataclasses.replace(
        base.engine,
        markets=o["markets"],
        lifecycle_probability=min(1.0, base.engine.lifecycle_probability * o["speed"]),
    )
    if o["combo_markets"] is not None:
        engine = dataclasses.replace(engine, combo_markets=o["combo_markets"])
    changes = {field: convert(o[name]) for name, (field, convert) in _MODE_OPTIONS.items() if o[name] is not None}
    return dataclasses.replace(
        base,
        seed=o["seed"],
        engine=engine,
        rate=o["rate"],
        wire_format="legacy" if o["legacy_format"] else "current",
        public_rest_unsigned=o["public_rest"],
        historical_age_s=o["historical_age"],
        outbound_queue_limit=o["queue_limit"],
        # Every fault option is named after its FaultConfig field.
        faults=FaultConfig(**{f.name: o[f.name] for f in dataclasses.fields(FaultConfig)}),
        **changes,
    )
