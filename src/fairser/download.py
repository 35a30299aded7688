"""HTTP fetching for the real corpus: checksums, resumable downloads and Git LFS pointers.

Only the standard library's urllib is used. A download goes to `<dest>.part` and is renamed to
`<dest>` only once its size and sha256 check out, so a killed download resumes (HTTP Range) from
the bytes already there and a finished file in the cache is always a verified one.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fairser.errors import InputError

CHUNK = 1 << 20
TIMEOUT_S = 60
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # plain http is accepted only here (tests, a local mirror)
LFS_POINTER = re.compile(
    r"\Aversion https://git-lfs\.github\.com/spec/v1\n(?:.*\n)*?oid sha256:([0-9a-f]{64})\n"
    r"(?:.*\n)*?size ([0-9]+)\n?", re.MULTILINE)


class NotFound(InputError):
    """The server answered 404 for a URL."""


def check_url(url: str, what: str) -> None:
    """Raise InputError naming `what` unless `url` is https, or http to 127.0.0.1 / localhost."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return
    raise InputError(f"{what}: {url!r} is not an https URL (plain http only to 127.0.0.1/localhost)")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) from a Git LFS pointer file, or None if `data` is not one.

    Pointer format (git-lfs spec v1): lines `version https://git-lfs.github.com/spec/v1`,
    `oid sha256:<64 hex>`, `size <bytes>`.
    """
    if len(data) > 1024:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = LFS_POINTER.match(text if text.endswith("\n") else text + "\n")
    return (m.group(1), int(m.group(2))) if m else None


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "fairser"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (scheme checked)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return None  # nothing past `start`: the .part file is already whole
        if err.code == 404:
            raise NotFound(f"{url}: not found (HTTP 404)") from None
        raise InputError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise InputError(f"{url}: {getattr(err, 'reason', err)}") from None


def fetch(url: str, dest: str | Path, *, sha256: str | None = None, size: int | None = None,
          progress=None) -> Path:
    """Download `url` to `dest`, resuming `<dest>.part`; verify `size` and `sha256` when given.

    An existing `dest` is trusted only if it matches `sha256` (when given). `progress` is an
    optional tqdm bar updated with the bytes received. A checksum or size mismatch deletes the
    partial file and raises InputError naming the file and the URL; a server error leaves the
    partial file for the next attempt.
    """
    check_url(url, "download URL")
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    if size is None or start < size:
        response = _open(url, start)
        if response is not None:
            with response:
                # 206: the server honoured Range; 200: it sent the whole file again.
                mode = "ab" if start and response.status == 206 else "wb"
                with open(part, mode) as f:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        f.write(block)
                        if progress is not None:
                            progress.update(len(block))
    if not part.is_file():
        part.touch()  # a zero-byte file, or a 416 answer with nothing before it
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        if got_size > size:
            part.unlink()
        raise InputError(f"{dest.name}: got {got_size} bytes of {size} from {url}")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise InputError(f"{dest.name}: sha256 {got} does not match the pinned {sha256} ({url})")
    os.replace(part, dest)
    return dest
