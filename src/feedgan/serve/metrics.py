"""Request counts and a latency histogram, exposed in the Prometheus text format (version 0.0.4)."""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # seconds


class Metrics:
    """``cache``: a :class:`~feedgan.serve.cache.TopNCache` whose hits and misses are exposed too."""

    def __init__(self, cache=None):
        self.cache = cache
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self.stored = 0  # interactions acknowledged since start

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._buckets[(method, route)][bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum[(method, route)] += seconds

    def add_stored(self, n: int) -> None:
        with self._lock:
            self.stored += n

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP feedgan_requests_total HTTP requests by method, route and status.",
                     "# TYPE feedgan_requests_total counter"]
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'feedgan_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += ["# HELP feedgan_request_seconds Request latency.", "# TYPE feedgan_request_seconds histogram"]
            for (method, route), counts in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                total = 0
                for le, c in zip([*map(str, BUCKETS), "+Inf"], counts):
                    total += c
                    lines.append(f'feedgan_request_seconds_bucket{{{labels},le="{le}"}} {total}')
                lines.append(f"feedgan_request_seconds_sum{{{labels}}} {self._sum[(method, route)]:.6f}")
                lines.append(f"feedgan_request_seconds_count{{{labels}}} {total}")
            lines += ["# HELP feedgan_interactions_stored_total Interactions acknowledged since start.",
                      "# TYPE feedgan_interactions_stored_total counter", f"feedgan_interactions_stored_total {self.stored}"]
        if self.cache is not None:
            for what in ("hits", "misses"):
                lines += [f"# HELP feedgan_recommendation_cache_{what}_total Recommendation responses "
                          + ("reused from the cache." if what == "hits" else "computed (not in the cache, or stale)."),
                          f"# TYPE feedgan_recommendation_cache_{what}_total counter",
                          f"feedgan_recommendation_cache_{what}_total {getattr(self.cache, what)}"]
        return "\n".join(lines) + "\n"
