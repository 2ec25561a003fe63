# SPDX-License-Identifier: Apache-2.0
"""Containers (Apptainer definition, Dockerfile, install script) and cluster launch scripts."""

import importlib.metadata as md
import os
import re
import site
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from physicsnemo_climax import cli
from physicsnemo_climax.launch import Container, slurm_script, torchrun_script

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
IMAGE = "nvcr.io/nvidia/physicsnemo/physicsnemo"
SRC = "/opt/physicsnemo-climax"
#: The running interpreter's scripts folder (its `climax`, `torchrun`), whatever PATH says.
SCRIPTS = sysconfig.get_path("scripts")


def definition_sections(text: str) -> tuple[dict, dict]:
    """Header keywords and ``%section`` bodies of an Apptainer definition file."""
    header, sections, current = {}, {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        elif current is None:
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
        else:
            sections[current].append(line.strip())
    return header, sections


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ containers
def test_apptainer_definition_bootstraps_ngc_and_installs_without_torch():
    header, sections = definition_sections((CONTAINERS / "climax.def").read_text())
    assert header == {"Bootstrap": "docker", "From": f"{IMAGE}:{{{{ PHYSICSNEMO_TAG }}}}"}
    [default] = sections["arguments"]
    assert re.fullmatch(r"PHYSICSNEMO_TAG=\d\d\.\d\d", default)
    # every file the package build needs is copied, and exists here
    copied = dict(line.split() for line in sections["files"])
    for source, target in copied.items():
        assert (ROOT / source).exists(), source
        assert target == f"{SRC}/{source}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {
        project["project"]["readme"],
        *project["project"]["license-files"],
        "pyproject.toml",
        *project["tool"]["setuptools"]["package-dir"].values(),
        "physicsnemo_climax",
    }
    assert needed <= set(copied)
    assert sections["post"] == [f"bash {SRC}/containers/install.sh {SRC}"]
    assert not any("torch" in line for line in sections["post"])
    assert sections["runscript"] == ['exec climax "$@"']
    assert sections["test"] == ["climax doctor"]


def test_dockerfile_matches_the_definition():
    steps = dockerfile_instructions((CONTAINERS / "Dockerfile").read_text())
    _, sections = definition_sections((CONTAINERS / "climax.def").read_text())
    assert steps[0] == ("ARG", sections["arguments"][0])  # the same default tag
    assert steps[1] == ("FROM", f"{IMAGE}:${{PHYSICSNEMO_TAG}}")
    copies = [args for op, args in steps if op == "COPY"]
    assert copies == sections["files"]
    assert [args for op, args in steps if op == "RUN"] == sections["post"]
    assert ("ENTRYPOINT", '["climax"]') in steps


def test_install_script_holds_the_installed_cuda_stack():
    script = (CONTAINERS / "install.sh").read_text()
    out = subprocess.run(
        ["bash", str(CONTAINERS / "install.sh"), "--pins"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    ).stdout.split()
    pins = dict(line.split("==") for line in out)
    assert pins["torch"] == md.version("torch") and pins["numpy"] == md.version("numpy")
    if "nvidia-dali-cuda130" in {d.metadata["Name"] for d in md.distributions()}:
        assert pins["nvidia-dali-cuda130"] == md.version("nvidia-dali-cuda130")
    assert not any(name.startswith("nvidia-physicsnemo") for name in pins)  # may be upgraded
    [install] = [line for line in script.splitlines() if "pip install" in line]
    assert '--constraint "$before"' in install and "torch" not in install
    assert 'diff -u "$before" "$after"' in script  # and checked afterwards


@pytest.mark.slow
def test_install_script_installs_into_an_environment_that_has_torch(tmp_path):
    """The real script in a venv seeing this machine's packages: package installed, torch untouched."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the new environment sees the running interpreter's packages: those of its venv too, when it has one
    # (--system-site-packages alone shows the base interpreter's)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "running_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "CLIMAX_EXTRAS": "",
        "VIRTUAL_ENV": str(venv),
        "PYTHON": str(python),
    }
    result = subprocess.run(
        ["bash", str(CONTAINERS / "install.sh"), str(ROOT)], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "torch and the CUDA stack unchanged" in result.stdout
    assert "ready: the config's requests are met here" in result.stdout
    installed = list((venv / "lib").glob("python*/site-packages/physicsnemo_climax/templates/slurm.sbatch"))
    assert installed, "the package (with its templates) is installed in the venv"


# ------------------------------------------------------------------ launch scripts
def test_slurm_script_for_n_nodes_and_g_gpus():
    text = slurm_script(
        ["train task=pretrain data=era5", "climax evaluate run_dir=runs/x"],
        nodes=3,
        gpus_per_node=4,
        container=Container("climax.sif", ("/data", "/scratch:/s")),
        partition="gpu",
        time="12:00:00",
        port=29600,
    )
    for line in (
        "#SBATCH --nodes=3",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=12:00:00",
        "export MASTER_PORT=29600",
        "export SLURM_LAUNCH_NODE_IPADDR=${SLURM_LAUNCH_NODE_IPADDR:-$MASTER_ADDR}",
    ):
        assert line in text.splitlines(), line
    srun = (
        "srun --nodes=3 --ntasks-per-node=4 --gpus-per-node=4 --cpus-per-task=8 --kill-on-bad-exit=1 \\\n"
        "    singularity exec --nv --bind /data,/scratch:/s climax.sif climax "
    )
    assert text.count(srun) == 2
    assert srun + "train task=pretrain data=era5\n" in text and srun + "evaluate run_dir=runs/x\n" in text
    assert "{{" not in text and "--account" not in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # valid bash


def test_torchrun_script_and_bad_input():
    text = torchrun_script(["downscale train --config-name config_training_hrrr_mini_regression"], 8)
    assert (
        "torchrun --standalone --nnodes=1 --nproc-per-node=8 --no-python \\\n"
        "    climax downscale train --config-name config_training_hrrr_mini_regression"
    ) in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    with pytest.raises(ValueError, match="gpus_per_node=0"):
        slurm_script(["train"], nodes=2, gpus_per_node=0)
    with pytest.raises(ValueError, match="nodes=0"):
        slurm_script(["train"], nodes=0, gpus_per_node=2)
    with pytest.raises(ValueError, match="no command"):
        torchrun_script([], 2)
    with pytest.raises(ValueError, match="quotation"):
        torchrun_script(["train 'task=pretrain"], 2)


def test_launch_cli_writes_the_script_and_refuses_a_typo(tmp_path, capsys):
    out = tmp_path / "job.sbatch"
    cli.main(
        [
            "launch",
            "slurm",
            "--nodes",
            "2",
            "--gpus-per-node",
            "4",
            "--image",
            "climax.sif",
            "--run",
            "train task=finetune_global",
            "-o",
            str(out),
        ]
    )
    assert out.stat().st_mode & 0o111 and "sbatch" in capsys.readouterr().out
    assert "--nodes=2 --ntasks-per-node=4" in out.read_text()
    with pytest.raises(SystemExit, match="'trian task=pretrain' is not a valid climax command"):
        cli.main(["launch", "torchrun", "--gpus-per-node", "2", "--run", "trian task=pretrain"])


def _run(script: str, tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "job.sh"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    # the scripts call `climax` and `torchrun`: those of the running environment, activated or not
    env["PATH"] = f"{SCRIPTS}:{env['PATH']}"
    for key in ("SLURM_LAUNCH_NODE_IPADDR", "MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_slurm_script_runs_ranks_that_meet_through_distributed_manager(tmp_path):
    """A fake srun starts G ranks here, without SLURM_LAUNCH_NODE_IPADDR, as some sites' srun does."""
    if not (Path(SCRIPTS) / "climax").exists():
        pytest.skip("the climax command is not installed in the running environment")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "scontrol").write_text("#!/bin/bash\necho localhost\necho otherhost\n")
    (shims / "srun").write_text("""#!/bin/bash
echo "$@" > "$LOGDIR/srun.args"
n=1
while [[ $1 == --* ]]; do [[ $1 == --ntasks-per-node=* ]] && n=${1#*=}; shift; done
pids=()
for ((i = 0; i < n; i++)); do
    SLURM_PROCID=$i SLURM_NPROCS=$n SLURM_LOCALID=$i "$@" > "$LOGDIR/rank$i.out" 2>&1 &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
""")
    (shims / "singularity").write_text("""#!/bin/bash
echo "$@" > "$LOGDIR/singularity.args"
shift
while [[ $1 == --* ]]; do [[ $1 == --bind ]] && shift; shift; done
shift
exec "$@"
""")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    script = slurm_script(
        ["doctor --distributed"],
        nodes=1,
        gpus_per_node=2,
        container=Container("climax.sif", ("/data",)),
        port=free_port(),
    )
    result = _run(
        script,
        tmp_path,
        {"PATH": f"{shims}:{os.environ['PATH']}", "LOGDIR": str(tmp_path), "SLURM_JOB_NODELIST": "localhost,otherhost"},
    )
    logs = [(tmp_path / f"rank{r}.out").read_text() for r in range(2)]
    assert result.returncode == 0, result.stderr[-2000:] + "".join(logs)[-4000:]
    for rank, log in enumerate(logs):
        assert f"rank {rank} of 2 (cpu): all-reduce over gloo ok" in log
        assert f"SLURM: rank {rank} of 2; rendezvous at localhost" in log
    assert (tmp_path / "singularity.args").read_text().split() == [
        "exec",
        "--nv",
        "--bind",
        "/data",
        "climax.sif",
        "climax",
        "doctor",
        "--distributed",
    ]
    assert (tmp_path / "srun.args").read_text().startswith("--nodes=1 --ntasks-per-node=2 --gpus-per-node=2")


@pytest.mark.slow
def test_torchrun_script_runs_two_ranks(tmp_path):
    if not (Path(SCRIPTS) / "climax").exists():
        pytest.skip("the climax command is not installed in the running environment")
    result = _run(torchrun_script(["doctor --distributed"], 2), tmp_path, {})
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        assert f"rank {rank} of 2 (cpu): all-reduce over gloo ok" in result.stdout
