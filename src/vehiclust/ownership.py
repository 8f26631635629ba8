"""Which files of a run folder are vehiclust's, and who is writing the folder now.

``--out`` is a folder the user already has. vehiclust marks a run folder as its own with
``DIR/.vehiclust/manifest.txt``, a log of every file it wrote (one line per file, appended as
each is renamed into place), and
- refuses an existing non-empty folder without that mark, unless ``--force``; even then it
  replaces and removes only the files in its manifest, and stops with a message when a file
  it is about to write exists and is not one of them;
- refuses an ``--out`` equal to or inside the input folder (the next run would read its own
  output, or overwrite the input);
- holds ``DIR/.vehiclust/lock`` (``flock``, released by the kernel even when the process is
  killed) for the duration of a run, so a second run on the same folder stops at once and
  names the process that holds it;
- removes, when it next claims the folder, temporary files a killed run left behind (they are
  logged before they are written, so only vehiclust's own are removed), and compacts the log.

The write helpers in ``runfolder`` call :func:`before_write` / :func:`written`; a folder
without the mark (a library user writing somewhere else) is written as before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vehiclust.errors import VehiclustError

STATE_DIR = ".vehiclust"
MANIFEST = "manifest.txt"
LOCK = "lock"
WRITTEN, TEMPORARY, REMOVED = "w", "t", "d"
SEARCH_DEPTH = 4  # thumbs/<n>/<row>.jpg and descriptors/.parts/<name>/part.npy sit this deep

_roots: dict[str, str | None] = {}  # folder -> run root above it (None: not in a run folder)
_manifests: dict[str, Manifest] = {}
_held: dict[str, tuple[int, int]] = {}  # root -> (lock fd, claims by this process)
_interrupted: dict[str, str] = {}  # root -> the holder of a run that ended without releasing it
RELEASED = "released"  # the lock file's first word once its holder let go
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".", ".tmp"  # vehiclust's temporaries: the only files a claim tidies
_guard = threading.Lock()


class Manifest:
    """The append-only log of what vehiclust wrote in one run folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / STATE_DIR / MANIFEST
        self.owned: set[str] = set()
        self.temporary: set[str] = set()
        self._read_to = 0  # bytes of the log applied so far
        self._read_file: tuple[int, int] | None = None  # (device, inode) of the log they came from
        self._lock = threading.Lock()
        self._catch_up()
        self._fd: int | None = None
        self.real_root = os.path.realpath(self.root)
        self._inside: set[str] = set()  # folders known to resolve inside the run folder

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def relative(self, path: Path | str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")

    def resolves_inside(self, folder: str, cached: bool = True) -> bool:
        """A folder of the run folder that is a link elsewhere would carry writes out of it
        (``cached=False`` for a removal: looked up again, not taken from earlier in the run)."""
        if folder not in self._inside or not cached:
            real = os.path.realpath(folder)
            if not (real == self.real_root or real.startswith(self.real_root + os.sep)):
                return False
            self._inside.add(folder)
        return True

    def owns(self, path: Path | str) -> bool:
        """Listed as written, by this process or by another one (a worker) since it read the log."""
        rel = self.relative(path)
        if rel not in self.owned:
            self._catch_up()
        return rel in self.owned

    def _catch_up(self) -> None:
        """Apply the lines appended to the log since it was last read, in their order."""
        if not is_plain_file(self.path):
            return
        with self._lock:
            try:
                log = os.fdopen(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
            except OSError:  # gone or unreadable since the check: nothing more is known
                return
            with log:
                stat = os.fstat(log.fileno())
                if (stat.st_dev, stat.st_ino) != self._read_file or stat.st_size < self._read_to:
                    # a claim compacted the log into a new file: read that one from its start
                    self.owned, self.temporary, self._read_to = set(), set(), 0
                    self._read_file = (stat.st_dev, stat.st_ino)
                log.seek(self._read_to)
                tail = log.read()
            complete = tail[:tail.rfind(b"\n") + 1]  # a line being appended right now waits for the next call
            self._read_to += len(complete)
            # bytes that are not UTF-8 are some other file's: they match nothing
            for line in complete.decode("utf-8", errors="replace").splitlines():
                kind, _, rel = line.partition(" ")
                if kind == WRITTEN:
                    self.owned.add(rel)
                    self.temporary.discard(rel)
                elif kind == TEMPORARY:
                    self.temporary.add(rel)
                elif kind == REMOVED:
                    self.owned.discard(rel)

    def log(self, kind: str, path: Path | str) -> None:
        rel = self.relative(path)
        line = f"{kind} {rel}\n".encode()
        with self._lock:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:  # compacted into a new file since
                os.close(self._fd)
                self._fd = None
            if self._fd is None:  # kept open: thumbnails alone are 400k lines at full scale
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            os.write(self._fd, line)
            if kind == WRITTEN:
                self.owned.add(rel)
            elif kind == REMOVED:
                self.owned.discard(rel)
            elif kind == TEMPORARY:
                self.temporary.add(rel)


def _is_marked(folder: str) -> bool:
    """Any entry in the log's place marks the folder: one that is not a plain file then lists
    nothing, so nothing in the folder is vehiclust's (a claim refuses it outright)."""
    return os.path.lexists(os.path.join(folder, STATE_DIR, MANIFEST))


def _find_root(folder: str) -> str | None:
    """The run folder above ``folder`` (the nearest one holding .vehiclust/manifest.txt),
    cached per folder; a cached run folder that was deleted since is looked for again."""
    if folder in _roots:
        cached = _roots[folder]
        if cached is None or _is_marked(cached):
            return cached
        stale = _manifests.pop(cached, None)
        if stale is not None:
            stale.close()
    candidate, found = folder, None
    for _ in range(SEARCH_DEPTH):
        if _is_marked(candidate):
            found = candidate
            break
        parent = os.path.dirname(candidate)
        if parent == candidate:
            break
        candidate = parent
    _roots[folder] = found
    return found


def manifest_for(path: Path | str) -> Manifest | None:
    """The manifest of the run folder that ``path`` lies in, if it lies in one."""
    root = _find_root(os.path.dirname(os.path.abspath(path)))
    if root is None:
        return None
    with _guard:
        if root not in _manifests:
            _manifests[root] = Manifest(Path(root))
        return _manifests[root]


def check_folder(path: Path | str) -> None:
    """Stop before writing through a folder of a run folder that links out of it."""
    manifest = manifest_for(path)
    if manifest is not None and not _folder_inside(manifest, path):
        raise VehiclustError(f"{path}: its folder is a link out of the run folder {manifest.root}; "
                             f"vehiclust writes only inside it. Remove the link, or choose another --out")


def before_write(path: Path | str) -> None:
    """Stop before replacing a file of a run folder that vehiclust did not write."""
    check_folder(path)
    manifest = manifest_for(path)
    if manifest is not None and os.path.lexists(path) and not manifest.owns(path):
        raise VehiclustError(f"{path}: exists and was not written by vehiclust; it is left as it is. "
                             f"Move it away, or choose another --out")


def temporary(path: Path | str) -> None:
    """Log a temporary file before it is filled, so that a killed run's leftovers can go."""
    manifest = manifest_for(path)
    if manifest is not None:
        manifest.log(TEMPORARY, path)


def written(path: Path | str) -> None:
    manifest = manifest_for(path)
    if manifest is not None:
        manifest.log(WRITTEN, path)


def remove_owned(folder: Path | str, unmarked: Callable[[Path], bool] | None = None) -> list[Path]:
    """Remove the files below ``folder`` that vehiclust wrote, and the folders they leave empty;
    everything else stays. In a folder without a manifest (written through the library without
    a claim), ``unmarked`` says which files are vehiclust's by their names. Returns what was
    left (files vehiclust did not write)."""
    folder = Path(folder)
    if folder.is_symlink():
        return [folder]  # a link to somewhere else: nothing there is vehiclust's to remove
    manifest = manifest_for(folder / "x")
    kept = []
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if manifest is not None and manifest.owns(path):
                path.unlink(missing_ok=True)
                manifest.log(REMOVED, path)
            elif manifest is None and unmarked is not None and unmarked(path):
                path.unlink(missing_ok=True)
            else:
                kept.append(path)
        with contextlib.suppress(OSError):  # not empty: something of the user's is inside
            os.rmdir(dirpath)
    return kept


def is_ours(path: Path | str) -> bool:
    """A file vehiclust wrote: a plain file (vehiclust writes no links: one in the place of its
    file was put there and could lead anywhere), listed in the manifest where there is one, in
    a folder that resolves inside the run folder (a folder replaced by a link leads elsewhere
    too, to a file of the same name that vehiclust never wrote)."""
    if not is_plain_file(path):
        return False
    manifest = manifest_for(path)
    return manifest is None or (manifest.owns(path) and _folder_inside(manifest, path))


def _folder_inside(manifest: Manifest, path: Path | str, cached: bool = True) -> bool:
    return manifest.resolves_inside(os.path.dirname(os.path.abspath(path)), cached)


def is_plain_file(path: Path | str) -> bool:
    """A regular file that is not a symbolic link."""
    return os.path.isfile(path) and not os.path.islink(path)


def remove_file(path: Path | str) -> bool:
    """Remove one file if vehiclust wrote it (or the folder has no manifest), never through a
    folder that links out of the run folder; True if removed."""
    manifest = manifest_for(path)
    if not os.path.lexists(path):
        return False
    if manifest is not None and not (manifest.owns(path) and _folder_inside(manifest, path, cached=False)):
        return False
    os.unlink(path)
    if manifest is not None:
        manifest.log(REMOVED, path)
    return True


# -- claiming a run folder -------------------------------------------------------------

def check_out_folder(out: Path, input_path: Path | str | None) -> None:
    """``--out`` must not be the input, nor lie inside it."""
    if input_path is None:
        return
    source = Path(input_path).resolve()
    if source.is_file():
        if source.name.lower() != "images_paths.csv":
            return  # one descriptor file: nothing else of its folder is read
        source = source.parent
    target = out.resolve()
    if target == source or source in target.parents:
        raise VehiclustError(f"{out}: the run folder is {'the input folder' if target == source else 'inside the input folder'} "
                             f"{source}; vehiclust would overwrite or re-read its own output. Choose an --out outside it")


def _describe_holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text(encoding="utf-8").strip() or "unknown process"
    except OSError:
        return "unknown process"


def _take_lock(root: Path) -> int:
    lock_path = root / STATE_DIR / LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise VehiclustError(f"{root}: another vehiclust run is writing this folder "
                                 f"({_describe_holder(lock_path)}); wait for it to finish, or "
                                 f"choose another --out") from None
        raise
    previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if previous and not previous.startswith(RELEASED):
        _interrupted[str(root)] = previous  # it held the lock and never let go: it was killed
    holder = f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)[:200]}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    return fd


def _tidy(root: Path) -> None:
    """Remove the temporaries a killed run left, and rewrite the manifest with only the files
    that are still there (it is append-only while a run writes)."""
    manifest = manifest_for(root / STATE_DIR / MANIFEST)
    if manifest is None:
        return
    for rel in sorted(manifest.temporary - manifest.owned):
        if _is_left_temporary(manifest, rel):
            (root / rel).unlink()
    kept = sorted(rel for rel in manifest.owned if (root / rel).exists())
    fd, tmp = new_temporary(root / STATE_DIR, MANIFEST)  # a new file, never a link
    os.fchmod(fd, 0o644)  # readable by whoever may read the run folder, as before (mkstemp makes 0600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("".join(f"{WRITTEN} {rel}\n" for rel in kept))
    os.replace(tmp, manifest.path)
    _forget(root)


def _forget(root: Path) -> None:
    """Drop this process's manifests of ``root``, under any spelling of its path (an --out
    given through a link): the next write or check reads the log from the disk again."""
    real = os.path.realpath(root)
    with _guard:
        for key in [k for k in _manifests if os.path.realpath(k) == real]:
            _manifests.pop(key).close()


def _is_left_temporary(manifest: Manifest, rel: str) -> bool:
    """A manifest line may be forged (``--out`` can hold anything): remove only a plain file
    named as :func:`runfolder.temporary_path` names them, inside the run folder by its path and
    by its folder's real place."""
    path = manifest.root / rel
    name = os.path.basename(rel)
    named = name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX)
    return (not os.path.isabs(rel) and ".." not in Path(rel).parts and named and is_plain_file(path)
            and _folder_inside(manifest, path, cached=False))


def new_temporary(folder: Path | str, beside: str) -> tuple[int, str]:
    """A new file (fd, path) in ``folder`` named as vehiclust names its temporaries, for ``beside``."""
    return tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{beside}.", suffix=TEMPORARY_SUFFIX, dir=folder)


def claim(out: Path | str, input_path: Path | str | None = None, force: bool = False) -> Path:
    """Make ``out`` this process's run folder: checked, marked and locked. Claiming it again in
    the same process only counts; :func:`release` once per claim."""
    out = Path(out)
    root = out.resolve()
    key = str(root)
    check_out_folder(out, input_path)
    with _guard:
        if key in _held:
            fd, count = _held[key]
            _held[key] = (fd, count + 1)
            return root
    if root.exists() and not root.is_dir():
        raise VehiclustError(f"{out}: exists and is not a folder; --out needs a folder")
    _check_state_folder(out, root)
    marked = is_plain_file(root / STATE_DIR / MANIFEST)
    if root.is_dir() and not marked and any(root.iterdir()) and not force:
        if (root / "collection.parquet").exists() and (root / "stages").is_dir():
            raise VehiclustError(f"{out}: a run folder of an older vehiclust, which kept no record of the "
                                 f"files it wrote; delete it (or choose another --out) to run again")
        raise VehiclustError(f"{out}: the folder is not empty and vehiclust did not make it; choose a new "
                             f"or empty folder, or pass --force (vehiclust still replaces and removes "
                             f"only files it wrote)")
    try:
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        os.close(os.open(root / STATE_DIR / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    except OSError as exc:
        raise VehiclustError(f"{out}: cannot write the run folder ({exc.strerror or exc}); "
                             f"choose a writable --out") from exc
    _roots.clear()  # folders found outside any run folder may lie inside this one now
    _forget(root)  # read it again from the disk: another process may have written
    fd = _take_lock(root)
    with _guard:
        _held[key] = (fd, 1)
    _tidy(root)
    return root


def _check_state_folder(out: Path, root: Path) -> None:
    """``.vehiclust`` and its files must be what vehiclust makes: a folder, plain files. A link
    there would carry the lock's and the log's writes elsewhere; a folder named like the log
    would mark the run folder while no file of it could ever be found ours."""
    state = root / STATE_DIR
    for path, is_folder in ((state, True), (state / MANIFEST, False), (state / LOCK, False)):
        if not os.path.lexists(path):
            continue
        if os.path.islink(path):
            what = "a link"
        elif is_folder != os.path.isdir(path) or not (is_folder or os.path.isfile(path)):
            what = "not a folder" if is_folder else "not a plain file"
        else:
            continue
        raise VehiclustError(f"{path}: {what}, not the record vehiclust keeps in a run folder; remove it, or "
                             f"choose another --out than {out}")


def release(root: Path | str) -> None:
    key = str(Path(root).resolve())
    with _guard:
        if key not in _held:
            return
        fd, count = _held.pop(key)
        if count > 1:
            _held[key] = (fd, count - 1)
            return
    with contextlib.suppress(OSError):
        os.pwrite(fd, RELEASED.encode() + b" " + os.pread(fd, 4096, 0), 0)
    os.close(fd)  # closing the descriptor releases the flock


def interrupted_run(root: Path | str) -> str | None:
    """Who held the folder last and ended without letting go (killed, power cut), once."""
    return _interrupted.pop(str(Path(root).resolve()), None)


def interrupted_note(root: Path | str) -> str | None:
    """The note a run prints when the last run on ``root`` was killed (once, see :func:`interrupted_run`)."""
    previous = interrupted_run(root)
    if previous is None:
        return None
    return (f"[yellow]note:[/] the last run on {root} ({previous}) was interrupted; "
            f"its finished stages are kept and the rest starts again")


@contextlib.contextmanager
def claimed(out: Path | str, input_path: Path | str | None = None, force: bool = False) -> Iterator[Path]:
    root = claim(out, input_path, force)
    try:
        yield root
    finally:
        release(root)
