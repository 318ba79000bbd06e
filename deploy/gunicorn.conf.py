"""gunicorn settings for the API (deploy/systemd/kalshi-api.service).

    gunicorn -c deploy/gunicorn.conf.py kalshi_data.wsgi:application

Measured with bench/abuse_bench.py on 2 CPUs (docs/operations.md):

* gthread workers: a long replay stream keeps its thread while the worker's
  main thread keeps heartbeating (a sync worker streaming longer than
  `timeout` would be killed), and idle keep-alive connections cost no
  worker.
* workers = 2 x CPUs + 1, 4 threads each: small reads keep flowing while
  the heavy endpoints hold at most API_HEAVY_TOTAL threads (their
  concurrency slots, backtest_api/limits.py); a stalled client is dropped
  after API_STREAM_SEND_TIMEOUT.
* timeout 60 s: a worker whose main loop stalls that long is restarted.
* max_requests: workers are recycled now and then, so that a slow leak in
  any library cannot grow them for ever.
"""

import multiprocessing
import os
import shutil

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 60
graceful_timeout = 30
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
# The request line and headers are small in this API; refuse huge ones early.
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%({x-request-id}o)s"'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Each start counts from zero in the metrics' multi-process folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    """A recycled worker's live gauges leave the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
