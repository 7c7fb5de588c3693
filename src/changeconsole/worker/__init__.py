"""The headless queue worker (never imports Textual).

``start_background(aws, config, ...)`` runs it in threads of the current process (console,
``local up --with-worker``); ``changeconsole worker`` runs it as a container process.
"""

from __future__ import annotations

from .options import WorkerOptions, assign_customers, parse_shard, shard_of
from .runtime import Worker, WorkerHandle, start_background

__all__ = [
    "Worker",
    "WorkerHandle",
    "WorkerOptions",
    "assign_customers",
    "parse_shard",
    "shard_of",
    "start_background",
]
