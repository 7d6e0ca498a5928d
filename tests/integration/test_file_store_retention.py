"""Retention of files backups in the file store, on a controlled clock (benchmarks/retention_year.py
runs the whole year): exactly the planned snapshots stay, each restores to the tree it was taken
of, and the pruned repository is about the size of a fresh one holding only the kept points."""

from benchmarks.retention_year import year_of_backups


def test_five_weeks_of_daily_snapshots_under_retention(tmp_path):
    # Jan 1 to Feb 4: three days, two ISO weeks before them, January's newest (a month boundary) and,
    # the monthly rule being short, the oldest.
    report = year_of_backups(tmp_path, days=35, daily=3, weekly=2, monthly=2)
    print(report)
    assert report.kept == report.predicted == 7  # 3 + 2 + 2: the tiers never overlap
    assert report.snapshots == report.kept  # the repository holds exactly the kept manifests' snapshots
    assert report.restored_equal == report.kept
    # Pruned: what expired is gone (each day's 200 KB upload was unique), and what is left is what a
    # fresh repository of the kept points needs, give or take restic's packing.
    assert report.repository_bytes < report.added_bytes / 2
    assert report.repository_bytes < 1.25 * report.fresh_bytes
