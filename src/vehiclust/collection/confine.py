"""Reads stay inside the input: every file a collection names is checked before it is opened.

A file is refused, with a reason that starts with a word a program can match, when
- ``outside_input``: its path leaves the input root (``..`` in a bundle's path), or it is a
  link (or sits in a linked folder) that resolves outside the root, unless the user passed
  ``--follow-links`` (collections laid out as links to other storage);
- ``not_a_regular_file``: it is a FIFO, a device, a socket or a folder (a FIFO would block a
  read forever, ``/dev/zero`` would never end), links followed or not.
A missing file is not refused here: reading it reports "file not found" as before.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vehiclust.errors import InputError

OUTSIDE_INPUT = "outside_input"
NOT_A_REGULAR_FILE = "not_a_regular_file"


def input_root(path: Path | str) -> Path:
    """The folder every read must stay under: the input itself, resolved if it is a link."""
    return Path(path).resolve()


def is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def refusal(path: Path | str, reason: str) -> InputError:
    return InputError(path, f"refused: {reason}")


class Confinement:
    """Checks paths against one input root; caches resolved folders, so checking the 416k paths
    of a bundle costs one lstat per file and one realpath per folder."""

    def __init__(self, root: Path | str, follow_links: bool = False, max_table_bytes: int | None = None):
        self.root = str(input_root(root))
        self.follow_links = follow_links
        self.max_table_bytes = max_table_bytes
        self._real_dirs: dict[str, str] = {}

    def problem(self, path: Path | str) -> str:
        """'' when ``path`` may be read, else the reason it is refused."""
        lexical = os.path.normpath(os.path.join(self.root, path))
        if not is_under(lexical, self.root):
            return f"{OUTSIDE_INPUT}: the path leaves the input folder {self.root}"
        parent, name = os.path.split(lexical)
        real_parent = self._real_dirs.get(parent)
        if real_parent is None:
            real_parent = self._real_dirs[parent] = os.path.realpath(parent)
        candidate = os.path.join(real_parent, name)
        try:
            info = os.lstat(candidate)
        except OSError:
            return ""  # missing or unreadable: reading it reports why
        real = os.path.realpath(candidate) if stat.S_ISLNK(info.st_mode) else candidate
        if not self.follow_links and not is_under(real, self.root):
            return (f"{OUTSIDE_INPUT}: links to {real}, outside the input folder {self.root} "
                    f"(pass --follow-links to read linked storage)")
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return ""
        if not stat.S_ISREG(mode):
            return f"{NOT_A_REGULAR_FILE}: {file_kind(mode)}"
        return ""

    def require(self, path: Path) -> Path:
        """A file the input brings along (descriptors, metadata, archives): refused loudly."""
        reason = self.problem(path)
        if reason:
            raise refusal(path, reason)
        return path

    def require_table(self, path: Path) -> Path:
        """A CSV or text table of the input, read whole: also within the byte budget."""
        size = self.require(path).stat().st_size
        if self.max_table_bytes is not None and size > self.max_table_bytes:
            raise InputError(path, f"{size:,} bytes exceed the budget of {self.max_table_bytes:,} bytes "
                                   f"per table; raise it with --max-descriptor-bytes")
        return path
