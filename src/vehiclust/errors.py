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
