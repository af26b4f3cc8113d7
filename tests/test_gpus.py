"""The GPU status of a server: its grant, and nvidia-smi's figures when there is one.

No GPU exists on these machines, so a stand-in ``nvidia-smi`` (a script that
prints what the real one prints for this query) plays the driver here.
"""

from clusterlab_server import gpus

SMI_OUTPUT = """\
0, GPU-aaaa, NVIDIA H100 80GB HBM3, 37, 10240, 81559, 41
1, GPU-bbbb, NVIDIA H100 80GB HBM3, 0, 3, 81559, 30
2, GPU-cccc, NVIDIA H100 80GB HBM3, [N/A], 0, 81559, 29
"""


def fake_smi(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncat <<'EOF'\n" + SMI_OUTPUT + "EOF\n")
    smi.chmod(0o755)
    return str(smi)


def test_no_grant_says_so():
    assert gpus.status({}, smi="") == {"granted": [], "gpus": [], "message": "no GPU granted"}
    assert gpus.granted({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpus.granted({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == []


def test_a_grant_without_nvidia_smi_is_still_shown():
    answer = gpus.status({"CUDA_VISIBLE_DEVICES": "0,1"}, smi="")
    assert answer["granted"] == ["0", "1"] and "nvidia-smi is not available" in answer["message"]


def test_only_the_granted_gpus_are_reported_with_their_use(tmp_path):
    answer = gpus.status({"CUDA_VISIBLE_DEVICES": "1,GPU-aaaa"}, smi=fake_smi(tmp_path))
    assert [g["index"] for g in answer["gpus"]] == ["0", "1"]
    first = answer["gpus"][0]
    assert (first["utilization_percent"], first["memory_used_mib"], first["memory_total_mib"]) == (37, 10240, 81559)
    assert answer["message"] == "GPU 0 37%, GPU 1 0%"
    (unknown,) = gpus.parse_smi(SMI_OUTPUT.splitlines()[2])
    assert unknown["utilization_percent"] is None
