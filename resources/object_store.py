"""Backup targets behind one interface: S3-compatible storage (boto3) and a local directory.

`put_stream` consumes an iterator of chunks and holds at most one part in memory. It calls
`before_commit` once the stream is exhausted and only makes the object visible if that returns:
a failed dump aborts the multipart upload (or removes the partial file) instead of leaving a
small, complete-looking object behind.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import dagster as dg

from resources.restic import Repository, repository_url, site_password
from resources.ssh import LocalRunner, Runner
from wpfarm_assets.core.errors import WpfarmError
from wpfarm_assets.core.keys import repository_prefix

PART_SIZE = 16 << 20


class StoreError(WpfarmError):
    """The backup target failed or could not be reached; the message names it."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class StoredVersion:
    """One version of an object in a versioned bucket; a delete marker has `deleted` set."""

    key: str
    version_id: str
    size: int
    modified: datetime
    deleted: bool = False
    latest: bool = False  # the key's current version (S3's IsLatest)


@dataclass(frozen=True)
class UnfinishedUpload:
    key: str
    upload_id: str
    initiated: datetime


class Store(Protocol):
    url: str

    def put_stream(self, key: str, chunks: Iterable[bytes], before_commit: Callable[[], None]) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open(self, key: str) -> BinaryIO: ...
    def list(self, prefix: str) -> Iterator[StoredObject]: ...
    def delete(self, keys: list[str]) -> None: ...
    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]: ...
    def abort_upload(self, upload: UnfinishedUpload) -> None: ...


def exists(store: Store, key: str) -> bool:
    """Whether the store holds an object at exactly `key` (a listing of that prefix: no error for a missing one)."""
    return any(obj.key == key for obj in store.list(key))


class LocalStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError(f"key {key!r} escapes {self.url}")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes], before_commit: Callable[[], None]) -> None:
        path = self._path(key)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            before_commit()
            os.replace(partial, path)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.url}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, [data], lambda: None)

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {key} from {self.url}: {exc.strerror}") from None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        base = self.root / prefix.rstrip("/") if prefix.endswith("/") or not prefix else (self.root / prefix).parent
        if not base.is_dir():
            return
        for dirpath, dirs, files in os.walk(base):
            here = Path(dirpath).relative_to(self.root).as_posix()
            folder = "" if here == "." else f"{here}/"
            # Only into folders that can hold a key with the prefix (not a whole repository for one file).
            dirs[:] = [d for d in dirs if f"{folder}{d}/".startswith(prefix) or prefix.startswith(f"{folder}{d}/")]
            for name in sorted(files):
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    yield StoredObject(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        return []  # an interrupted local write is a `.partial-*` file: it shows in `list` without a manifest

    def abort_upload(self, upload: UnfinishedUpload) -> None:
        pass  # nothing is ever unfinished here


# Errors that say the endpoint itself is not answering (as opposed to a refused request).
UNREACHABLE = (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.EndpointConnectionError,
               botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError)
UNREACHABLE_FOR = 60.0  # seconds after such an error in which every call fails at once
# When each endpoint last did not answer, and how: shared by every store of the process (a run's
# database and files steps each open their own).
_unreachable: dict[str, tuple[float, str]] = {}


class RequestDeadline(botocore.exceptions.ReadTimeoutError):
    """A request whose answer did not end in time, though bytes kept coming (a trickling endpoint:
    the socket's read timeout never fires)."""

    fmt = 'Request to "{endpoint_url}" did not finish within {seconds:g} s (the endpoint answers too slowly)'


class _Breaker:
    """The boto3 client, failing fast while its store is known to be unreachable, and giving every
    request a total deadline: `call` runs it in a daemon thread and gives up on it after `deadline`
    seconds (the thread is left to its socket's own timeouts; nothing waits for it)."""

    def __init__(self, client, store: "S3Store", deadline: float):
        self.client, self._store, self.deadline = client, store, deadline

    def _check(self) -> None:
        if (down := self._store.unreachable) and time.monotonic() - down[0] < UNREACHABLE_FOR:
            raise botocore.exceptions.EndpointConnectionError(
                endpoint_url=f"{self.client.meta.endpoint_url} (it did not answer {time.monotonic() - down[0]:.0f} s "
                             f"ago: {down[1]})")

    def call(self, request: Callable[[], object], check: bool = True):
        """`request()` (one or more client calls, reading what they return) within the deadline;
        without `check`, also while the endpoint is known to be unreachable (cleaning up)."""
        if check:
            self._check()
        outcome: dict = {}
        done = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = request()
            except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller's thread
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, daemon=True, name="s3-request").start()
        try:
            if not done.wait(self.deadline):
                raise RequestDeadline(endpoint_url=self.client.meta.endpoint_url, seconds=self.deadline)
            if "error" in outcome:
                raise outcome["error"]
        except UNREACHABLE as exc:
            self._store.unreachable = (time.monotonic(), str(exc))
            raise
        return outcome["value"]

    def __getattr__(self, name: str):
        call = getattr(self.client, name)
        if not callable(call):
            return call
        if name == "get_paginator":
            return call  # its pages are fetched with `call`
        # Cleaning up is always tried (an upload left behind costs storage), within the deadline too.
        check = name != "abort_multipart_upload"
        return lambda *args, **kwargs: self.call(lambda: call(*args, **kwargs), check)


class S3Store:
    """S3 (DigitalOcean Spaces). An endpoint that does not answer is remembered for UNREACHABLE_FOR
    seconds: the other sites of the run fail at once naming it, instead of each waiting out its
    own timeouts and retries (an outage fails a farm's backups in minutes, not hours)."""

    def __init__(self, bucket: str, prefix: str, client, deadline: float = 300.0, lock_days: int | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self._s3 = _Breaker(client, self, deadline)
        self._endpoint = str(client.meta.endpoint_url)
        # With lock_days, every object written gets an S3 Object Lock COMPLIANCE retention of that
        # many days (the off-site copy): no key, not even the bucket owner's, deletes it before then.
        self.lock_days = lock_days

    def _lock(self) -> dict:
        if not self.lock_days:
            return {}
        until = datetime.now(timezone.utc) + timedelta(days=self.lock_days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    @property
    def unreachable(self) -> tuple[float, str] | None:
        return _unreachable.get(self._endpoint)

    @unreachable.setter
    def unreachable(self, value: tuple[float, str]) -> None:
        _unreachable[self._endpoint] = value

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        if isinstance(exc, UNREACHABLE) and not (self.unreachable and
                                                 time.monotonic() - self.unreachable[0] < UNREACHABLE_FOR):
            self.unreachable = (time.monotonic(), str(exc))
        return StoreError(f"cannot {action} {key} at {self.url}: {exc}")



    def put_stream(self, key: str, chunks: Iterable[bytes], before_commit: Callable[[], None]) -> None:
        full = self.prefix + key
        buffer = bytearray()
        parts: list[dict] = []
        upload_id = None
        try:
            for chunk in chunks:
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=full,
                                                                     **self._lock())["UploadId"]
                    parts.append(self._upload_part(full, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            before_commit()
            if upload_id is None:
                self._s3.put_object(Bucket=self.bucket, Key=full, Body=bytes(buffer), **self._lock())
                return
            if buffer:
                parts.append(self._upload_part(full, upload_id, len(parts) + 1, bytes(buffer)))
            done = self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            upload_id = None
            if self.lock_days:  # set again on the version itself: not every store applies the upload's
                self._lock_version(full, done.get("VersionId"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("upload", key, exc) from None
        finally:
            if upload_id is not None:
                try:
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    pass  # the retention asset cleans unfinished uploads

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict:
        response = self._s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **self._lock())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("upload", key, exc) from None

    def get_bytes(self, key: str) -> bytes:
        try:  # the body is read within the request's deadline too
            return self._s3.call(lambda: self._s3.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
                                 .read())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("read", key, exc) from None

    def _pages(self, operation: str, **kwargs) -> Iterator[dict]:
        """A paginated listing, each page fetched within the request deadline."""
        pages = iter(self._s3.get_paginator(operation).paginate(Bucket=self.bucket, **kwargs))
        while (page := self._s3.call(lambda: next(pages, None))) is not None:
            yield page

    def open(self, key: str) -> BinaryIO:
        try:
            return _Body(self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"], self, key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("read", key, exc) from None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        try:
            for page in self._pages("list_objects_v2", Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield StoredObject(obj["Key"][len(self.prefix):], obj["Size"], obj["LastModified"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("list", prefix, exc) from None

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.prefix + k} for k in keys[start : start + 1000]]
            try:
                response = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise self._fail("delete", batch[0]["Key"], exc) from None
            if errors := response.get("Errors"):  # HTTP 200 with keys it did not delete
                first = errors[0]
                raise StoreError(f"cannot delete {len(errors)} objects at {self.url}, "
                                 f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}")


    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        try:
            return [
                UnfinishedUpload(u["Key"][len(self.prefix):], u["UploadId"], u["Initiated"])
                for page in self._pages("list_multipart_uploads", Prefix=self.prefix + prefix)
                for u in page.get("Uploads", [])
            ]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("list uploads under", prefix, exc) from None

    def abort_upload(self, upload: UnfinishedUpload) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.prefix + upload.key, UploadId=upload.upload_id)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("abort upload", upload.key, exc) from None


    def _lock_version(self, full_key: str, version_id: str | None = None) -> None:
        lock = self._lock()
        self._s3.put_object_retention(Bucket=self.bucket, Key=full_key, **({"VersionId": version_id} if version_id else {}),
                                      Retention={"Mode": lock["ObjectLockMode"],
                                                 "RetainUntilDate": lock["ObjectLockRetainUntilDate"]})

    def lock_again(self, key: str) -> None:
        """Lock the current version of `key` for lock_days from now (COMPLIANCE only ever lengthens)."""
        try:
            self._lock_version(self.prefix + key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("lock", key, exc) from None

    def lock_problem(self) -> str | None:
        """Why the bucket cannot hold immutable copies (no S3 Object Lock), or None."""
        try:
            found = self._s3.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise self._fail("read the object lock configuration of", self.bucket, exc) from None
            found = {}
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail("read the object lock configuration of", self.bucket, exc) from None
        if found.get("ObjectLockEnabled") != "Enabled":
            return (f"bucket {self.bucket} has no S3 Object Lock: every copy there can be deleted by whoever holds "
                    "its keys (object lock can only be enabled when a bucket is created)")
        return None

    def lock_of(self, key: str) -> tuple[str | None, datetime | None]:
        """The object lock mode and retain-until date of the current version of `key`."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("read the lock of", key, exc) from None
        return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")

    def versions(self, prefix: str) -> Iterator[StoredVersion]:
        """Every version of every object under `prefix`, delete markers included (a versioned bucket)."""
        try:
            for page in self._pages("list_object_versions", Prefix=self.prefix + prefix):
                for v in page.get("Versions", []):
                    yield StoredVersion(v["Key"][len(self.prefix):], v["VersionId"], v["Size"], v["LastModified"],
                                        latest=v.get("IsLatest", False))
                for m in page.get("DeleteMarkers", []):
                    yield StoredVersion(m["Key"][len(self.prefix):], m["VersionId"], 0, m["LastModified"], True,
                                        m.get("IsLatest", False))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("list versions under", prefix, exc) from None

    def open_version(self, key: str, version_id: str) -> BinaryIO:
        try:
            return _Body(self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key, VersionId=version_id)["Body"],
                         self, key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail("read", f"{key} (version {version_id})", exc) from None


def _newer(a: StoredVersion, b: StoredVersion) -> bool:
    """Whether version `a` of a key was written after `b`. Times are whole seconds: within one, the
    current version is the newer, else a delete marker (a key is written, then deleted), else the
    one listed first (S3 lists a key's versions newest first)."""
    return a.modified > b.modified or (a.modified == b.modified and (a.latest, a.deleted) > (b.latest, b.deleted))


class AsOfStore:
    """A versioned bucket as it was at `as_of`, read-only: for each key the newest version written
    at or before then; keys whose newest such version is a delete marker, and everything written
    later, are not there. What was deleted or overwritten after `as_of` does not matter."""

    def __init__(self, store: S3Store, as_of: datetime):
        self._store, self.as_of = store, as_of
        self.url = f"{store.url} as of {as_of:%Y-%m-%d %H:%M:%S} UTC"
        self._chosen: dict[str, dict[str, StoredVersion]] = {}  # listed prefix -> key -> version

    def _versions(self, prefix: str) -> dict[str, StoredVersion]:
        for listed, chosen in self._chosen.items():
            if prefix.startswith(listed):
                return {k: v for k, v in chosen.items() if k.startswith(prefix)}
        newest: dict[str, StoredVersion] = {}
        for v in self._store.versions(prefix):
            if v.modified <= self.as_of and (v.key not in newest or _newer(v, newest[v.key])):
                newest[v.key] = v
        self._chosen[prefix] = chosen = {k: v for k, v in newest.items() if not v.deleted}
        return chosen

    def _version(self, key: str) -> StoredVersion:
        found = self._versions(key).get(key)
        if found is None:
            raise StoreError(f"cannot read {key} from {self.url}: it did not exist then")
        return found

    def list(self, prefix: str) -> Iterator[StoredObject]:
        for key, v in sorted(self._versions(prefix).items()):
            yield StoredObject(key, v.size, v.modified)

    def open(self, key: str) -> BinaryIO:
        return self._store.open_version(key, self._version(key).version_id)

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def _read_only(self, *args, **kwargs):
        raise StoreError(f"{self.url} is read-only")

    put_stream = put_bytes = delete = abort_upload = _read_only

    def unfinished_uploads(self, prefix: str) -> list[UnfinishedUpload]:
        return []


class _Body:
    """An object being read: each read within the request deadline, errors as StoreError."""

    def __init__(self, body, store: S3Store, key: str):
        self._body, self._store, self._key = body, store, key

    def read(self, size: int = -1) -> bytes:
        try:
            return self._store._s3.call(lambda: self._body.read(size if size >= 0 else None))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._store._fail("read", self._key, exc) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a read left behind may still hold it
            self._body.close()

    def __enter__(self) -> "_Body":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(
    target: str,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    timeout: float = 60,
    deadline: float = 300,
    lock_days: int | None = None,
) -> Store:
    """`file:///path` or `s3://bucket/prefix`; S3 keys fall back to boto3's own credential chain.
    `timeout`: seconds an S3 request may wait for an answer (connect: at most 5), 3 attempts;
    `deadline`: seconds a request may take in all, retries included (backup.stall_timeout)."""
    parsed = urlparse(target)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme == "s3":
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=botocore.config.Config(
                connect_timeout=min(5.0, timeout), read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        return S3Store(parsed.netloc, parsed.path, client, deadline, lock_days)
    raise StoreError(f"unsupported backup target {target!r}")


class ObjectStoreResource(dg.ConfigurableResource):
    """Where backups live. Keys come from dg.EnvVar (Spaces keys), never from the configuration file."""

    target: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    timeout: float = 60  # min(60, backup.stall_timeout)
    restic_password: str | None = None  # the farm's file store password (WPFARM_RESTIC_PASSWORD)
    stall_timeout: float = 300.0  # backup.stall_timeout, for restic
    lock_days: int | None = None  # the off-site copy: every object written gets a COMPLIANCE lock this long
    keys_from: str = "SPACES"  # the keys' variables: <keys_from>_ACCESS_KEY_ID, <keys_from>_SECRET_ACCESS_KEY

    def store(self) -> Store:
        """The target, opened. One of its two keys set without the other is an error naming the missing
        variable (boto3 would fail later, with a traceback); the off-site copy needs its own keys."""
        names = (f"{self.keys_from}_ACCESS_KEY_ID", f"{self.keys_from}_SECRET_ACCESS_KEY")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            missing, given = names if not self.access_key_id else names[::-1]
            raise StoreError(f"{missing} is not set, but {given} is: set both (or neither, for {self.target})")
        if self.lock_days and not self.access_key_id:
            raise StoreError(f"{names[0]} and {names[1]} are not set: the off-site copy {self.target} has keys of "
                             "its own, never the primary target's")
        return open_store(self.target, self.endpoint_url, self.region, self.access_key_id, self.secret_access_key,
                          self.timeout, self.stall_timeout, self.lock_days)

    def repository(self, site: str, runner: Runner | None = None) -> Repository:
        """The site's restic repository on this target, used through `runner` (default: this machine).
        Without WPFARM_RESTIC_PASSWORD, using it fails saying so (a farm with older backups only can
        still restore them)."""
        url = repository_url(self.target, self.endpoint_url, repository_prefix(site))
        password = site_password(self.restic_password, site) if self.restic_password else None
        key_id, secret, token = self.access_key_id, self.secret_access_key, None
        if url.startswith("s3:") and not key_id:  # the store's fallback: boto3's own credential chain
            found = boto3.Session().get_credentials()
            key_id, secret, token = (found.access_key, found.secret_key, found.token) if found else (None, None, None)
        return Repository(runner or LocalRunner(), url, password, region=self.region, access_key_id=key_id,
                          secret_access_key=secret, session_token=token, stall_timeout=self.stall_timeout)
