"""Which files a scan reads: git's view of the tree when there is one, else a filtered walk.

In a git work tree the files are ``git ls-files -co --exclude-standard`` (tracked and
untracked, minus what .gitignore excludes); elsewhere, with ``include_ignored``, or when
git lists nothing, an ``os.walk`` that skips ``DEFAULT_SKIP_DIRS``. Binary files (a NUL
byte early on), files over the size limit and symbolic links are not read.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_SKIP_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", "dist", "build"}
)
MAX_FILE_BYTES = 2 * 1024 * 1024
SNIFF_BYTES = 8192
# Known binary formats are skipped by name, saving a read; the NUL sniff catches the rest.
BINARY_SUFFIXES = frozenset(
    {
        *(".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".bmp", ".tiff", ".pdf"),
        *(".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".jar", ".whl", ".tar"),
        *(".woff", ".woff2", ".ttf", ".otf", ".mp3", ".mp4", ".mov", ".wav", ".ogg"),
        *(".so", ".dylib", ".dll", ".exe", ".o", ".a", ".pyc", ".class", ".sqlite", ".db"),
        *(".parquet", ".npy", ".pt", ".safetensors", ".onnx", ".pkl"),
    }
)
_GIT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that was not read, and why (``binary``, ``larger than 2 MiB``, ...)."""

    path: str
    reason: str


def candidate_files(root: Path, *, include_ignored: bool = False) -> list[str]:
    """The files under directory ``root`` to scan, as sorted POSIX paths relative to it."""
    listed = None if include_ignored else _git_ls_files(root, "-co", "--exclude-standard")
    # Nothing listed means ``root`` is itself ignored (say ``vendor/sdk``); scanning it was
    # asked for by name, so it is walked instead.
    if not listed:
        return _walk(root)
    return sorted(path for path in listed if not path.endswith("/"))


def ignored_env_files(root: Path) -> list[str]:
    """``.env`` files git ignores under ``root`` (those a default scan does not read)."""
    listed = _git_ls_files(root, "-oi", "--exclude-standard", "--directory")
    if listed is None:
        return []
    return sorted(
        path
        for path in listed
        if not path.endswith("/") and PurePosixPath(path).name.startswith(".env")
    )


def read_source(root: Path, relative: str, max_bytes: int = MAX_FILE_BYTES) -> str | Skipped | None:
    """The text of ``root/relative``, why it was skipped, or None for no regular file.

    git lists symbolic links, submodules and files deleted from the work tree; none of
    them is worth a line in the report.
    """
    path = root / relative
    if PurePosixPath(relative).suffix.lower() in BINARY_SUFFIXES:
        return Skipped(relative, "binary")
    try:
        if path.is_symlink() or not path.is_file():
            return None
        if path.stat().st_size > max_bytes:
            return Skipped(relative, f"larger than {_size(max_bytes)}")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return Skipped(relative, f"unreadable ({exc.strerror or exc.__class__.__name__})")
    if len(data) > max_bytes:  # grew since stat
        return Skipped(relative, f"larger than {_size(max_bytes)}")
    if b"\0" in data[:SNIFF_BYTES]:
        return Skipped(relative, "binary")
    return data.decode("utf-8", errors="replace")


def _git_ls_files(root: Path, *options: str) -> list[str] | None:
    """``git ls-files`` in ``root``; None when git is missing or ``root`` is no work tree."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_SECONDS,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", *options],
            capture_output=True,
            timeout=_GIT_TIMEOUT_SECONDS,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    paths = listed.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return list(dict.fromkeys(path for path in paths if path))


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in DEFAULT_SKIP_DIRS)
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in files)
    return sorted(found)


def _size(count: int) -> str:
    mebibyte = 1024 * 1024
    if count >= mebibyte:
        return f"{count / mebibyte:g} MiB"
    return f"{count / 1024:g} KiB" if count >= 1024 else f"{count} bytes"
