"""profiles.yaml: the shipped file is valid, and mistakes are named precisely."""

import copy

import pytest
import yaml
from clusterlab_spawner.profiles import ProfileError, load_profiles, parse_profiles
from clusterlab_spawner.spawner import DEFAULT_PROFILES

GOOD = {
    "profiles": [
        {"id": "small", "display_name": "Small", "cpus": 2, "memory_gb": 4,
         "max_hours": 8, "default_hours": 2},
        {"id": "gpu", "display_name": "GPU", "cpus": 4, "memory_gb": 16, "gpus": 1,
         "gpu_type": "a100", "max_hours": 24, "default_hours": 4,
         "slurm": {"partition": "gpu", "qos": "normal"}},
    ]
}


def with_change(index, **fields):
    data = copy.deepcopy(GOOD)
    data["profiles"][index].update(fields)
    return data


def test_shipped_sizes_load():
    profiles = {p.id: p for p in load_profiles(DEFAULT_PROFILES)}
    assert {"cpu-small", "cpu-large", "gpu-1", "gpu-4"} <= set(profiles)
    assert profiles["gpu-1"].gpus == 1 and profiles["cpu-small"].gpus == 0
    for p in profiles.values():
        assert p.default_hours <= p.max_hours


def test_summary_reads_as_a_person_would_say_it():
    profiles = parse_profiles(GOOD)
    assert profiles[0].summary == "2 cores · 4 GB"
    assert profiles[1].summary == "4 cores · 16 GB · 1 GPU (a100)"
    two = parse_profiles(with_change(1, nodes=2))[1]
    assert two.summary == "2 nodes × 4 cores · 16 GB · 1 GPU (a100)" and two.multi_node and two.tasks_per_node == 1


@pytest.mark.parametrize(
    "data, expected",
    [
        (with_change(0, cpus=-1), "profile 'small': field 'cpus': -1 is less than the minimum of 1"),
        (with_change(1, gpus=-2), "profile 'gpu': field 'gpus': -2 is less than the minimum of 0"),
        (with_change(0, colour="red"), "profile 'small': field 'colour'"),
        (with_change(1, slurm={"partiton": "gpu"}), "profile 'gpu': field 'slurm.partiton'"),
        (with_change(0, default_hours=10), "profile 'small': field 'default_hours': 10 is over max_hours (8)"),
        (with_change(0, memory_gb="lots"), "profile 'small': field 'memory_gb': 'lots' is not of type 'number'"),
        (with_change(1, id="small"), "profile 'small': field 'id': duplicate id"),
        (with_change(1, slurm={"partition": "gpu; rm -rf /"}), "profile 'gpu': field 'slurm.partition'"),
        (with_change(0, gpu_type="v100"), "profile 'small': field 'gpu_type': set, but 'gpus' is 0"),
        (with_change(0, nodes=0), "profile 'small': field 'nodes': 0 is less than the minimum of 1"),
        (with_change(0, nodes="two"), "profile 'small': field 'nodes': 'two' is not of type 'integer'"),
        ({"profiles": [{"id": "x", "display_name": "X", "cpus": 1, "memory_gb": 1, "max_hours": 1}]},
         "profile 'x': field 'default_hours': 'default_hours' is a required property"),
        ({"profiles": []}, "field 'profiles'"),
        ({"sizes": []}, "field 'sizes'"),
    ],
)
def test_mistakes_name_the_file_profile_and_field(data, expected):
    with pytest.raises(ProfileError) as error:
        parse_profiles(data, source="site/profiles.yaml")
    assert str(error.value).startswith("site/profiles.yaml")
    assert expected in str(error.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("profiles: [\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profiles(broken)


def test_hub_refuses_to_start_on_a_bad_profiles_file(tmp_path):
    from hub import Hub

    bad = tmp_path / "profiles.yaml"
    bad.write_text(yaml.safe_dump(with_change(0, cpus=0)))
    hub = Hub(tmp_path / "data", env={"CLUSTERLAB_PROFILES": str(bad)})
    with pytest.raises(RuntimeError) as error:
        hub.start()
    assert f"{bad}: profile 'small': field 'cpus': 0 is less than the minimum of 1" in str(error.value)
