"""notebook template: run a Jupyter notebook from the workspace as a job, as papermill does.

- The notebook run is the copy in the job's code snapshot (the notebook as it was
  at submission) when there is one, else the workspace's (a notebook over the
  snapshot's size cap is not copied).
- Parameters: a new code cell tagged ``injected-parameters`` is inserted right
  after the first cell tagged ``parameters``, assigning each parameter its
  Python literal (``name = repr(value)``), so it overrides that cell's defaults.
  A notebook without a ``parameters`` cell gets it at the top (the log says so);
  an ``injected-parameters`` cell left by an earlier run is replaced.
- The kernel: ``kernel_name``, else the notebook's own (``metadata.kernelspec``),
  else ``python3``.
- Working directory: the job's output folder (``working_dir: output``, the
  default), so that what the notebook writes with relative paths is kept with the
  job and the workspace is left as it was; ``working_dir: notebook`` runs in the
  notebook's folder in the workspace instead (for notebooks that read files next
  to them by relative paths; what they write lands there too). Either way the
  kernel has ``CLUSTERLAB_NOTEBOOK_DIR`` (the notebook's workspace folder),
  ``CLUSTERLAB_WORKSPACE`` and ``CLUSTERLAB_OUTPUT`` in its environment.
- The executed notebook is ``output/<notebook name>.ipynb``, written after every
  cell (a killed job keeps what ran), with ``metadata.clusterlab`` (parameters,
  kernel, status, failing cell). Cell outputs are echoed to the job log as they
  come (``log_output``).
- A failing cell (or a cell over ``cell_timeout``, or a dead kernel) fails the
  job (exit status 1): the notebook is saved with the error in that cell's
  outputs and a note at its top, and the log names the cell. Cells tagged
  ``raises-exception`` may fail without failing the job.
"""

from __future__ import annotations

import datetime
import json
import keyword
import os
import signal
import sys
import time
from pathlib import Path

from clusterlab_server.training import fail

INJECTED_TAG = "injected-parameters"
ERROR_TAG = "clusterlab-error"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def log(message: str) -> None:
    print(f"notebook: {message}", flush=True)


def find_notebook(value: str) -> tuple[Path, Path]:
    """(the file to run, the notebook's path in the workspace)."""
    workspace = Path(os.environ.get("CLUSTERLAB_WORKSPACE", "."))
    in_workspace = Path(value) if Path(value).is_absolute() else workspace / value
    code = os.environ.get("CLUSTERLAB_CODE")
    snapshot = Path(code) / value if code and not Path(value).is_absolute() else None
    if snapshot is not None and snapshot.is_file():
        return snapshot, in_workspace
    if in_workspace.is_file():
        return in_workspace, in_workspace
    if in_workspace.is_dir():
        fail(f"{value} is a folder: give the path of an .ipynb file")
    fail(f"{value} is not in the code snapshot nor in the workspace (was it moved or deleted?)")
    raise AssertionError


def read_notebook(path: Path, shown: str):
    import nbformat

    if path.suffix.lower() != ".ipynb":
        fail(f"{shown} is not a notebook (.ipynb): to run a .py file, use the python-script template")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except (OSError, UnicodeDecodeError) as e:
        fail(f"{shown} cannot be read: {e}")
    except Exception as e:  # not JSON, or not a notebook
        fail(f"{shown} is not a valid notebook file: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        log(f"warning: {shown} does not fully follow the notebook format ({e.message}); running it anyway")
    return nb


def check_parameters(parameters: dict) -> None:
    bad = [name for name in parameters if not name.isidentifier() or keyword.iskeyword(name)]
    if bad:
        fail(f"parameter name(s) {', '.join(repr(b) for b in bad)} cannot be Python variable names "
             f"(letters, digits and _, not starting with a digit, not a keyword)")


def inject(nb, parameters: dict) -> str:
    """Insert the injected-parameters cell, as papermill does; returns where, in words."""
    import nbformat

    tags = lambda cell: cell.get("metadata", {}).get("tags", [])  # noqa: E731
    old = [i for i, cell in enumerate(nb.cells) if INJECTED_TAG in tags(cell)]
    for i in reversed(old):
        del nb.cells[i]  # left by an earlier run of this notebook
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source=source.rstrip("\n"), metadata={"tags": [INJECTED_TAG]})
    marked = next((i for i, c in enumerate(nb.cells) if "parameters" in tags(c)), None)
    if marked is None:
        nb.cells.insert(0, cell)
        return "at the top: the notebook has no cell tagged 'parameters' (tag one to set where they go)"
    nb.cells.insert(marked + 1, cell)
    return f"after cell {marked + 1}, the cell tagged 'parameters'"


def choose_kernel(nb, asked: str) -> tuple[str, object]:
    """(kernel name, its spec); fails listing the installed kernels when it is not one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    meta = nb.metadata.get("kernelspec", {}) or {}
    name = asked or meta.get("name") or "python3"
    manager = KernelSpecManager()
    try:
        return name, manager.get_kernel_spec(name)
    except NoSuchKernel:
        installed = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        where = "kernel_name" if asked else "the notebook's metadata (kernelspec)"
        fail(f"kernel {name!r} (from {where}) is not installed where the job runs; installed kernels: "
             f"{installed}. Set the parameter kernel_name to one of them")
        raise AssertionError


def first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip()]
    text = lines[0].strip() if lines else ""
    return text if len(text) <= 80 else text[:77] + "..."


class Runner:
    def __init__(self, nb, target: Path, log_output: bool):
        self.nb = nb
        self.target = target
        self.log_output = log_output
        self.current: int | None = None
        self.code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        self.started = time.monotonic()

    def save(self) -> None:
        import nbformat

        tmp = self.target.with_name(f".{self.target.name}.tmp")
        nbformat.write(self.nb, str(tmp))
        os.replace(tmp, self.target)  # never half a notebook

    def status(self, **fields) -> None:
        self.nb.metadata.setdefault("clusterlab", {}).update(fields)

    # ----- nbclient hooks ---------------------------------------------------------------

    def on_cell_start(self, cell, cell_index, **_):
        if cell.cell_type != "code" or not cell.source.strip():
            return
        # nbclient's own handlers (set once the kernel runs) only shut the kernel down: ours
        # stop the run, so that the notebook is saved with the cell that was running marked
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        self.current = cell_index
        position = self.code_cells.index(cell_index) + 1 if cell_index in self.code_cells else "?"
        log(f"cell {cell_index + 1}/{len(self.nb.cells)} (code cell {position}/{len(self.code_cells)}): "
            f"{first_line(cell.source)}")

    def on_cell_executed(self, cell, cell_index, **_):
        self.save()

    def echo(self, msg) -> None:
        if not self.log_output:
            return
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(content.get("text", ""))
            stream.flush()
        elif kind == "execute_result":
            text = content.get("data", {}).get("text/plain")
            if text:
                print(text, flush=True)

    # ----- the end ----------------------------------------------------------------------

    def failed(self, ename: str, evalue: str) -> None:
        """Name the failing cell in the log, mark the notebook, save it."""
        import nbformat

        index = self.current
        cell = self.nb.cells[index] if index is not None else None
        where = "before the first cell"
        traceback = None
        if cell is not None:
            count = cell.get("execution_count")
            where = (f"cell {index + 1} of {len(self.nb.cells)}"
                     f"{f' (In [{count}])' if count else ''}, which begins: {first_line(cell.source)}")
            traceback = next((o.get("traceback") for o in cell.get("outputs", [])
                              if o.get("output_type") == "error"), None)
            if traceback is None:  # a timeout or a dead kernel leaves none: write one, as the kernel would
                cell.setdefault("outputs", []).append(nbformat.v4.new_output(
                    "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))
        log(f"FAILED at {where}")
        log(f"{ename}: {evalue}")
        if traceback:
            print(strip_ansi("\n".join(traceback)), file=sys.stderr, flush=True)
        banner = nbformat.v4.new_markdown_cell(
            source=f"<span style=\"color:red\">**This notebook failed in its ClusterLab job** at {where.split(',')[0]}"
                   f": `{ename}: {evalue}`. The error is in that cell's output below.</span>",
            metadata={"tags": [ERROR_TAG]})
        self.nb.cells.insert(0, banner)
        self.status(status="failed", end_time=now(), failed_cell=(index + 1) if index is not None else None,
                    error=f"{ename}: {evalue}")
        self.save()


class Stopped(BaseException):
    """SIGTERM or SIGINT during the run (a cancel, the end of the wall time)."""


def stop(signum, _frame):
    raise Stopped(signal.Signals(signum).name)


def strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def main() -> None:
    params = json.loads(Path(os.environ["CLUSTERLAB_PARAMS"]).read_text())
    value = params["notebook"]
    parameters = params.get("parameters") or {}
    if not isinstance(parameters, dict):
        fail("parameters must be a JSON object of name: value")
    check_parameters(parameters)
    source, in_workspace = find_notebook(value)
    nb = read_notebook(source, value)
    kernel_name, spec = choose_kernel(nb, params.get("kernel_name") or "")
    if parameters and (spec.language or "python").lower() != "python":
        fail(f"kernel {kernel_name!r} runs {spec.language}: parameters can be injected only into Python notebooks")

    output = Path(os.environ.get("CLUSTERLAB_OUTPUT", os.getcwd()))
    cwd = output if params.get("working_dir", "output") == "output" else in_workspace.parent
    target = output / f"{Path(value).stem}.ipynb"
    old_banners = [i for i, c in enumerate(nb.cells) if ERROR_TAG in c.get("metadata", {}).get("tags", [])]
    for i in reversed(old_banners):
        del nb.cells[i]
    if parameters:
        log(f"parameters {', '.join(parameters)} injected {inject(nb, parameters)}")
    timeout = int(params.get("cell_timeout") or 0) or None
    log(f"running {value} ({'code snapshot' if source != in_workspace else 'workspace'} copy) with kernel "
        f"{kernel_name!r} in {cwd}; cell timeout {f'{timeout} s' if timeout else 'none'}; "
        f"the executed notebook is {target.name}")

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    runner = Runner(nb, target, bool(params.get("log_output", True)))

    class JobClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            runner.echo(msg)
            return super().output(outs, msg, display_id, cell_index)

    os.environ["CLUSTERLAB_NOTEBOOK_DIR"] = str(in_workspace.parent)
    runner.status(notebook=value, parameters=parameters, kernel_name=kernel_name, cwd=str(cwd),
                  job_id=os.environ.get("CLUSTERLAB_JOB_ID", ""), status="running", start_time=now())
    timed_out = f"the cell ran longer than cell_timeout ({timeout} s) and was interrupted"
    client = JobClient(
        nb, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}},
        record_timing=True, on_cell_start=runner.on_cell_start, on_cell_executed=runner.on_cell_executed,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": timed_out, "traceback": [timed_out]},
    )

    runner.save()
    try:
        client.execute()
    except CellExecutionError as e:
        runner.failed(e.ename, e.evalue)
        sys.exit(1)
    except CellTimeoutError:
        runner.failed("CellTimeoutError", timed_out)
        sys.exit(1)
    except DeadKernelError:
        runner.failed("DeadKernelError", "the kernel died during this cell (out of memory?)")
        sys.exit(1)
    except Stopped as e:
        runner.failed("JobStopped", f"the job was stopped ({e.args[0]}: cancelled, or out of wall time) "
                                    f"during this cell")
        sys.exit(128 + signal.Signals[e.args[0]])  # the kernel is shut down at exit
    except Exception as e:  # the kernel did not start, ...
        if runner.current is None:
            runner.status(status="failed", end_time=now(), error=f"{type(e).__name__}: {e}")
            runner.save()
            fail(f"the kernel {kernel_name!r} could not run the notebook: {type(e).__name__}: {e}")
        runner.failed(type(e).__name__, str(e))
        sys.exit(1)
    runner.status(status="completed", end_time=now())
    runner.save()
    log(f"done: {len(runner.code_cells)} code cell(s) in {time.monotonic() - runner.started:.1f} s; "
        f"executed notebook saved as {target.name}")


if __name__ == "__main__":
    main()
