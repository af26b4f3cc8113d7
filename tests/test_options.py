"""user_options: what may reach a backend, and the quotas."""

import pytest
from clusterlab_spawner.options import (
    Choice,
    OptionsError,
    check_quota,
    options_from_form_data,
    validate_user_options,
)
from clusterlab_spawner.profiles import parse_profiles

PROFILES = {
    p.id: p
    for p in parse_profiles({"profiles": [
        {"id": "cpu", "display_name": "CPU", "cpus": 2, "memory_gb": 4, "max_hours": 8, "default_hours": 2},
        {"id": "gpu", "display_name": "GPU", "cpus": 4, "memory_gb": 16, "gpus": 2,
         "max_hours": 24, "default_hours": 4},
    ]})
}


def test_a_valid_choice_and_the_default_hours():
    assert validate_user_options({"profile": "gpu", "hours": 3}, PROFILES) == Choice(PROFILES["gpu"], 3.0)
    assert validate_user_options({"profile": "cpu"}, PROFILES).hours == 2
    assert validate_user_options({"profile": "cpu", "hours": None}, PROFILES).seconds == 7200


@pytest.mark.parametrize(
    "options, field",
    [
        (["cpu"], ""),
        ({"profile": "cpu", "partition": "debug"}, "partition"),
        ({"profile": "nope"}, "profile"),
        ({"profile": ["cpu"]}, "profile"),
        ({"hours": 1}, "profile"),
        ({"profile": "cpu", "hours": True}, "hours"),
        ({"profile": "cpu", "hours": "1"}, "hours"),
        ({"profile": "cpu", "hours": float("nan")}, "hours"),
        ({"profile": "cpu", "hours": 0}, "hours"),
        ({"profile": "cpu", "hours": 8.01}, "hours"),
    ],
)
def test_refusals_name_the_field(options, field):
    with pytest.raises(OptionsError) as error:
        validate_user_options(options, PROFILES)
    assert error.value.field == field


def test_form_data_reads_only_the_forms_fields():
    form = {"profile": ["gpu"], "hours": ["1.5"], "_xsrf": ["x"], "cmd": ["/bin/sh"]}
    assert options_from_form_data(form) == {"profile": "gpu", "hours": 1.5}
    assert options_from_form_data({"profile": ["cpu"], "hours": [""]}) == {"profile": "cpu", "hours": None}
    with pytest.raises(OptionsError, match="hours must be a number"):
        options_from_form_data({"profile": ["cpu"], "hours": ["two"]})


def test_quotas():
    gpu, cpu = Choice(PROFILES["gpu"], 1), Choice(PROFILES["cpu"], 1)
    check_quota(gpu, [gpu], max_servers_per_user=2, max_gpus_per_user=4)
    check_quota(cpu, [cpu] * 10, max_servers_per_user=0, max_gpus_per_user=0)  # 0: no limit
    with pytest.raises(OptionsError, match="the limit is 2"):
        check_quota(cpu, [cpu, cpu], max_servers_per_user=2, max_gpus_per_user=0)
    with pytest.raises(OptionsError, match="you already use 2; the limit is 3 GPU"):
        check_quota(gpu, [gpu, cpu], max_servers_per_user=0, max_gpus_per_user=3)
