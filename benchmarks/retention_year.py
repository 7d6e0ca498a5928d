"""A year of daily files backups of one site under retention, on a controlled clock: real restic
snapshots, `apply_retention` weekly and on the last day, then every kept snapshot restored and
compared with the tree it was taken of, and the pruned repository against a fresh one holding
only the kept points.

    .venv/bin/python -m benchmarks.retention_year            # 365 days, 14/26/12: 52 points

The site changes every day: a new post file (kept for good) and a replaced 200 KB upload (each
day's version expires with its snapshot, so pruning has something to give back).
tests/integration/test_file_store_retention.py runs the same with a shorter clock.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from resources.object_store import ObjectStoreResource
from resources.ssh import LocalRunner
from wpfarm_assets.backups.backup import back_up_files
from wpfarm_assets.backups.restore import list_backups, read_manifest, restore_files
from wpfarm_assets.backups.retention import apply_retention, plan_retention
from wpfarm_assets.backups.verify import tree_digest
from wpfarm_assets.core.config import Site
from wpfarm_assets.core.keys import repository_prefix, snapshot_ids
from wpfarm_assets.demo import DemoSize, create_site_content

START = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


@dataclass
class YearReport:
    backups: int
    kept: int
    predicted: int
    snapshots: int
    restored_equal: int
    repository_bytes: int
    fresh_bytes: int
    added_bytes: int  # what every backup added: the repository without forget and prune
    seconds: float


def stored(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def year_of_backups(workdir: Path, days: int = 365, daily: int = 14, weekly: int = 26, monthly: int = 12) -> YearReport:
    started = time.monotonic()
    site = Site(name="year.example", database="wp_year",
                content_path=str(create_site_content(workdir / "site", "year.example", DemoSize(uploads=4), seed=1)))
    resource = ObjectStoreResource(target=f"file://{workdir / 'backups'}", restic_password="year-of-backups")
    store, repository = resource.store(), resource.repository(site.name)
    content = Path(site.content_path)
    trees: dict[datetime, tuple[str, int]] = {}
    predicted: set[datetime] = set()
    added = 0
    for day in range(days):
        now = START + timedelta(days=day)
        rng = random.Random(day)
        (content / "uploads" / "posts").mkdir(parents=True, exist_ok=True)
        (content / "uploads" / "posts" / f"post-{day}.html").write_text(f"<p>day {day} {rng.random()}</p>")
        (content / "uploads" / "daily.bin").write_bytes(rng.randbytes(200_000))
        backup = back_up_files(site, LocalRunner(), store, repository, now=now)
        key, added = backup.key, added + backup.manifest.stored_bytes
        trees[key.time] = tree_digest(content.parent)
        predicted.add(key.time)
        if day % 7 == 6 or day == days - 1:
            apply_retention(store, site.name, now, daily=daily, weekly=weekly, monthly=monthly, repository=repository)
            predicted = set(plan_retention(predicted, daily, weekly, monthly))

    kept = list_backups(store, site.name, "files")
    manifests = [read_manifest(store, k) for k in kept]
    listed = snapshot_ids((o.key for o in store.list(repository_prefix(site.name))), site.name)
    equal = 0
    fresh = ObjectStoreResource(target=f"file://{workdir / 'fresh'}", restic_password="fresh")
    fresh_store, fresh_repository = fresh.store(), fresh.repository(site.name)
    for key in kept:  # restore each kept point; back it up again, oldest first, into a fresh repository
        target = workdir / "restored"
        shutil.rmtree(target, ignore_errors=True)
        restore_files(site, store, LocalRunner(), None, to_path=str(target), at=key.stamp, repository=repository)
        equal += tree_digest(target) == trees[key.time]
        replay = Site(name=site.name, database=site.database, content_path=str(target / "wp-content"))
        back_up_files(replay, LocalRunner(), fresh_store, fresh_repository, now=key.time)
    return YearReport(
        backups=days, kept=len(kept), predicted=len(predicted),
        snapshots=len(listed & {m.snapshot_id for m in manifests}) if len(listed) == len(manifests) else -len(listed),
        restored_equal=equal,
        repository_bytes=stored(workdir / "backups" / repository_prefix(site.name)),
        fresh_bytes=stored(workdir / "fresh" / repository_prefix(site.name)),
        added_bytes=added, seconds=time.monotonic() - started,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--workdir", default="/var/tmp/wpfarm-bench-year")
    args = p.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    r = year_of_backups(workdir, args.days)
    print(f"{r.backups} daily backups in {r.seconds:.0f} s; kept {r.kept} (plan: {r.predicted}); snapshots in the "
          f"repository exactly those of the kept manifests: {r.snapshots == r.kept}; restored equal to their day's "
          f"tree: {r.restored_equal}/{r.kept}")
    print(f"repository after retention {r.repository_bytes / 1e6:.2f} MB; a fresh repository of the kept points "
          f"{r.fresh_bytes / 1e6:.2f} MB (ratio {r.repository_bytes / r.fresh_bytes:.2f}); all {r.backups} backups "
          f"added {r.added_bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
