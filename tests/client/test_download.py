"""Day files: quote, download with a cache, resume with a byte range, size checks."""

from datetime import timedelta

import httpx
import pytest

from kalshi_data_client import Client, DownloadError
from kalshi_data_client._download import finish_file, plan_file
from tests.recorded import HOT

from .conftest import DAY

pytestmark = pytest.mark.django_db


class Recording(httpx.HTTPTransport):
    """The real transport, remembering each request's path and Range header."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def handle_request(self, request):
        self.seen.append((request.url.path, request.headers.get("Range")))
        return super().handle_request(request)


@pytest.fixture
def recording(served):
    transport = Recording()
    with Client(served[1], api_key=served[2], transport=transport) as client:
        yield client, transport


def _files(transport):
    return [(path, rng) for path, rng in transport.seen if "/exports/" in path]


def test_quote_says_what_a_download_covers(api, record, tmp_path):
    quote = api.quote(DAY, DAY, types=["deltas", "trades"], markets=[HOT], dest=tmp_path)
    listed = api.exports(start_date=DAY, end_date=DAY).to_list()
    wanted = [f for f in listed if f["type"] in ("deltas", "trades")]
    assert (quote.files, quote.bytes) == (2, sum(f["bytes"] for f in wanted))
    assert quote.cached_bytes == 0 and quote.bytes_to_fetch == quote.bytes
    hot_day = api.coverage(HOT, DAY, DAY)[0]
    assert quote.rows == {"deltas": hot_day["deltas"], "trades": hot_day["trades"]}
    api.download(DAY, DAY, types=["deltas"], dest=tmp_path, progress=False)
    again = api.quote(DAY, DAY, types=["deltas", "trades"], dest=tmp_path)
    assert again.cached_files == 1 and again.bytes_to_fetch == next(
        f["bytes"] for f in wanted if f["type"] == "trades")


def test_download_fetches_once_then_uses_the_cache(recording, record, tmp_path, settings):
    client, transport = recording
    paths = client.download(DAY, DAY + timedelta(days=1), dest=tmp_path, progress=False)
    export_dir = settings.EXPORT_DIR
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == sorted(
        f"type={t}/date={DAY}/part-0.parquet" for t in ("deltas", "gaps", "trades"))
    for path in paths:
        assert path.read_bytes() == (export_dir / path.relative_to(tmp_path)).read_bytes()
    assert len(_files(transport)) == 3
    client.download(DAY, DAY, dest=tmp_path, progress=False)
    assert len(_files(transport)) == 3  # nothing fetched again
    assert not list(tmp_path.rglob("*.part"))


def test_an_interrupted_download_resumes_with_a_range(recording, record, tmp_path, settings):
    client, transport = recording
    entry = client.exports(type="deltas").first()
    whole = (settings.EXPORT_DIR / entry["path"]).read_bytes()
    plan = plan_file(entry, tmp_path)
    plan.part.parent.mkdir(parents=True)
    plan.part.write_bytes(whole[:1000])  # what an interrupted download left
    stale = plan.target.with_name(plan.target.name + ".123.part")
    stale.write_bytes(b"an older version's bytes")
    (path,) = client.download(DAY, DAY, types="deltas", dest=tmp_path, progress=False)
    assert path.read_bytes() == whole
    assert _files(transport) == [(f"/api/v1/exports/{entry['path']}", "bytes=1000-")]
    assert not stale.exists() and not plan.part.exists()


def test_a_file_of_the_wrong_size_is_refused(api, record, tmp_path):
    entry = api.exports(type="trades").first()
    plan = plan_file(entry, tmp_path)
    plan.part.parent.mkdir(parents=True)
    plan.part.write_bytes(b"short")
    with pytest.raises(DownloadError, match="5 bytes"):
        finish_file(plan)
    assert not plan.part.exists() and not plan.target.exists()
    with pytest.raises(DownloadError, match="outside"):
        plan_file({**entry, "path": "../../etc/passwd"}, tmp_path)
