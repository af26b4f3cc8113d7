"""The tabular-train and notebook templates, run as real jobs on the local backend.

Jobs of a module are submitted together and awaited once (they run side by
side), then each test reads the story of its own job. tabular-train also takes
its CSV as a dataset or a read-only folder (a folder: its one CSV, or csv_file),
and leaves it as it was.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from template_jobs import REPO, make_service, metrics, read_only, unchanged, wait_final

HOUSES = "demo/tabular/houses.csv"


def submit_all(service, requests: dict[str, dict]) -> dict:
    """Submit every job first, then wait for each: they run at the same time."""
    jobs = {key: service.submit({"name": key, **request}) for key, request in requests.items()}
    return {key: wait_final(service, job.id) for key, job in jobs.items()}


def log_of(service, job) -> str:
    return service.log(job.id)["text"]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# ----- tabular-train -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, demo_data):
    service = make_service(tmp_path_factory.mktemp("tabular"), demo_data)
    folder = demo_data / "read-only" / "houses"  # a folder with one CSV, as a plain path
    tables = demo_data / "tabular-inputs" / "tables"  # two CSVs, made a dataset
    if not folder.exists():
        folder.mkdir(parents=True)
        shutil.copy(demo_data / HOUSES, folder / "houses.csv")
        (tables / "extra").mkdir(parents=True)
        shutil.copy(demo_data / HOUSES, tables / "houses.csv")
        (tables / "extra" / "notes.csv").write_text("a,b\n1,2\n")
    version = service.datasets.create({"name": "houses", "folder": "tabular-inputs/tables"})
    with read_only(folder), unchanged(Path(version["path"])):
        jobs = submit_all(service, {
            # segment is derived from price (and price from segment's rows): each is left out of the other's
            # features
            "regression": {"template": "tabular-train", "params": {
                "dataset": HOUSES, "target": "price", "ignore_columns": ["segment"]}},
            "classification": {"template": "tabular-train", "params": {
                "dataset": HOUSES, "target": "segment", "ignore_columns": ["price"], "model": "gradient_boosting"}},
            "no_target": {"template": "tabular-train", "params": {"dataset": HOUSES, "target": "cost"}},
            "from_folder": {"template": "tabular-train", "params": {
                "dataset": "read-only/houses", "target": "price", "ignore_columns": ["segment"], "model": "linear"}},
            "from_dataset": {"template": "tabular-train", "params": {
                "dataset": "houses", "csv_file": "houses.csv", "target": "segment", "ignore_columns": ["price"],
                "model": "linear"}},
            "two_tables": {"template": "tabular-train", "params": {"dataset": "houses:1", "target": "price"}},
        })
    return service, jobs, demo_data


def output(job) -> Path:
    return Path(job.folder) / "output"


def load_model_and_predict(job, workspace: Path):
    """What a user does with model.joblib: load it, feed it the CSV's rows in its feature order."""
    import joblib
    import numpy as np

    bundle = joblib.load(output(job) / "model.joblib")
    header, rows = read_csv(workspace / HOUSES)
    X = np.empty((len(rows), len(bundle["features"])), dtype=object)
    for c, name in enumerate(bundle["features"]):
        j = header.index(name)
        for r, row in enumerate(rows):
            X[r, c] = float(row[j]) if name in bundle["numeric"] else row[j]
    return bundle, header, rows, bundle["pipeline"].predict(X)


def test_regression_on_price_beats_the_mean(tabular):
    service, jobs, workspace = tabular
    job = jobs["regression"]
    assert job.status == "completed", log_of(service, job)[-3000:]
    header, rows = read_csv(workspace / HOUSES)
    prices = [float(row[header.index("price")]) for row in rows]
    mean = sum(prices) / len(prices)
    mean_mae = sum(abs(p - mean) for p in prices) / len(prices)

    lines = metrics(job)
    assert len(lines) == 1 and (lines[0]["step"], lines[0]["epoch"], lines[0]["epochs"]) == (1, 1, 1)
    scores = lines[0]["metrics"]
    assert scores["mae"] < 0.5 * mean_mae, (scores, mean_mae)
    assert scores["rmse"] >= scores["mae"] > 0
    report = json.loads((output(job) / "metrics.json").read_text())
    assert report["task"] == "regression" and report["metrics"] == scores
    assert report["features"]["ignored"] == ["segment"]
    assert report["rows"]["test"] == 120 and report["rows"]["train"] == 480
    assert list((output(job) / "tensorboard").glob("events.out.tfevents.*"))
    assert "task regression" in log_of(service, job)

    pred_header, pred_rows = read_csv(output(job) / "predictions.csv")
    assert pred_header == ["row", *header, "predicted_price", "error"]
    assert len(pred_rows) == 120
    for row in pred_rows[:5]:  # each held-out row is the CSV's row of that number
        assert row[1:1 + len(header)] == rows[int(row[0])]

    bundle, _, _, predicted = load_model_and_predict(job, workspace)
    assert bundle["target"] == "price" and bundle["task"] == "regression"
    assert "segment" not in bundle["features"] and "district" in bundle["categorical"]
    assert len(predicted) == len(rows)
    mae_all = sum(abs(p - y) for p, y in zip(predicted, prices)) / len(prices)
    assert mae_all < 0.5 * mean_mae


def test_classification_on_segment_is_accurate(tabular):
    service, jobs, workspace = tabular
    job = jobs["classification"]
    assert job.status == "completed", log_of(service, job)[-3000:]
    scores = metrics(job)[0]["metrics"]
    assert scores["accuracy"] >= 0.8, scores
    assert 0 < scores["f1_macro"] <= 1
    assert scores["accuracy"] > scores["baseline_accuracy"]
    report = json.loads((output(job) / "metrics.json").read_text())
    assert report["task"] == "classification" and report["model"] == "gradient_boosting"
    assert set(report["per_class"]) == {"budget", "standard", "premium"}
    assert "task classification (the target is not numeric)" in log_of(service, job)

    pred_header, pred_rows = read_csv(output(job) / "predictions.csv")
    assert pred_header[-2:] == ["predicted_segment", "probability"]
    assert all(0 <= float(row[-1]) <= 1 for row in pred_rows)

    bundle, header, rows, predicted = load_model_and_predict(job, workspace)
    assert sorted(bundle["classes"]) == ["budget", "premium", "standard"]
    truth = [row[header.index("segment")] for row in rows]
    assert sum(p == t for p, t in zip(predicted, truth)) / len(rows) >= 0.8


def test_absent_target_fails_listing_the_columns(tabular):
    service, jobs, _ = tabular
    job = jobs["no_target"]
    assert job.status == "failed" and job.exit_code == 2
    text = log_of(service, job)
    assert "error: target column 'cost' is not in demo/tabular/houses.csv" in text
    for column in ("area_m2", "rooms", "age_years", "district", "garden", "price", "segment"):
        assert repr(column) in text
    assert not (output(job) / "model.joblib").exists()
    assert "Traceback" not in text


def test_a_read_only_folder_with_one_csv_is_read_and_left_as_it_was(tabular):
    service, jobs, _ = tabular
    job = jobs["from_folder"]
    text = log_of(service, job)
    assert job.status == "completed", text[-3000:]
    assert "tabular-train: read-only/houses/houses.csv: 600 rows" in text
    report = json.loads((output(job) / "metrics.json").read_text())
    assert report["dataset"] == "read-only/houses/houses.csv" and report["task"] == "regression"


def test_a_dataset_version_with_the_csv_file_chosen(tabular):
    service, jobs, _ = tabular
    job = jobs["from_dataset"]
    text = log_of(service, job)
    assert job.status == "completed", text[-3000:]
    assert job.params["dataset"] == "houses:1"  # pinned; the job read its mounted copy
    assert "tabular-train: houses:1/houses.csv: 600 rows" in text
    assert metrics(job)[0]["metrics"]["accuracy"] >= 0.7


def test_a_dataset_with_several_csv_files_and_no_choice_lists_them(tabular):
    service, jobs, _ = tabular
    job = jobs["two_tables"]
    text = log_of(service, job)
    assert job.status == "failed" and job.exit_code == 2, text[-3000:]
    assert ("error: dataset houses:1 holds 2 CSV files ('extra/notes.csv', 'houses.csv'): set csv_file to the one "
            "to train on") in text
    assert "Traceback" not in text


def test_predict_takes_the_jobs_output_folder_and_a_folder_of_rows(tabular, tmp_path):
    _, jobs, workspace = tabular
    rows = workspace / "read-only" / "houses"
    with read_only(output(jobs["from_folder"]), rows):
        done = subprocess.run(
            [sys.executable, str(REPO / "templates" / "tabular-train" / "predict.py"), str(output(jobs["from_folder"])),
             str(rows), str(tmp_path / "predicted.csv")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    header, predicted = read_csv(tmp_path / "predicted.csv")
    assert header == ["row", "predicted_price"] and len(predicted) == 600
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, str(REPO / "templates" / "tabular-train" / "predict.py"), str(empty),
                           str(rows)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"error: {empty} holds no model.joblib" in done.stderr


# ----- notebook ------------------------------------------------------------------------


def write_notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source=source, metadata={"tags": tags} if tags else {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("nb-workspace")
    write_notebook(workspace / "analysis" / "params_demo.ipynb", [
        ("markdown", "# A parameterised notebook", []),
        ("code", "alpha = 1\nlabel = 'default'", ["parameters"]),
        ("code", "print(f'alpha is {alpha}')", []),
        ("code", "from pathlib import Path\nPath('result.txt').write_text(f'{label}:{alpha * 2}')\nalpha * 10", []),
    ])
    write_notebook(workspace / "broken.ipynb", [
        ("code", "x = 1\nprint('before the error')", []),
        ("code", "y = x / 0", []),
        ("code", "print('never printed')", []),
    ])
    service = make_service(tmp_path_factory.mktemp("nb-jobs"), workspace)
    jobs = submit_all(service, {
        "parameterised": {"template": "notebook", "params": {
            "notebook": "analysis/params_demo.ipynb", "parameters": {"alpha": 5, "label": "x"}}},
        "broken": {"template": "notebook", "params": {"notebook": "broken.ipynb", "parameters": {"n": 3}}},
    })
    return service, jobs


def read_output_notebook(job, name: str):
    import nbformat

    return nbformat.read(str(output(job) / name), as_version=4)


def test_notebook_runs_with_injected_parameters(notebooks):
    service, jobs = notebooks
    job = jobs["parameterised"]
    text = log_of(service, job)
    assert job.status == "completed", text[-3000:]
    nb = read_output_notebook(job, "params_demo.ipynb")
    injected = nb.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == "# Parameters\nalpha = 5\nlabel = 'x'"
    assert nb.cells[1].metadata["tags"] == ["parameters"]  # right after the parameters cell
    printed = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert printed == "alpha is 5\n"
    assert nb.cells[4].outputs[0]["data"]["text/plain"] == "50"
    assert nb.metadata["clusterlab"]["status"] == "completed"
    assert nb.metadata["clusterlab"]["parameters"] == {"alpha": 5, "label": "x"}
    # the notebook's working directory is the job's output folder
    assert (output(job) / "result.txt").read_text() == "x:10"
    assert "alpha is 5" in text  # cell output is echoed to the log
    assert "injected after cell 2, the cell tagged 'parameters'" in text


def test_failing_notebook_fails_the_job_and_keeps_the_error(notebooks):
    service, jobs = notebooks
    job = jobs["broken"]
    text = log_of(service, job)
    assert job.status == "failed" and job.exit_code == 1, text[-3000:]
    # no parameters cell: injected at the top, and the log says so
    assert "injected at the top: the notebook has no cell tagged 'parameters'" in text
    assert "FAILED at cell 3 of 4 (In [3]), which begins: y = x / 0" in text
    assert "ZeroDivisionError" in text

    nb = read_output_notebook(job, "broken.ipynb")
    assert nb.metadata["clusterlab"]["status"] == "failed"
    assert "clusterlab-error" in nb.cells[0].metadata["tags"]  # the note at the top
    cells = nb.cells[1:]
    assert cells[0].metadata["tags"] == ["injected-parameters"] and cells[0].source == "# Parameters\nn = 3"
    assert cells[1].outputs[0]["text"] == "before the error\n"
    errors = [o for o in cells[2].outputs if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "ZeroDivisionError"
    assert cells[3].get("outputs") == [] and cells[3].get("execution_count") is None  # never ran
