"""Alert delivery through Prometheus Alertmanager, and backup metrics to a Prometheus Pushgateway.

Alertmanager does the grouping, silences and routing by severity (configs/alertmanager); wpfarm
only posts alerts (API v2) and resolves them. Metrics go to the Pushgateway so that Prometheus's
own rules (configs/prometheus) still fire if Dagster itself is down.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import dagster as dg

from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.manifest import Manifest


class AlertError(WpfarmError):
    """Alertmanager or the Pushgateway could not be reached; the message names which and why."""


def _request(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> bytes:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise AlertError(f"{method} {url} failed: {exc}") from None


class AlertmanagerResource(dg.ConfigurableResource):
    """Posts alerts to Alertmanager's API v2. Alerts stay firing for `hold_minutes` unless re-posted.
    Without a url, alerting is off (the checks still show in the UI) and every call does nothing."""

    url: str | None = None
    hold_minutes: int = 120

    def fire(self, labels: dict[str, str], annotations: dict[str, str]) -> None:
        if not self.url:
            return
        now = datetime.now(timezone.utc)
        self._post([{"labels": labels, "annotations": annotations, "startsAt": now.isoformat(),
                     "endsAt": (now + timedelta(minutes=self.hold_minutes)).isoformat()}])

    def resolve(self, labels: dict[str, str], summary: str | None = None) -> None:
        """End the alert now; `summary` says why in the resolved notification."""
        if not self.url:
            return
        self._post([{"labels": labels, "endsAt": datetime.now(timezone.utc).isoformat(),
                     **({"annotations": {"summary": summary}} if summary else {})}])

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """Labels of the active alerts named `alertname`."""
        if not self.url:
            return []
        query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"', "active": "true", "silenced": "true",
                                        "inhibited": "true"})
        alerts = json.loads(_request("GET", f"{self.url.rstrip('/')}/api/v2/alerts?{query}"))
        return [a["labels"] for a in alerts]

    def sync(self, alertname: str, alerts: list[tuple[dict[str, str], dict[str, str]]],
             why_resolved: Callable[[dict[str, str]], str | None] | None = None) -> dict[str, int]:
        """Fire every (labels, annotations) given; resolve every active `alertname` alert not among
        them (the problem went away, or its severity changed), with `why_resolved(labels)` as its
        summary when that says something."""
        wanted = {tuple(sorted({**labels, "alertname": alertname}.items())) for labels, _ in alerts}
        for labels, notes in alerts:
            self.fire({**labels, "alertname": alertname}, notes)
        resolved = 0
        for labels in self.firing(alertname):
            if tuple(sorted(labels.items())) not in wanted:
                self.resolve(labels, why_resolved(labels) if why_resolved else None)
                resolved += 1
        return {"firing": len(wanted), "resolved": resolved}

    def _post(self, alerts: list[dict]) -> None:
        _request("POST", f"{self.url.rstrip('/')}/api/v2/alerts", json.dumps(alerts).encode())


def metric_lines(metrics: dict[str, float], help_text: dict[str, str]) -> bytes:
    lines = []
    for name, value in metrics.items():
        lines += [f"# HELP {name} {help_text[name]}", f"# TYPE {name} gauge", f"{name} {value}"]
    return ("\n".join(lines) + "\n").encode()


BACKUP_METRICS = {
    "wpfarm_backup_last_success_timestamp_seconds": "Unix time the newest successful backup finished.",
    "wpfarm_backup_stored_bytes": "What the newest backup added to the store (a dump: its whole object; a snapshot: its new data).",
    "wpfarm_backup_plaintext_bytes": "Size of the newest backup before compression.",
    "wpfarm_backup_duration_seconds": "How long the newest backup took.",
}


DRILL_METRICS = {
    "wpfarm_drill_last_timestamp_seconds": "Unix time the site's last restore drill started.",
    "wpfarm_drill_passed": "1 if the site's last restore drill passed, 0 if it failed.",
    "wpfarm_drill_rto_seconds": "How long the last drill took to restore the site's database and files (its RTO).",
    "wpfarm_drill_restored_bytes": "Bytes the last drill restored (dump plus files).",
}


BINLOG_METRICS = {
    "wpfarm_binlog_archive_last_event_timestamp_seconds": "Unix time of the newest archived binary-log event.",
    "wpfarm_binlog_archive_age_seconds": "Seconds from the newest archived binary-log event to the archive run: "
                                         "the recovery point (RPO) then.",
}


OFFSITE_METRICS = {
    "wpfarm_offsite_last_success_timestamp_seconds": "Unix time the site's last off-site copy finished with every "
                                                     "backup of the primary on the copy.",
    "wpfarm_offsite_bytes_copied": "Bytes the site's last off-site copy sent.",
}


class PushgatewayResource(dg.ConfigurableResource):
    """Pushes each backup's metrics, grouped by site and kind (job="wpfarm_backup"), and each restore
    drill's, by site (job="wpfarm_drill"). No url: off."""

    url: str | None = None

    def push_drill(self, record: dict) -> None:
        if not self.url:
            return
        metrics = {
            "wpfarm_drill_last_timestamp_seconds": datetime.fromisoformat(record["started_at"]).timestamp(),
            "wpfarm_drill_passed": int(record["passed"]),
            "wpfarm_drill_rto_seconds": record["rto_seconds"],
            "wpfarm_drill_restored_bytes": record["bytes_restored"],
        }
        _request("PUT", f"{self.url.rstrip('/')}/metrics/job/wpfarm_drill/site/{record['site']}",
                 metric_lines(metrics, DRILL_METRICS), "text/plain; version=0.0.4")

    def push_binlog_archive(self, reach: datetime | None, age: float | None) -> None:
        """The archive's newest event (job="wpfarm_binlog"); the alert rule takes its age from it."""
        if not self.url or reach is None:
            return
        metrics = {"wpfarm_binlog_archive_last_event_timestamp_seconds": reach.timestamp(),
                   "wpfarm_binlog_archive_age_seconds": age}
        _request("PUT", f"{self.url.rstrip('/')}/metrics/job/wpfarm_binlog", metric_lines(metrics, BINLOG_METRICS),
                 "text/plain; version=0.0.4")

    def push_backup(self, manifest: Manifest) -> None:
        if not self.url:
            return
        finished = datetime.fromisoformat(manifest.finished_at).timestamp()
        metrics = {
            "wpfarm_backup_last_success_timestamp_seconds": finished,
            "wpfarm_backup_stored_bytes": manifest.stored_bytes,
            "wpfarm_backup_plaintext_bytes": manifest.plaintext_bytes,
            "wpfarm_backup_duration_seconds": manifest.duration_seconds,
        }
        group = f"job/wpfarm_backup/site/{manifest.site}/kind/{manifest.kind}"
        _request("PUT", f"{self.url.rstrip('/')}/metrics/{group}", metric_lines(metrics, BACKUP_METRICS),
                 "text/plain; version=0.0.4")

    def push_offsite(self, site: str, finished: datetime, bytes_copied: int) -> None:
        """A site's off-site copy (job="wpfarm_offsite"); the alert rule takes its age from it."""
        if not self.url:
            return
        metrics = {"wpfarm_offsite_last_success_timestamp_seconds": finished.timestamp(),
                   "wpfarm_offsite_bytes_copied": bytes_copied}
        _request("PUT", f"{self.url.rstrip('/')}/metrics/job/wpfarm_offsite/site/{site}",
                 metric_lines(metrics, OFFSITE_METRICS), "text/plain; version=0.0.4")

    def forget_site(self, site: str) -> None:
        """Delete a retired site's metric groups, so that Prometheus's staleness rule stops firing
        for a site that gets no backups on purpose."""
        if not self.url:
            return
        for group in (f"job/wpfarm_backup/site/{site}/kind/db", f"job/wpfarm_backup/site/{site}/kind/files",
                      f"job/wpfarm_drill/site/{site}", f"job/wpfarm_offsite/site/{site}"):
            _request("DELETE", f"{self.url.rstrip('/')}/metrics/{group}")
