"""Which worker shard (``worker --shard K/N``) serves a customer: the ``--shards N`` option of
``provision`` and ``customer add``."""

from __future__ import annotations

from collections.abc import Iterable

import click

from ..models import shard_of

shards_option = click.option(
    "--shards",
    type=click.IntRange(1, 1024),
    default=None,
    envvar="CHANGECONSOLE_WORKER_SHARDS",
    show_envvar=True,
    help="The deployment's worker shard count N: say which shard (--shard K/N) serves each customer.",
)


def shard_label(code: str, n: int) -> str:
    return f"{shard_of(code, n)}/{n}"


def shard_map(codes: Iterable[str], n: int) -> dict[str, str]:
    """Customer code => "K/N"."""
    return {code: shard_label(code, n) for code in sorted(codes)}
