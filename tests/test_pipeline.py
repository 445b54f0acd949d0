"""The whole DVC pipeline on tiny params, in a temporary copy of the repository.

One run checks what a researcher relies on: `dvc repro` builds everything from the
generated demo, a second `dvc repro` runs nothing, changing only an SVM param reruns only
the SVM and evaluate stages, and a teammate's fresh clone gets every output with
`dvc pull` and has nothing to recompute.
"""

from __future__ import annotations

import compileall
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from avemotion.params.loader import TRACE_ENV, UNTRACKED, declared_params

pytestmark = pytest.mark.slow

COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    ".ci-venv",
    ".git",
    "data",
    "models",
    "metrics",
    "dvclive",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "tmp",
    "cache",
)
TINY = {
    "base": {"n_jobs": 2, "segment_s": 2.0},
    "demo": {"n_speakers": 6, "takes_per_emotion": 1, "emotions": ["happy", "sad"]},
    "data": {"classes": ["happy", "sad"]},
    "split": {"protocol": "speaker", "n_folds": 2, "folds": [0]},
    "train": {"epochs": 2, "batch_size": 8, "by_modality": {}},
    "models": {
        "cpu": {
            "audio": {"channels": [4, 4, 8, 8], "fc": [16, 16]},
            "video": {"channels": [4, 4, 8, 8, 8, 8, 8, 8], "fc": [16, 16], "input_size": 32},
        }
    },
    # cross-fit stacking with 2 inner CNNs per branch, and eGeMAPS beside the CNN features
    "fusion": {
        "cross_fit_folds": 2,
        "stacking": "cross_fit",
        "inner_folds": [0, 1],
        "inputs": ["cnn", "egemaps"],
    },
    "functionals": {"sets": ["egemaps"]},
}


def merge(tree: dict, update: dict) -> dict:
    for key, value in update.items():
        tree[key] = merge(tree.get(key, {}), value) if isinstance(value, dict) else value
    return tree


def trace_dir(cwd: Path) -> Path:
    """Where the stages of the project at ``cwd`` record the params keys they read."""
    return cwd.parent / "params-trace"


def run(args: list[str], cwd: Path, expect_ok: bool = True, stdout_only: bool = False) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd / "src")}
    env[TRACE_ENV] = str(trace_dir(cwd))
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"  # `python` in dvc.yaml is this venv's
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if expect_ok:
        assert done.returncode == 0, (
            f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    else:
        assert done.returncode != 0, f"{' '.join(args)} should have failed:\n{done.stdout}"
    return done.stdout if stdout_only else done.stdout + done.stderr


def dvc(*args: str, cwd: Path, expect_ok: bool = True, stdout_only: bool = False) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, expect_ok, stdout_only)


def git(*args: str, cwd: Path) -> str:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    params = merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "tiny", cwd=root)
    first = dvc("repro", cwd=root)
    assert {"make_demo", "index", "evaluate"} <= stages_run(first)
    return root


def test_repro_builds_every_output_and_a_second_repro_runs_nothing(project):
    metrics = json.loads((project / "metrics" / "metrics.json").read_text())
    for system in ("elm_svm", "elm_svm_cnn_crossfit", "audio_cnn", "mfcc_svm", "egemaps_svm"):
        for part in ("test", "val"):  # evaluate scored every system on both
            assert 0.0 <= metrics[part][system]["acc"] <= 1.0, (part, system)
    assert "compare_svm" not in metrics["test"]  # functionals.sets has no compare: not run
    inner = sorted(p.name for p in (project / "data/features/fold0/inner").glob("*.h5"))
    assert inner == ["fc_audio_0.h5", "fc_audio_1.h5", "fc_video_0.h5", "fc_video_1.h5"]
    assert (project / "metrics" / "report.md").read_text().count("|") > 10
    confusion = json.loads((project / "metrics" / "confusion.json").read_text())
    assert confusion and {"actual", "predicted"} <= set(confusion[0])
    assert list((project / "dvclive").glob("*/plots/metrics/train/loss.tsv"))
    assert (project / "models" / "final" / "audio" / "best.pt").is_file()
    assert (project / "models" / "bundle" / "bundle.json").is_file()
    second = dvc("repro", cwd=project)
    assert stages_run(second) == set()
    assert "Data and pipelines are up to date" in dvc("status", cwd=project)


def test_bytecode_beside_the_sources_leaves_every_stage_up_to_date(project):
    """Importing the package writes __pycache__/*.pyc into its folders (unless
    PYTHONDONTWRITEBYTECODE is set): a folder dep (src/avemotion/params, ...) must hash
    the sources only, or every stage would look changed after the code ran once."""
    assert compileall.compile_dir(project / "src", quiet=1, force=True)
    assert list((project / "src" / "avemotion" / "params").glob("__pycache__/*.pyc"))
    assert "Data and pipelines are up to date" in dvc("status", cwd=project)


def test_a_teammate_pulls_outputs_instead_of_recomputing(project, tmp_path):
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "team", str(remote), cwd=project)
    dvc("push", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "remote", cwd=project)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)
    assert "up to date" in dvc("status", cwd=clone)
    assert stages_run(dvc("repro", cwd=clone)) == set()


def test_every_stage_reads_exactly_the_params_dvc_yaml_declares(project):
    """The keys each stage's code read in the first repro (recorded by
    avemotion.params.stage_params) are the keys its dvc.yaml entry lists, no more (DVC
    would not rerun it when an undeclared key changes) and no fewer (it would rerun for
    nothing)."""
    read: dict[str, set[str]] = {}
    for trace in trace_dir(project).glob("*.json"):
        record = json.loads(trace.read_text())
        read.setdefault(record["stage"], set()).update(record["read"])
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert set(read) == set(stages) - {"check_params"}
    for stage in read:
        declared = set(declared_params(stage, project / "dvc.yaml"))
        assert read[stage] == declared, f"{stage}: reads {read[stage]}, declares {declared}"
        assert not declared & UNTRACKED


@pytest.mark.parametrize(
    ("section", "edit", "message"),
    [
        # one unknown key, one bad value (every message is tested in test_params.py)
        ("train", {"epoch": 5}, "unknown key `train.epoch`; did you mean `train.epochs`?"),
        ("video", {"hist_bins": "many"}, "`video.hist_bins` = 'many': should be a valid integer"),
    ],
)
def test_a_bad_key_in_params_yaml_stops_repro_before_any_work(project, section, edit, message):
    params_file = project / "params.yaml"
    good = params_file.read_text()
    bad = yaml.safe_load(good)
    bad[section].update(edit)
    params_file.write_text(yaml.safe_dump(bad, sort_keys=False))
    try:
        output = dvc("repro", cwd=project, expect_ok=False)
    finally:
        params_file.write_text(good)
    assert stages_run(output) == {"check_params"}
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], output
    assert stages_run(dvc("repro", cwd=project)) <= {"check_params"}


def test_a_bundle_predicts_what_the_pipeline_evaluated(project, tmp_path):
    """Fold 0's trained models exported as a bundle and run by `avemotion predict` in a
    fresh process give fold 0's test clips the clip-level probabilities evaluate scored
    (elm_svm), to 1e-6 (the prediction tables keep 6 significant digits)."""
    import numpy as np
    import pandas as pd

    from avemotion.evaluation import clip_level, read_predictions
    from avemotion.params import load_params
    from avemotion.predict.bundle import ModelFiles, export_bundle

    params = load_params(project / "params.yaml")
    files = ModelFiles(
        {m: project / "models" / m / "fold0" / "best.pt" for m in ("audio", "video")},
        project / "models" / "fusion" / "fold0" / "systems",
    )
    export_bundle(params, list(params.data.classes), files, tmp_path / "fold0")
    index = pd.read_csv(project / "data" / "index.csv")
    test = index[index["fold"] == 0]
    paths = [str(project / p) for p in test["path"]]
    run(
        [
            sys.executable,
            "-m",
            "avemotion",
            "predict",
            *paths,
            "--model",
            str(tmp_path / "fold0"),
            "--format",
            "json",
            "-o",
            str(tmp_path / "fold0.json"),
        ],
        project,
    )
    clips = json.loads((tmp_path / "fold0.json").read_text())["clips"]
    expected = clip_level(read_predictions(project / "data/predictions/fold0/elm_svm.csv"))
    expected = expected.set_index("clip_id")
    assert len(clips) == len(test) == len(expected)
    for clip_id, clip in zip(test["clip_id"], clips, strict=True):
        assert clip["status"] == "ok" and clip["modalities"] == ["audio", "video"]
        got = [clip["probabilities"][c] for c in params.data.classes]
        want = expected.loc[clip_id, ["p0", "p1"]].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    final = run(
        [
            sys.executable,
            "-m",
            "avemotion",
            "predict",
            paths[0],
            "--model",
            str(project / "models" / "bundle"),
        ],
        project,
    )
    assert "1 clip: 1 predicted, 0 failed" in final


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_server():
    """A local S3 stand-in (moto's server mode) on 127.0.0.1 and a free port, with one
    bucket; stopped when the test ends."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="team-key",
            aws_secret_access_key="team-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="lab")
        yield endpoint, client
    finally:
        server.stop()


def add_s3_remote(cwd: Path, endpoint: str) -> None:
    """The README's commands: the remote in git, the credentials in .dvc/config.local."""
    dvc("remote", "add", "-f", "-d", "s3team", "s3://lab/avemotion", cwd=cwd)
    dvc("remote", "modify", "s3team", "endpointurl", endpoint, cwd=cwd)
    dvc("remote", "modify", "--local", "s3team", "access_key_id", "team-key", cwd=cwd)
    dvc("remote", "modify", "--local", "s3team", "secret_access_key", "team-secret", cwd=cwd)


def test_a_team_shares_the_cache_through_s3(project, tmp_path, s3_server):
    """dvc push to an S3-compatible store, a fresh clone pulls everything and has nothing
    to recompute; the credentials never reach git."""
    endpoint, client = s3_server
    add_s3_remote(project, endpoint)
    dvc("push", cwd=project)
    stored = client.list_objects_v2(Bucket="lab", Prefix="avemotion/")
    assert stored["KeyCount"] > 0
    git("add", "-A", cwd=project)
    git("commit", "-qm", "s3 remote", cwd=project)
    assert "team-secret" not in (project / ".dvc" / "config").read_text()
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    add_s3_remote(clone, endpoint)  # a teammate sets their own credentials
    dvc("pull", cwd=clone)
    assert "up to date" in dvc("status", cwd=clone)
    assert stages_run(dvc("repro", cwd=clone)) == set()
    assert (clone / "models" / "bundle" / "bundle.json").is_file()


#: What an SVM param reruns: the SVMs, the bundle that holds the final one, and evaluate.
#: check_params reruns on any edit of params.yaml; its output stays the same, so nothing
#: downstream of it reruns for that.
SVM_STAGES = {"check_params", "fit_svm@0", "fit_svm_final", "export_model", "evaluate"}


def test_queued_svm_experiments_run_on_two_workers_and_rerun_only_the_svm(project):
    """The README's grid: two experiments queued, run by `dvc queue start -j 2`, both in
    `dvc exp show`, each having rerun only :data:`SVM_STAGES` (the rest from the cache)."""
    import time

    git("add", "-A", cwd=project)
    git("commit", "-qm", "before the queue", "--allow-empty", cwd=project)
    names = []
    for c in ("0.5", "2.0"):
        queued = dvc("exp", "run", "--queue", "-S", f"fusion.svm_C={c}", cwd=project)
        names.append(re.search(r"Queued experiment '([^']+)'", queued).group(1))
    dvc("queue", "start", "-j", "2", cwd=project)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            status = dvc("queue", "status", cwd=project)
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(5)
    finally:
        subprocess.run(  # stop the workers whatever happened; fails only if none ran
            [sys.executable, "-m", "dvc", "queue", "stop", "--kill"],
            cwd=project,
            capture_output=True,
            timeout=120,
        )
    assert "Failed" not in status, status
    shown = json.loads(dvc("exp", "show", "--json", cwd=project, stdout_only=True))
    values = set()
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for run in experiment["revs"]:
                if run["data"]["metrics"]:  # finished: evaluate wrote metrics/metrics.json
                    fusion = run["data"]["params"]["params.yaml"]["data"]["fusion"]
                    values.add(float(fusion["svm_C"]))
    assert {0.5, 2.0} <= values
    for name in names:
        assert stages_run(dvc("queue", "logs", name, cwd=project)) == SVM_STAGES, name
    shows = dvc("exp", "show", "--no-pager", "--csv", cwd=project)
    assert "fusion.svm_C" in shows and "val.elm_svm.acc" in shows and "test.elm_svm.uar" in shows
