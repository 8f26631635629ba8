"""Errors a user must act on. The CLI prints their message on one line and exits non-zero."""


class VehiclustError(Exception):
    """A failure the user can fix; the message says what to do."""

    exit_code = 1


class InputError(VehiclustError):
    """The input (a path, a file, its content) is not usable as it is."""

    exit_code = 2

    def __init__(self, path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int, option: str = "size") -> int:
    """``"256M"`` -> 268435456 (binary units; a plain number is bytes)."""
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1] if value and value[-1] in "KMGT" else ""
    number = value[: len(value) - len(unit)]
    try:
        size = float(number) * SIZE_UNITS[unit]
    except ValueError:
        raise VehiclustError(f"{option} {text!r}: expected a size such as 500M, 2G or 1048576") from None
    if size <= 0:
        raise VehiclustError(f"{option} {text!r}: must be positive")
    return int(size)


STAGE_PACKAGES = ("collection", "describe", "cluster", "compare", "outliers", "report", "quality")


def _stage_of(exc: BaseException) -> str | None:
    """The pipeline stage the exception was raised in: the innermost vehiclust stage package
    on its traceback (so a fault needs no bookkeeping to be attributed)."""
    import traceback

    stage = None
    for frame in traceback.extract_tb(exc.__traceback__):
        parts = frame.filename.replace("\\", "/").split("/")
        if "vehiclust" in parts[:-1]:
            below = parts[len(parts) - 1 - parts[::-1].index("vehiclust"):]
            if len(below) > 2 and below[1] in STAGE_PACKAGES:
                stage = below[1]
    return stage


def fault_message(exc: BaseException) -> VehiclustError | None:
    """A fault of the machine (a read-only or full disk, memory, an interruption) as the one
    line the user acts on; None for a genuine bug, which keeps its traceback."""
    if isinstance(exc, VehiclustError):
        return exc
    stage = _stage_of(exc)
    where = f" in the {stage} stage" if stage else ""
    resume = "then run the same command again: finished stages are kept and the rest resumes"
    if isinstance(exc, KeyboardInterrupt):
        return _with_code(VehiclustError(f"interrupted{where}; nothing half-written was kept: run "
                                         f"the same command again to resume"), 130)
    if isinstance(exc, MemoryError):
        return VehiclustError(f"out of memory{where}; close other programs or work on fewer rows "
                              f"(a smaller input, --max-thumbnails, fewer descriptors), {resume}")
    if isinstance(exc, OSError) and exc.errno in _OS_ADVICE:
        name = exc.filename or "a file"
        problem, advice = _OS_ADVICE[exc.errno]
        return VehiclustError(f"{name}: {problem}{where}; {advice}, {resume}")
    return None


def _with_code(error: VehiclustError, code: int) -> VehiclustError:
    error.exit_code = code
    return error


def _os_advice() -> dict[int, tuple[str, str]]:
    import errno

    full = ("no space left on the device", "free some space or choose an --out on another disk")
    return {
        errno.EROFS: ("the file system is read-only", "choose a writable --out"),
        errno.EACCES: ("permission denied", "make it writable (or readable), or choose another --out"),
        errno.EPERM: ("operation not permitted", "check its owner and permissions, or choose another --out"),
        errno.ENOSPC: full,
        errno.EDQUOT: full,
        errno.EMFILE: ("too many open files", "raise the limit (ulimit -n)"),
    }


_OS_ADVICE = _os_advice()
