"""GnuPG. Workers hold only the public key; restore brings the secret one.

Keys are looked up with python-gnupg (listing, fingerprints, is the secret key there); the streams
themselves run the `gpg` binary in the backup and restore pipelines (argument lists from here)."""

from __future__ import annotations

import functools
import os
import subprocess
from datetime import datetime, timezone

import dagster as dg
import gnupg

from resources.ssh import child_env
from wpfarm_assets.core.errors import WpfarmError


class GPGError(WpfarmError):
    """A key is missing or gpg failed; the message names the key and the keyring."""


def _base(home: str | None) -> list[str]:
    argv = ["gpg", "--batch", "--no-tty", "--quiet"]
    return argv + (["--homedir", home] if home else [])


def encrypt_argv(recipient: str, home: str | None) -> list[str]:
    # --compress-algo none: the stream is already zstd; gpg's default zlib is ~6x slower for no gain.
    # --trust-model always: the recipient is pinned by fingerprint in the farm configuration.
    return _base(home) + ["--trust-model", "always", "--compress-algo", "none", "--encrypt", "--recipient", recipient]


def decrypt_argv(home: str | None) -> list[str]:
    return _base(home) + ["--decrypt"]


def _keys(home: str | None, recipient: str, secret: bool) -> list[dict]:
    if home and not os.path.isdir(home):  # python-gnupg would create an empty one
        raise GPGError(f"there is no keyring at {home}")
    try:
        gpg = gnupg.GPG(gnupghome=home, env=child_env())
    except (OSError, ValueError) as exc:  # no gpg binary, or a keyring folder that is not there
        raise GPGError(f"gpg cannot be used with the keyring at {_where(home)}: {exc}") from None
    return gpg.list_keys(secret=secret, keys=[recipient])


def _where(home: str | None) -> str:
    return home or os.environ.get("GNUPGHOME") or "~/.gnupg"


@functools.lru_cache(maxsize=16)  # failures are not cached: a key imported later is found
def key_fingerprint(recipient: str, home: str | None) -> str:
    """The fingerprint of the public encryption key for `recipient`, or a GPGError saying it is missing."""
    for key in _keys(home, recipient, secret=False):
        return key["fingerprint"]
    raise GPGError(f"public key {recipient!r} is not in the keyring at {_where(home)}")


def encryption_expiry(recipient: str, home: str | None) -> datetime | None:
    """When the farm key stops encrypting (UTC; None: never): the latest expiry among its usable
    encryption (sub)keys, and no later than its primary key's; of the best key when `recipient`
    matches several (an address). A GPGError when none can encrypt (revoked, no encryption key), or
    it is not in the keyring."""
    keys = _keys(home, recipient, secret=False)
    if not keys:
        raise GPGError(f"public key {recipient!r} is not in the keyring at {_where(home)}")
    found, problems = [], []
    for key in keys:
        if key["trust"] == "r":
            problems.append(f"the farm key {key['fingerprint']} is revoked")
            continue
        primary = _epoch(key["expires"])
        candidates = ([primary] if "e" in key["cap"].replace("E", "") else []) + [
            _epoch(sub["expires"]) for sub in (key.get("subkey_info") or {}).values()
            if "e" in sub["cap"] and sub["trust"] != "r"]
        if not candidates:
            problems.append(f"the farm key {key['fingerprint']} has no encryption key")
            continue
        subkey = None if None in candidates else max(candidates)
        found.append(min((t for t in (primary, subkey) if t is not None), default=None))
    if not found:
        raise GPGError("; ".join(problems) + ": backups cannot be encrypted to it")
    return None if None in found else max(found)


def _epoch(text: str) -> datetime | None:
    return datetime.fromtimestamp(int(text), timezone.utc) if text else None


def require_usable_key(recipient: str, home: str | None, now: datetime | None = None) -> None:
    """A GPGError that says why, first, when the farm key cannot encrypt now (expired, revoked,
    missing): before any dump starts, instead of gpg's "Unusable public key" after it."""
    expires = encryption_expiry(recipient, home)
    if expires is not None and expires <= (now or datetime.now(timezone.utc)):
        raise GPGError(f"the farm key {key_fingerprint(recipient, home)} expired on {expires:%Y-%m-%d %H:%M} UTC: "
                       "no backup can be encrypted to it; extend it (gpg --quick-set-expire) or set a new "
                       "backup.gpg_recipient")


def require_secret_key(fingerprint: str, home: str | None) -> None:
    if not _keys(home, fingerprint, secret=True):
        raise GPGError(
            f"the secret key for {fingerprint} is not in the keyring at {_where(home)}; "
            "restore needs the farm's private key (pass --gnupg-home)"
        )


@functools.cache
def gpg_version() -> str:
    out = subprocess.run(["gpg", "--version"], capture_output=True, text=True, env=child_env()).stdout
    return out.splitlines()[0] if out else "unknown"


class GPGResource(dg.ConfigurableResource):
    """The farm's backup key: recipient (fingerprint) and the keyring holding its public half."""

    recipient: str
    home: str | None = None

    def encrypt_argv(self) -> list[str]:
        """The gpg argv that encrypts to the farm key; a GPGError first if the key cannot encrypt now."""
        require_usable_key(self.recipient, self.home)
        return encrypt_argv(self.recipient, self.home)

    def fingerprint(self) -> str:
        return key_fingerprint(self.recipient, self.home)
