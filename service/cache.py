"""The LRU cache the query hot path uses; it lives in `indexing.cache` (the sharded index
caches with it too) and is re-exported here for the service's modules."""

from indexing.cache import LRUCache

__all__ = ["LRUCache"]
