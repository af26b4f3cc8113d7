"""python-script template: run the user's file with its arguments (no shell).

The job service has already checked that ``script`` is inside the user's
workspace; the copy in the job's code snapshot is run when it is there, so the
job runs the code as it was at submission.
"""

import json
import os
import sys
from pathlib import Path


def main() -> None:
    params = json.loads(Path(os.environ["CLUSTERLAB_PARAMS"]).read_text())
    script = params["script"]
    candidates = [Path(os.environ["CLUSTERLAB_CODE"]) / script, Path(os.environ["CLUSTERLAB_WORKSPACE"]) / script]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        sys.exit(f"python-script: {script} is not in the code snapshot nor in the workspace")
    interpreter = ["/bin/bash"] if path.suffix == ".sh" else [sys.executable, "-u"]
    argv = [*interpreter, str(path), *params.get("args", [])]
    print(f"python-script: running {path.name} with {len(argv) - len(interpreter) - 1} argument(s)", flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
