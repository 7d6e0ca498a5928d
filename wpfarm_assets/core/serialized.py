"""A site's address rewritten inside its database values, PHP serialization aware (a clone at a new
address). WordPress keeps URLs inside PHP-serialized options, widgets and post meta, where a string
is `s:<length in bytes>:"…";`: a plain text replace changes the bytes and not the length, and
WordPress then silently drops the whole value. So a serialized value is decoded, each string in it
rewritten (itself decoded first when it is serialized data too: WordPress nests them), and encoded
again with the right lengths; anything else is rewritten as text. JSON-escaped (`https:\\/\\/old`)
and URL-encoded (`https%3A%2F%2Fold`) addresses are rewritten too. A value that looks serialized but
does not decode is left exactly as it was, and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_INT = re.compile(rb"([bi]):(-?\d+);")
_FLOAT = re.compile(rb"d:(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NAN|-?INF);")
_COUNTED = re.compile(rb'(s|E):(\d+):"')
_ARRAY = re.compile(rb"a:(\d+):\{")
_OBJECT = re.compile(rb'(O|C):(\d+):"')
_MEMBERS = re.compile(rb'":(\d+):\{')
_REF = re.compile(rb"[rR]:(\d+);")
LOOKS_SERIALIZED = re.compile(rb"^(?:[aOC]:\d+:|s:\d+:\"|[bi]:-?\d+;|d:|N;$)")
# The same, as MariaDB's REGEXP sees a column's value before PHP's trim(): serialized-looking values
# are rewritten here (decoded), everything else in the server (clone.py).
LOOKS_SERIALIZED_SQL = r'^[ \t\n\r\x0b\x00]*([aOC]:[0-9]+:|s:[0-9]+:"|[bi]:-?[0-9]+;|d:|N;[ \t\n\r\x0b\x00]*$)'


class NotSerialized(ValueError):
    pass


@dataclass(frozen=True)
class Addresses:
    """What to rewrite: every old host (`shop.example.com`), in any scheme, to the new address."""

    old_hosts: tuple[str, ...]
    new_url: str  # scheme and host (and port), no trailing slash: http://staging.shop.example.com

    def rules(self) -> list[tuple[bytes, bytes]]:
        """(pattern, replacement) pairs, case-insensitive, each a PCRE that Python's `re` reads the
        same way (MariaDB's REGEXP_REPLACE applies them to plain text in the server)."""
        new = self.new_url.rstrip("/").encode()
        new_host = new.split(b"//", 1)[1]
        json_new, encoded_new = new.replace(b"/", b"\\/"), new.replace(b":", b"%3A").replace(b"/", b"%2F")
        rules = []
        for host in sorted(self.old_hosts, key=len, reverse=True):
            h = re.escape(host.encode())
            end = rb"(?![0-9A-Za-z_.-])"  # the whole host: not shop.example.com.evil (ASCII: PCRE's \w is Unicode)
            rules += [
                (rb"https?://" + h + end, new),
                (rb"https?:\\/\\/" + h + end, json_new),
                (rb"https?%3A%2F%2F" + h + end, encoded_new),
                (rb"(?<![:0-9A-Za-z_\\%])//" + h + end, b"//" + new_host),  # scheme-relative
            ]
        return rules

    def rewriter(self) -> Callable[[bytes], bytes]:
        compiled = [(re.compile(pattern, re.I), replacement) for pattern, replacement in self.rules()]

        def rewrite(text: bytes) -> bytes:
            for pattern, replacement in compiled:
                text = pattern.sub(lambda _m, r=replacement: r, text)
            return text
        return rewrite


@dataclass
class Rewritten:
    value: bytes
    serialized: bool  # it was PHP-serialized data (and decoded)
    broken: bool  # it looked serialized but did not decode: left as it was


PHP_TRIM = b" \t\n\r\0\x0b"  # what PHP's trim() removes: WordPress trims a value before unserializing it


def _split(value: bytes) -> tuple[bytes, bytes, bytes]:
    core = value.strip(PHP_TRIM)
    start = value.find(core) if core else len(value)
    return value[:start], core, value[start + len(core):]


def rewrite_value(value: bytes, replace: Callable[[bytes], bytes]) -> Rewritten:
    """The value with every address rewritten (see the module's doc)."""
    lead, core, trail = _split(value)
    if LOOKS_SERIALIZED.match(core):
        try:
            return Rewritten(lead + _rewrite_serialized(core, replace) + trail, True, False)
        except NotSerialized:
            return Rewritten(value, False, True)
    return Rewritten(replace(value), False, False)


def _rewrite_serialized(data: bytes, replace: Callable[[bytes], bytes]) -> bytes:
    out: list[bytes] = []
    end = _value(data, 0, out, replace)
    if end != len(data):
        raise NotSerialized(f"trailing bytes at {end}")
    return b"".join(out)


def _string(text: bytes, replace: Callable[[bytes], bytes]) -> bytes:
    """A string inside serialized data: serialized data itself (decoded and rewritten), or text
    (its length is counted again: a text replace is safe here)."""
    lead, core, trail = _split(text)
    if LOOKS_SERIALIZED.match(core):
        try:
            return lead + _rewrite_serialized(core, replace) + trail
        except NotSerialized:
            pass
    return replace(text)


def _value(d: bytes, i: int, out: list[bytes], replace: Callable[[bytes], bytes]) -> int:
    """Rewrite the value starting at `i` into `out`; return where it ends."""
    if d.startswith(b"N;", i):
        out.append(b"N;")
        return i + 2
    if m := _INT.match(d, i) or _FLOAT.match(d, i) or _REF.match(d, i):
        out.append(m[0])
        return m.end()
    if m := _COUNTED.match(d, i):  # s:N:"…"; a string (N bytes), or E:N:"Class:Case"; an enum
        start = m.end()
        stop = start + int(m[2])
        if not d.startswith(b'";', stop):
            raise NotSerialized(f"string at {i} is not {m[2].decode()} bytes long")
        text = d[start:stop] if m[1] == b"E" else _string(d[start:stop], replace)
        out.append(b'%s:%d:"%s";' % (m[1], len(text), text))
        return stop + 2
    if m := _ARRAY.match(d, i):
        out.append(m[0])
        i = m.end()
        for _ in range(2 * int(m[1])):  # keys and values
            i = _value(d, i, out, replace)
        return _close(d, i, out)
    if m := _OBJECT.match(d, i):  # O:N:"Class":M:{members} or C:N:"Class":M:{M bytes of its own format}
        name_end = m.end() + int(m[2])
        members = _MEMBERS.match(d, name_end)
        if members is None:
            raise NotSerialized(f"object at {i} has no member count")
        out.append(d[i:members.end()])
        i = members.end()
        if m[1] == b"C":
            out.append(d[i:i + int(members[1])])  # the class's own serialization: not ours to rewrite
            return _close(d, i + int(members[1]), out)
        for _ in range(2 * int(members[1])):
            i = _value(d, i, out, replace)
        return _close(d, i, out)
    raise NotSerialized(f"no value at {i}")


def _close(d: bytes, i: int, out: list[bytes]) -> int:
    if not d.startswith(b"}", i):
        raise NotSerialized(f"no closing brace at {i}")
    out.append(b"}")
    return i + 1
