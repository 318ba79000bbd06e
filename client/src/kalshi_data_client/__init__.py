"""Python client of the Kalshi historical-data API (this project's `/api/v1/`).

    from kalshi_data_client import Client
    client = Client("http://127.0.0.1:8000")      # key from KALSHI_DATA_API_KEY
    trades = client.trades("KXHIGHNY-26NOV24-T60", "2026-11-24", "2026-11-25")
    df = trades.to_pandas()

See README.md for every method.
"""

from ._core import Retry
from ._download import Quote
from .aio import AsyncClient, AsyncPages, AsyncReplay
from .book import OrderBook
from .client import Client, Pages, Replay
from .errors import (
    APIError,
    AuthenticationError,
    DownloadError,
    InvalidParameter,
    KalshiDataError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    StreamError,
    TransportError,
)
from .frames import Batch

__all__ = [
    "APIError", "AsyncClient", "AsyncPages", "AsyncReplay", "AuthenticationError", "Batch",
    "Client", "DownloadError", "InvalidParameter", "KalshiDataError", "NotFound", "OrderBook",
    "Pages", "PermissionDenied", "Quote", "RateLimited", "Replay", "Retry", "ServerError",
    "StreamError", "TransportError",
]
