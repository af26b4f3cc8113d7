"""``clusterlab labelling|studio|model ...``: AI Studio's chain from a terminal, through the same service.

    clusterlab labelling create pets --classes cat,dog --images ~/pictures/pets   # prints its id
    clusterlab labelling open ID                  # starts Label Studio; prints the page to open
    clusterlab labelling export ID --dataset pets --val-fraction 0.2 --seed 0     # prints pets:1
    clusterlab studio train pets:1 -p epochs=5    # a grid experiment; prints its id
    clusterlab studio validate --experiment EXP --wait    # its best trial's model on the val/ split
    clusterlab model register pets_classifier --experiment EXP                    # prints pets_classifier:1
    clusterlab model publish pets_classifier 1 --repository file:///srv/git/pets.git
    clusterlab studio chains                      # each labelling's six steps and their states
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = __doc__.split("\n\n", 1)[1]


def studio_of(service):
    from ..experiments.service import ExperimentService
    from .service import StudioService

    # in a JupyterLab terminal the hub says the server's prefix: the page URLs are the browser's
    return StudioService(service, ExperimentService(service), base_url=os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))


def _out(args, data: Any, line: str, note: str = "") -> int:
    from ..cli import EXIT_OK, clean, print_json

    if args.json:
        print_json(data, sys.stdout)
    else:
        sys.stdout.write(line + "\n")
        if note:
            sys.stderr.write(f"clusterlab: {clean(note)}\n")
    return EXIT_OK


def labelling_line(labelling: dict) -> str:
    return (f"{labelling['id']}  {labelling['name']}  {labelling['kind']}  {labelling['labelled']}/"
            f"{labelling['images']} labelled  classes: {', '.join(labelling['classes'])}")


def cmd_labelling_create(service, args) -> int:
    images = args.images
    if not StudioRefs.is_dataset(service, images):  # a folder as a terminal reads it: from the current folder
        images = str(Path(images).expanduser().absolute())
    request = {"name": args.name, "kind": args.kind, "classes": [c.strip() for c in args.classes.split(",")],
               "images": images}
    if args.project is not None:
        request["project"] = args.project
    labelling = studio_of(service).create_labelling(request)
    return _out(args, labelling, labelling["id"], f"labelling {labelling['name']}: {labelling['images']} pictures "
                f"frozen; next: clusterlab labelling open {labelling['id']}")


class StudioRefs:
    @staticmethod
    def is_dataset(service, text: str) -> bool:
        ref = service.datasets.parse_ref(text)
        if ref is None or "dataset" not in ref:
            return False
        return bool(service.datasets.own.versions(ref["dataset"]) or service.datasets.site.versions(ref["dataset"]))


def cmd_labelling_list(service, args) -> int:
    from ..cli import EXIT_OK, print_json, print_table

    labellings = studio_of(service).list_labellings(args.project)
    if args.json:
        print_json(labellings, sys.stdout)
        return EXIT_OK
    print_table(["ID", "NAME", "KIND", "LABELLED", "EXPORTS", "PROJECT"],
                [[x["id"], x["name"], x["kind"], f"{x['labelled']}/{x['images']}",
                  ", ".join(f"{e['dataset']}:{e['version']}" for e in x["exports"]) or "-", x["project"]]
                 for x in labellings], sys.stdout)
    return EXIT_OK


def cmd_labelling_show(service, args) -> int:
    labelling = studio_of(service).get_labelling(args.id)
    return _out(args, labelling, labelling_line(labelling))


def cmd_labelling_open(service, args) -> int:
    labelling = studio_of(service).open_labelling(args.id)
    return _out(args, labelling, labelling["url"], "open this path on your JupyterHub in the browser (the AI Studio "
                "page opens it in a panel); Label Studio stops by itself when unused")


def cmd_labelling_export(service, args) -> int:
    request: dict[str, Any] = {"dataset": args.dataset, "val_fraction": args.val_fraction, "seed": args.seed}
    version = studio_of(service).export(args.id, request)
    split = (version.get("labelling") or {}).get("split", {})
    return _out(args, version, f"{version['name']}:{version['version']}",
                f"{version['files']} files (the pictures and labels.json); {split_line(split)}")


def split_line(split: dict) -> str:
    """``{"train": {"circle": 15, ...}, "val": {...}}`` as ``train: circle 15, ...; val: ...`` (a count as is)."""
    def counts(part) -> str:
        return ", ".join(f"{name} {n}" for name, n in part.items()) if isinstance(part, dict) else str(part)
    return "; ".join(f"{where}: {counts(part)}" for where, part in split.items())


def cmd_labelling_delete(service, args) -> int:
    from ..cli import EXIT_OK

    studio_of(service).delete_labelling(args.id)
    return EXIT_OK


def cmd_studio_train(service, args) -> int:
    from ..cli import convert_params, convert_search

    from .service import TRAINING

    studio = studio_of(service)
    _, labelling = studio.labelled_version(args.dataset)
    template = service.registry.templates.get(TRAINING.get(labelling.get("kind"), ""))
    request: dict[str, Any] = {"dataset": args.dataset, "params": convert_params(args.param, template)}
    if args.search:
        request["search"] = convert_search(args.search, template)
    for key in ("name", "project", "profile", "hours", "max_trials"):
        if getattr(args, key) is not None:
            request[key] = getattr(args, key)
    experiment = studio.start_experiment(request)
    return _out(args, experiment, experiment["id"], f"experiment {experiment['name']}: {experiment['template']} "
                f"over {', '.join(experiment['search'])}; follow: clusterlab experiment wait {experiment['id']}")


def validation_line(validation: dict) -> str:
    report = validation["report"] or {}
    score = (f"accuracy {report['accuracy']:.4f}" if "accuracy" in report else
             f"mAP@0.5 {report['map50']:.4f}" if "map50" in report else validation["error"] or "")
    dataset = validation["dataset"]
    return (f"{validation['id']}  {validation['status']}  job {validation['job']} on {dataset['name']}:"
            f"{dataset['version']}  {score}  {report.get('path', '')}").rstrip()


def chosen(args) -> dict:
    """``job`` or ``experiment`` (its best trial), as the service takes them."""
    return {"job": args.job} if args.job is not None else {"experiment": args.experiment}


def cmd_studio_validate(service, args) -> int:
    from ..cli import EXIT_JOB_FAILED, EXIT_OK, clean, print_json

    request: dict[str, Any] = chosen(args)
    if args.dataset is not None:
        request["dataset"] = args.dataset
    studio = studio_of(service)
    validation = studio.validate(request)
    if not args.wait:
        return _out(args, validation, validation["id"], f"validating job {validation['job']} with job "
                    f"{validation['inference_job']}; see: clusterlab studio validations")
    sys.stderr.write(f"clusterlab: validating job {validation['job']} with job {validation['inference_job']}...\n")
    while validation["status"] == "running":
        time.sleep(1)
        service.refresh()
        validation = studio.get_validation(validation["id"])
    if args.json:
        print_json(validation, sys.stdout)
    else:
        sys.stdout.write(clean(validation_line(validation)) + "\n")
    return EXIT_OK if validation["status"] == "done" else EXIT_JOB_FAILED


def cmd_studio_validations(service, args) -> int:
    from ..cli import EXIT_OK, print_json

    service.refresh()
    validations = studio_of(service).list_validations(args.project)
    if args.json:
        print_json(validations, sys.stdout)
    else:
        for validation in validations:
            sys.stdout.write(validation_line(validation) + "\n")
    return EXIT_OK


def cmd_studio_chains(service, args) -> int:
    from ..cli import EXIT_OK, print_json

    service.refresh()
    chains = studio_of(service).chains(args.project)
    if args.json:
        print_json(chains, sys.stdout)
        return EXIT_OK
    for chain in chains:
        sys.stdout.write(f"{chain['labelling']['name']} ({chain['labelling']['id']})\n")
        for step in chain["steps"]:
            sys.stdout.write(f"  {step['step']:<9} {step['state']:<8} {step['detail']}\n")
    return EXIT_OK


def version_line(version: dict) -> str:
    published = version["published"]
    where = f"published {published['repository']} ({published['tag']})" if published else "not published"
    return f"{version['model']}:{version['version']}  job {version['job']}  {where}"


def cmd_model_register(service, args) -> int:
    request: dict[str, Any] = {"name": args.name, **chosen(args)}
    if args.validation is not None:
        request["validation"] = args.validation
    service.refresh()
    version = studio_of(service).register(request)
    return _out(args, version, f"{version['model']}:{version['version']}", f"model file: {version['model_file']}")


def cmd_model_list(service, args) -> int:
    from ..cli import EXIT_OK, print_json

    models = studio_of(service).list_models()
    if args.json:
        print_json(models, sys.stdout)
    else:
        for model in models:
            for version in model["versions"]:
                sys.stdout.write(version_line(version) + "\n")
    return EXIT_OK


def cmd_model_show(service, args) -> int:
    studio = studio_of(service)
    if args.version is None:
        model = studio.get_model(args.name)
        return _out(args, model, "\n".join(map(version_line, model["versions"])))
    version = studio.get_model_version(args.name, args.version)
    return _out(args, version, version_line(version))


def cmd_model_publish(service, args) -> int:
    request: dict[str, Any] = {"repository": args.repository}
    if args.branch is not None:
        request["branch"] = args.branch
    version = studio_of(service).publish(args.name, args.version, request)
    published = version["published"]
    return _out(args, version, published["commit"], f"{version['model']} version {version['version']} pushed to "
                f"{published['repository']} ({published['branch']}, tag {published['tag']})")


def trial_choice(sub) -> None:
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", help="a completed training job (a trial)")
    which.add_argument("--experiment", metavar="ID", help="an experiment: its best trial")


def add_commands(command_with_actions, param_option, json_option, key_spec) -> None:
    """The three command groups, added to ``clusterlab``'s parser by its own helpers."""
    action = command_with_actions("labelling", "AI Studio: label pictures in Label Studio, export them as a "
                                  "dataset version", EPILOG)

    def labelling_id(sub) -> None:
        sub.add_argument("id", metavar="ID", help="the labelling's id (see: clusterlab labelling list)")

    sub = action("create", "freeze a folder's (or dataset version's) pictures for labelling; prints its id",
                 cmd_labelling_create)
    sub.add_argument("name", metavar="NAME", help="its name: letters, digits and underscores")
    sub.add_argument("--kind", choices=("classification", "detection"), default="classification",
                     help="a class per picture, or boxes (default: classification)")
    sub.add_argument("--classes", required=True, metavar="A,B,...", help="the class names, comma-separated")
    sub.add_argument("--images", required=True, metavar="FOLDER|DATASET[:V]", help="the pictures to label")
    sub.add_argument("--project", metavar="P", help="the project it belongs to (default: default)")
    json_option(sub)
    sub = action("list", "list labellings, newest first", cmd_labelling_list)
    sub.add_argument("--project", metavar="P", help="only labellings of this project")
    json_option(sub)
    for name, summary, handler in (("show", "show a labelling and how much is labelled", cmd_labelling_show),
                                   ("open", "start Label Studio on a labelling; prints its page", cmd_labelling_open)):
        sub = action(name, summary, handler)
        labelling_id(sub)
        json_option(sub)
    sub = action("export", "write the labels as a new dataset version (train/ and val/); prints NAME:VERSION",
                 cmd_labelling_export)
    labelling_id(sub)
    sub.add_argument("--dataset", required=True, metavar="NAME", help="the dataset to make a version of")
    sub.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                     help="the part of the labelled pictures kept for validation, between 0 and 1 (default: 0.2)")
    sub.add_argument("--seed", type=int, default=0, help="the split's seed: the same seed, the same split")
    json_option(sub)
    sub = action("delete", "delete a labelling (its exported versions stay)", cmd_labelling_delete)
    labelling_id(sub)

    action = command_with_actions("studio", "AI Studio: train a grid on exported labels, validate a trial, "
                                  "see each chain", EPILOG)
    sub = action("train", "start a grid experiment of the matching template on an exported version; prints its id",
                 cmd_studio_train)
    sub.add_argument("dataset", metavar="NAME:VERSION", help="a dataset version exported from a labelling")
    sub.add_argument("--name", help="the experiment's name (default: <dataset>_v<version>_grid)")
    param_option(sub)
    sub.add_argument("--search", type=key_spec, action="append", metavar="KEY=SPEC",
                     help="a searched parameter, as `clusterlab experiment create` takes it (default: two "
                          "learning rates)")
    sub.add_argument("--max-trials", type=int, metavar="N", help="trials in all (default: the grid's size)")
    sub.add_argument("--profile", help="each trial's instance size")
    sub.add_argument("--hours", type=float, help="each trial's wall time in hours")
    sub.add_argument("--project", metavar="P", help="the project (default: the dataset's)")
    json_option(sub)
    sub = action("validate", "run a trial's model on a labelled version (default: its own val/); prints the id",
                 cmd_studio_validate)
    trial_choice(sub)
    sub.add_argument("--dataset", metavar="NAME:VERSION", help="the labelled version (default: the trial's)")
    sub.add_argument("--wait", action="store_true", help="wait for the report; print its score and path (exit 0 "
                                                         "if it was written)")
    json_option(sub)
    for name, summary, handler in (("validations", "list validations with their scores and reports",
                                    cmd_studio_validations),
                                   ("chains", "each labelling's chain: its six steps and their states",
                                    cmd_studio_chains)):
        sub = action(name, summary, handler)
        sub.add_argument("--project", metavar="P", help="only those of this project")
        json_option(sub)

    action = command_with_actions("model", "the model registry: register a trial's model, list, publish to git",
                                  EPILOG)
    sub = action("register", "register a trial's model as the next version of NAME; prints NAME:VERSION",
                 cmd_model_register)
    sub.add_argument("name", metavar="NAME", help="the model's name: letters, digits and underscores")
    trial_choice(sub)
    sub.add_argument("--validation", metavar="ID", help="its validation (default: its latest done one)")
    json_option(sub)
    sub = action("list", "every model version", cmd_model_list)
    json_option(sub)
    sub = action("show", "a model's versions, or one version", cmd_model_show)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("version", metavar="VERSION", type=int, nargs="?")
    json_option(sub)
    sub = action("publish", "push a version with its model card to a git repository; prints the commit",
                 cmd_model_publish)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("version", metavar="VERSION", type=int)
    sub.add_argument("--repository", required=True, metavar="URL",
                     help="https://..., ssh://... (or user@host:path) or file:///... (inside your folders)")
    sub.add_argument("--branch", help="default: the repository's default branch, else main")
    json_option(sub)
