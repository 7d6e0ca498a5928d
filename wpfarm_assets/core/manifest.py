"""The manifest written beside every backup, last: a backup exists only if its manifest does.

One typed model for writing and reading it. Reading is tolerant of fields a newer wpfarm may add
(they are kept, not refused); a manifest that is not valid JSON or lacks a field every backup has
is a `ManifestError` naming its key.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError

from wpfarm_assets.core.errors import WpfarmError

MANIFEST_FORMAT = 1


class ManifestError(WpfarmError):
    """A manifest that cannot be read; the message names its key."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    format: int = MANIFEST_FORMAT
    site: str
    kind: str
    object_key: str
    started_at: str
    finished_at: str
    plaintext_bytes: int
    stored_bytes: int
    sha256: str
    duration_seconds: float
    compression: str
    key_fingerprint: str
    source: str
    tools: dict[str, str] = {}
    # db
    database: str | None = None
    tables: dict[str, int] | None = None
    dump_complete: bool | None = None
    # files
    content_path: str | None = None
    files: int | None = None
    wp_config: bool | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=True), indent=2, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Manifest:
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise ManifestError(f"manifest {key} cannot be read: {exc}") from None
