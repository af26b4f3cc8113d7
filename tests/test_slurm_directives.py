"""Profiles become #SBATCH lines: the whole of the Slurm backend's translation."""

from clusterlab_spawner.options import Choice
from clusterlab_spawner.profiles import parse_profiles
from clusterlab_spawner.slurm_directives import job_name, sbatch_directives, slurm_time

CPU, GPU = parse_profiles({"profiles": [
    {"id": "cpu", "display_name": "CPU", "cpus": 2, "memory_gb": 4, "max_hours": 8, "default_hours": 2,
     "slurm": {"partition": "cpu"}},
    {"id": "gpu", "display_name": "GPU", "cpus": 8, "memory_gb": 1.5, "gpus": 2, "gpu_type": "a100",
     "max_hours": 72, "default_hours": 4,
     "slurm": {"partition": "gpu", "account": "ai-lab", "qos": "high", "constraint": "ib&nvlink"}},
]})


def test_cpu_profile():
    assert sbatch_directives(Choice(CPU, 1.5), "clusterlab-ann", "/home/ann/slurm-%j.log") == [
        "#SBATCH --job-name=clusterlab-ann",
        "#SBATCH --output=/home/ann/slurm-%j.log",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=4096M",
        "#SBATCH --time=0-01:30:00",
        "#SBATCH --partition=cpu",
    ]


def test_gpu_profile_with_every_extra():
    lines = sbatch_directives(Choice(GPU, 50), "j", "o")
    assert "#SBATCH --gres=gpu:a100:2" in lines
    assert "#SBATCH --mem=1536M" in lines
    assert "#SBATCH --time=2-02:00:00" in lines
    assert lines[-4:] == [
        "#SBATCH --partition=gpu",
        "#SBATCH --account=ai-lab",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=ib&nvlink",
    ]


def test_wall_time_rounds_up_to_a_minute():
    assert slurm_time(5 / 3600) == "0-00:01:00"
    assert slurm_time(0.25) == "0-00:15:00"
    assert slurm_time(24) == "1-00:00:00"


def test_job_names_are_safe():
    assert job_name("ann") == "clusterlab-ann"
    assert job_name("ann", "training") == "clusterlab-ann-training"
    assert job_name("a b;$(x)", "s/1") == "clusterlab-a_b___x_-s_1"


MULTI = parse_profiles({"profiles": [
    {"id": "cpu-2node", "display_name": "2 nodes", "nodes": 2, "cpus": 4, "memory_gb": 2, "max_hours": 8,
     "default_hours": 1},
    {"id": "gpu-2x4", "display_name": "2 × 4 GPUs", "nodes": 2, "cpus": 16, "memory_gb": 64, "gpus": 4,
     "max_hours": 8, "default_hours": 1},
]})


def test_a_size_of_several_nodes_gets_a_task_per_gpu_or_per_node_on_each_node():
    cpu, gpu = MULTI
    assert sbatch_directives(Choice(cpu, 1), "j", "o", requeue=True)[2:7] == [
        "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=2048M",
        "#SBATCH --time=0-01:00:00"]
    lines = sbatch_directives(Choice(gpu, 1), "j", "o", requeue=True)
    # memory and GPUs per node, as Slurm counts them; each node's cores shared among its 4 processes
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=65536M", "#SBATCH --gres=gpu:4"} <= set(lines)
    assert lines[-1] == "#SBATCH --requeue"


def test_jobs_are_requeued_when_their_node_fails_and_servers_are_not():
    assert sbatch_directives(Choice(CPU, 1), "j", "o", requeue=True)[-1] == "#SBATCH --requeue"
    assert sbatch_directives(Choice(CPU, 1), "j", "o", requeue=False)[-1] == "#SBATCH --no-requeue"
    assert not any("requeue" in line for line in sbatch_directives(Choice(CPU, 1), "j", "o"))
