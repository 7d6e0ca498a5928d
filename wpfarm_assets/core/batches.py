"""Which runs cover a set of sites: ranges of consecutive `sites` partitions, at most N sites each."""

from __future__ import annotations


def site_runs(selected: list[str], order: list[str], size: int) -> list[tuple[str, str]]:
    """(first, last) partition ranges covering exactly `selected`, in partition `order`, <= size each."""
    wanted = set(selected)
    runs: list[tuple[str, str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted:
            current.append(key)
            if len(current) == size:
                runs.append((current[0], current[-1]))
                current = []
        elif current:
            runs.append((current[0], current[-1]))
            current = []
    if current:
        runs.append((current[0], current[-1]))
    return runs
