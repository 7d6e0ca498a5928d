"""The manifest written beside every backup, last: a backup exists only if its manifest does.

One typed model for writing and reading it. Reading is tolerant of fields a newer wpfarm may add
(they are kept, not refused); a manifest that is not valid JSON or lacks a field every backup has
is a `ManifestError` naming its key.
"""

from __future__ import annotations

import json
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from wpfarm_assets.core.errors import WpfarmError

MANIFEST_FORMAT = 1


class ManifestError(WpfarmError):
    """A manifest that cannot be read; the message names its key."""


class Record(BaseModel):
    """A manifest as stored: JSON, fields a newer wpfarm adds kept, written and read in one way."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=True), indent=2, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Self:
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise ManifestError(f"manifest {key} cannot be read: {exc}") from None


class Manifest(Record):

    format: int = MANIFEST_FORMAT
    site: str
    kind: str
    started_at: str
    finished_at: str
    plaintext_bytes: int  # what was backed up: the dump's bytes, or the files' total size
    stored_bytes: int  # what it cost the store: the object's bytes, or what the snapshot added
    duration_seconds: float
    compression: str
    source: str
    tools: dict[str, str] = {}
    # an object (every database dump, and files backups before the file store): its key and checksum
    object_key: str | None = None
    sha256: str | None = None
    key_fingerprint: str | None = None
    # a snapshot in the site's restic repository (files backups)
    repository: str | None = None
    snapshot_id: str | None = None
    files_new: int | None = None
    files_changed: int | None = None
    files_unmodified: int | None = None
    files_vanished: int | None = None  # went away while restic read them (a live site)
    skipped: list[dict] | None = None  # files over backup.max_file_bytes, left out: [{path, bytes}]
    # db
    database: str | None = None
    tables: dict[str, int] | None = None  # rows per table, counted before the dump
    tables_after: dict[str, int] | None = None  # rows after it, of the tables that changed while it ran (-1: dropped)
    dump_complete: bool | None = None
    gtid: str | None = None  # the GTID position the dump is consistent with (binary logging on)
    snapshot_at: str | None = None  # just before mariadb-dump started: its snapshot is no older
    gtid_domain: int | None = None  # the domain of the cluster's writes in that position
    database_node: str | None = None  # host:port of the server the dump came from
    node_state: str | None = None  # its state then (Synced, standalone)
    siteurl: str | None = None  # the WordPress site's address in the dump (its options table)
    home: str | None = None
    site_addresses: list[str] | None = None  # the addresses known to be the site's (identity.known_addresses)
    identity: str | None = None  # why the dump's address is not the site's, when it is not
    # files
    content_path: str | None = None
    files: int | None = None
    wp_config: bool | None = None

    @model_validator(mode="after")
    def _one_artifact(self) -> Manifest:
        if self.snapshot_id is None and (self.object_key is None or self.sha256 is None):
            raise ValueError("a manifest names either an object (object_key, sha256) or a snapshot (snapshot_id)")
        return self

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot_id is not None

    @property
    def artifact(self) -> str:
        """What the backup is, in words an operator can look up: the object key, or the snapshot."""
        return f"snapshot {self.snapshot_id[:8]} in {self.repository}" if self.is_snapshot else self.object_key



class BinlogManifest(Record):
    """One archived binary log: where it came from, the GTIDs and times it covers, its object."""

    format: int = MANIFEST_FORMAT
    node: str  # host:port it was read from
    file: str  # its name there (names differ per node; GTIDs do not)
    domain: int  # the cluster's GTID domain
    start_seq: int  # the domain's sequence number the file starts after (its GTID list event)
    end_seq: int  # the furthest sequence number in the domain at its end
    first_gtid: str | None = None  # of the cluster's domain; None: no transaction in it
    last_gtid: str | None = None
    transactions: int
    first_event_at: str  # the file's first and last event: it covers every write in between
    last_event_at: str
    archived_at: str
    object_key: str
    sha256: str  # of the stored (encrypted) object
    plaintext_bytes: int
    stored_bytes: int
    key_fingerprint: str
    tools: dict[str, str] = {}
