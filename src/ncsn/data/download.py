"""Downloads with checksum verification and atomic writes (stdlib ``urllib`` only).

A file is fetched into a temporary file beside its destination, its MD5 is checked against the
publicly documented value, and only then is it renamed into place: an interrupted or corrupt
download never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ncsn.errors import UserError

_CHUNK = 1 << 20


def md5sum(path: str | Path) -> str:
    """Hex MD5 digest of a file (integrity check against published values, not security)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into the (already created, empty) file ``dest``."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                  leave=False) as bar:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))


def download_file(urls: Sequence[str], dest: str | Path, md5: str, *, place_hint: str) -> Path:
    """Download ``dest`` from the first of ``urls`` that answers with the right ``md5``.

    ``place_hint`` names the files and directory for the offline message
    ("you appear to be offline; place FILES in DIR").
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    errors: list[str] = []
    mismatch = False
    try:
        for url in urls:
            try:
                fetch(url, tmp)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                errors.append(f"{url}: {getattr(err, 'reason', err)}")
                continue
            got = md5sum(tmp)
            if got == md5:
                os.replace(tmp, dest)
                return dest
            mismatch = True
            errors.append(f"{url}: md5 {got}, expected {md5}")
        if mismatch:
            raise UserError(f"checksum mismatch for {dest.name} ({'; '.join(errors)}); nothing "
                            f"was kept. Try again later, or {place_hint}")
        raise UserError(f"could not download {dest.name} ({'; '.join(errors)}); "
                        f"you appear to be offline; {place_hint}")
    finally:
        tmp.unlink(missing_ok=True)
