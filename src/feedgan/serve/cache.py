"""Rendered recommendation responses, reused until the user's stored history changes.

    cache = TopNCache(10_000)
    body = cache.get(key, version)          # None: compute, then cache.put(key, version, body)

A key is ``(model entry, user, n, exclude_seen)``: everything a response depends on besides the
user's stored history and the model's weights (a loaded model never changes). ``version`` is the
user's newest stored interaction (:meth:`Store.last_seq`, read *before* computing), so a write for
that user -- from this process or another one on the same store -- makes the next request compute
afresh, and a response computed from newer rows than its version is at worst recomputed, never
stale. Activating a model clears the cache. Least recently used entries go first past ``size``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

Key = tuple[str, str, int, bool]  # (model entry name, canonical user id, n, exclude_seen)


class TopNCache:
    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"the recommendation cache size must be 0 (off) or more entries, got {size}")
        self.size = size
        self.hits = self.misses = 0
        self._entries: OrderedDict[Key, tuple[int | None, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key, version: int | None) -> bytes | None:
        """The cached body for ``key`` if it was computed at ``version``, else None."""
        with self._lock:
            got = self._entries.get(key)
            if got is None or got[0] != version:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return got[1]

    def put(self, key: Key, version: int | None, body: bytes) -> None:
        """Keep ``body``, computed for ``key`` at ``version`` (each put counts as a miss)."""
        with self._lock:
            self.misses += 1
            if self.size == 0:
                return
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
