"""What every backend shares: its error, and how an ended job ended (from its folder's marks)."""

from __future__ import annotations

from pathlib import Path

from ..store import utcnow


class BackendError(RuntimeError):
    """The scheduler refused or failed; the message says what it said."""


# exit statuses of 128 + N: the script (or its program) was killed by signal N, not its own error
KILLED_BY_SIGNAL = 128


def ended_status(folder: Path, fallback_reason: str = "") -> dict:
    """How a job that no longer runs ended, from the marks in its folder.

    ``restartable`` is set when the end was not the job's own doing (no exit status
    at all, or one that says a signal killed it): the job service may start it again.
    """
    folder = Path(folder)
    changes: dict = {"end_time": utcnow()}
    code_file = folder / "exit_code"
    code = None
    if code_file.exists():
        try:
            code = int(code_file.read_text().strip())
        except ValueError:
            code = None
    changes["exit_code"] = code
    pruned = folder / "pruned"
    if (folder / "cancelled").exists():
        changes.update(status="cancelled", reason="cancelled by the user")
    elif pruned.exists():
        changes.update(status="pruned", reason=pruned.read_text().strip() or "stopped early by the experiment")
    elif code == 0:
        changes.update(status="completed", reason="")
    elif code is not None and code > KILLED_BY_SIGNAL:
        changes.update(status="failed", reason=f"killed by signal {code - KILLED_BY_SIGNAL}", restartable=True)
    elif code is not None:
        changes.update(status="failed", reason=f"exited with status {code}")
    else:
        changes.update(status="failed", reason=fallback_reason or "ended without an exit status (killed?)",
                       restartable=True)
    return changes


