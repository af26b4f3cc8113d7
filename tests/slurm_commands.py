"""A folder of Slurm commands that count their calls, then run the real ones.

Pointing ``FixedSlurmSpawner.slurm_bin_dir`` at it lets a test or benchmark
count what the hub asks the scheduler, while Slurm still answers for real.
"""

from pathlib import Path

COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
WRAPPER = """#!/bin/sh
echo "{name} $*" >> {log}
exec /usr/bin/{name} "$@"
"""


def counting_bin(folder: Path) -> Path:
    """``folder`` must be reachable by job users: sbatch and scancel run as them."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    log = folder / "calls.log"
    log.touch()
    log.chmod(0o666)
    for name in COMMANDS:
        path = folder / name
        path.write_text(WRAPPER.format(name=name, log=log))
        path.chmod(0o755)
    return folder


def calls(folder: Path, command: str = "squeue") -> int:
    """How many times ``command`` ran so far."""
    log = folder / "calls.log"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.split(" ", 1)[0] == command)
