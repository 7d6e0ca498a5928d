"""Which runs cover a set of sites: ranges of consecutive `sites` partitions, at most N sites each."""

from __future__ import annotations


def site_runs(selected: list[str], order: list[str], size: int) -> list[list[str]]:
    """Runs of consecutive partitions (in partition `order`) covering exactly `selected`, <= size each."""
    wanted = set(selected)
    runs: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted:
            current.append(key)
            if len(current) == size:
                runs.append(current)
                current = []
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs
