"""The ``clusterlab experiment`` commands: the ``--search`` parser in-process, then real experiments.

The parser only turns text into the request's ``search`` object; what a search may
be is the service's to say (experiments/spec.py), so the end-to-end tests check that
the CLI refuses what the API refuses, naming the field, with nothing created.
"""

from __future__ import annotations

import pytest
from clusterlab_server import cli
from clusterlab_server.registry import Template, load_template
from clusterlab_server.service import JobError
from test_jobs_service import REPO

SEARCHED = Template(
    id="searched", name="Searched", kind="training", category="test", description="", entry=("true",),
    folder=REPO, parameters={"type": "object", "properties": {
        "epochs": {"type": "integer", "minimum": 1}, "rate": {"type": "number"}, "shuffle": {"type": "boolean"},
        "model": {"type": "string", "enum": ["small", "large"]}, "workers": {"type": ["integer", "null"]},
        "any": {},
        "options": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]}},
        "loose": {"type": "object"},
        "layers": {"type": "object", "properties": {"depth": {"type": "integer"}},
                   "additionalProperties": {"type": "number"}},
    }},
)
IMAGE_TRAIN = load_template(REPO / "templates" / "image-classification-train" / "template.yaml")


def search(text: str, template: Template | None = SEARCHED) -> dict:
    return cli.convert_search([cli.key_spec(text)], template)


@pytest.mark.parametrize("text, value", [
    # values, typed as -p types them
    ("epochs=1,2,3", [1, 2, 3]), ("epochs=5", [5]), ("rate=0.1,1e-3,2", [0.1, 0.001, 2]),
    ("shuffle=true,false", [True, False]), ("model=small,large", ["small", "large"]),
    ("workers=null,4", [None, 4]), ("any=1,x", ["1", "x"]), ("unknown=1,2", ["1", "2"]),
    ('model=["a,b", "c"]', ["a,b", "c"]), ("epochs=[1, 2]", [1, 2]),
    # ranges: integers for integer parameters, numbers else
    ("rate=uniform:0.1:0.5", {"min": 0.1, "max": 0.5}),
    ("rate=loguniform:1e-4:1e-1", {"min": 0.0001, "max": 0.1, "log": True}),
    ("epochs=uniform:1:10", {"min": 1, "max": 10}),
    ("rate=uniform:-1:1", {"min": -1, "max": 1}),
    ("epochs=uniform:2:64:step=2", {"min": 2, "max": 64, "step": 2}),
    ("rate=uniform:0:1:step=0.25", {"min": 0, "max": 1, "step": 0.25}),
    ("rate=loguniform:1e-4:1:count=5", {"min": 0.0001, "max": 1, "log": True, "count": 5}),
    ("epochs=uniform:1:9:step=2:count=5", {"min": 1, "max": 9, "step": 2, "count": 5}),
    ("epochs=uniform:1:9:count=5:step=2", {"min": 1, "max": 9, "step": 2, "count": 5}),
    (" rate = uniform: 1 : 2 : count = 3 ", {"min": 1, "max": 2, "count": 3}),
    ("workers=uniform:0:8", {"min": 0, "max": 8}),
    ("unknown=uniform:1:2.5", {"min": 1, "max": 2.5}),
    # inside an object parameter: its additionalProperties, or its declared properties
    ("options.lr=loguniform:1e-4:1e-1", {"min": 0.0001, "max": 0.1, "log": True}),
    ("options.lr=0.1,0.01", [0.1, 0.01]), ("options.opt=adam,sgd", ["adam", "sgd"]),
    ("loose.x=1,2", ["1", "2"]), ("layers.depth=uniform:1:4", {"min": 1, "max": 4}),
    ("layers.width=uniform:1:4", {"min": 1, "max": 4}), ("layers.width=0.5,1", [0.5, 1]),
])
def test_search_specs_are_read_by_the_schema_type(text, value):
    key = text.partition("=")[0].strip()
    assert search(text) == {key: value}


def test_the_real_templates_types_are_used():
    assert search("batch_size=32,64", IMAGE_TRAIN) == {"batch_size": [32, 64]}
    assert search("learning_rate=0.01,0.001", IMAGE_TRAIN) == {"learning_rate": [0.01, 0.001]}
    assert search("image_size=uniform:16:64:step=16", IMAGE_TRAIN) == {
        "image_size": {"min": 16, "max": 64, "step": 16}}
    # bounds are not the parser's to check: the service refuses them, naming the field
    assert search("learning_rate=uniform:-1:100", IMAGE_TRAIN) == {"learning_rate": {"min": -1, "max": 100}}


def test_several_searches_and_a_later_one_for_the_same_key_wins():
    pairs = [cli.key_spec(t) for t in ("epochs=1,2", "rate=uniform:0:1", "epochs=3")]
    assert cli.convert_search(pairs, SEARCHED) == {"epochs": [3], "rate": {"min": 0, "max": 1}}
    assert cli.convert_search(None, SEARCHED) == {}


@pytest.mark.parametrize("text, field, words", [
    ("epochs=1,x", "search.epochs", "expected an integer, got 'x'"),
    ("epochs=1.5", "search.epochs", "expected an integer"),
    ("rate=fast", "search.rate", "expected a number"),
    ("rate=nan", "search.rate", "expected a finite number"),
    ("shuffle=yes", "search.shuffle", "expected true or false"),
    ("rate=", "search.rate", "got nothing"),
    ("rate=  ", "search.rate", "got nothing"),
    ("rate=[0.1", "search.rate", "expected a JSON array"),
    ("rate=uniform:1", "search.rate", "expected uniform:MIN:MAX"),
    ("rate=uniform:", "search.rate", "expected uniform:MIN:MAX"),
    ("rate=loguniform::1", "search.rate", "expected loguniform:MIN:MAX"),
    ("rate=uniform:a:1", "search.rate", "min: expected a number, got 'a'"),
    ("rate=uniform:0:inf", "search.rate", "max: expected a finite number"),
    ("epochs=uniform:1:2.5", "search.epochs", "max: expected an integer, got '2.5'"),
    ("epochs=uniform:1:8:step=0.5", "search.epochs", "step: expected an integer"),
    ("rate=uniform:0:1:count=2.5", "search.rate", "count: expected an integer"),
    ("rate=uniform:0:1:count=", "search.rate", "count: expected an integer"),
    ("rate=uniform:0:1:steps=2", "search.rate", "unknown option 'steps=2'"),
    ("rate=uniform:0:1:2", "search.rate", "unknown option '2'"),
    ("rate=uniform:0:1:log=true", "search.rate", "unknown option 'log=true'"),
    ("rate=uniform:0:1:count=2:count=3", "search.rate", "count is given twice"),
    ("options.lr=uniform:x:1", "search.options.lr", "min: expected a number"),
    ("layers.depth=1,2.5", "search.layers.depth", "expected an integer"),
])
def test_bad_specs_are_refused_naming_the_field(text, field, words):
    with pytest.raises(JobError) as e:
        search(text)
    assert (e.value.status, e.value.field) == (400, field)
    assert words in e.value.message, e.value.message
    assert cli.exit_code(e.value.status) == 2
    assert cli.error_text(e.value).startswith(f"{field}: ")


@pytest.mark.parametrize("text", ["epochs", "=1,2", " =uniform:0:1"])
def test_a_search_without_key_is_a_usage_error(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=SPEC"):
        cli.key_spec(text)
