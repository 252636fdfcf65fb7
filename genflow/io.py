"""Atomic file and directory writes, hashing, provenance.

Every artifact genflow writes goes through here: written under a temporary
name in the same directory, then renamed, so a killed stage leaves either the
old artifact or the new one and never a half-written file that DVC would
version.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def owner_tag() -> str:
    """This process, as a writer that the next one can tell dead or alive: '<host>-<pid>'."""
    return f"{socket.gethostname()}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Clean up after a killed writer of ``path``: drop its temporary, put back its swapped-out old copy.

    Only leftovers of processes of this host that no longer exist: on shared storage another
    host's writer may be alive, and a live writer here is never touched."""
    host = socket.gethostname()
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
        match = re.fullmatch(rf"\.{re.escape(path.name)}\.(?:old-)?(.+)-(\d+)(?:\..*\.tmp)?", leftover.name)
        if match and match[1] == host and not pid_alive(int(match[2])):
            if leftover.name.startswith(f".{path.name}.old-") and not path.exists():
                os.replace(leftover, path)  # killed between its two renames: the old artifact goes back
            elif leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; artifacts get the usual umask-based mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory; swap it in place of ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        # mkdtemp creates 0700 and some writers (mkstemp, safetensors) 0600: artifacts get the
        # modes a plain write would give them
        for item in [tmp, *tmp.rglob("*")]:
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~_umask())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{owner_tag()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def package_digest() -> str:
    """sha256 over genflow's own source files (paths and bytes): two processes that agree on it
    run the same code, wherever each imported it from."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_revision(root: str | Path | None = None) -> str:
    """The git commit of the code, with '-dirty' when tracked files changed.

    Reads GENFLOW_CODE_REVISION first, so a run shipped to a cluster without
    its .git directory still records where it came from.
    """
    if env := os.environ.get("GENFLOW_CODE_REVISION"):
        return env
    root = Path(root or Path(__file__).resolve().parent.parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "genflow", "stages"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev
