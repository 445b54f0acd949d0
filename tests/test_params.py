"""The params layer: one schema, one loader, errors in one line, stages see what they declare."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from avemotion.errors import BadInputError
from avemotion.params import Params, load_params, stage_params, validate_params
from avemotion.params.loader import (
    UndeclaredParamError,
    closest_key,
    declared_params,
)
from avemotion.presets import load_preset


def shipped() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_edit(section: str, edit: dict) -> dict:
    tree = shipped()
    tree.setdefault(section, {}).update(edit)
    return tree


def error_of(tree: dict) -> str:
    with pytest.raises(BadInputError) as caught:
        validate_params(tree)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_params_yaml_is_the_schema_defaults():
    """The values params.yaml ships with and the schema's defaults are the same, so code
    that builds Params() (tests, benchmarks) runs what `dvc repro` runs; and params.yaml
    lists every key of every section, so `dvc exp run -S section.key=...` reaches each."""
    assert load_params(REPO / "params.yaml") == Params()
    tree = shipped()
    for section, model in Params.model_fields.items():
        missing = set(model.annotation.model_fields) - set(tree[section])
        assert not missing, f"params.yaml's {section}: lacks {sorted(missing)}"


@pytest.mark.parametrize(
    ("section", "edit", "expected"),
    [
        ("train", {"epoch": 5}, "unknown key `train.epoch`; did you mean `train.epochs`?"),
        ("fusion", {"svm_c": 2}, "unknown key `fusion.svm_c`; did you mean `fusion.svm_C`?"),
        ("audio", {"nmels": 40}, "did you mean `audio.n_mels`?"),
        (
            "train",
            {"by_modality": {"audio": {"epoch": 3}}},
            "did you mean `train.by_modality.audio.epochs`?",
        ),
    ],
)
def test_an_unknown_key_names_the_closest_valid_one(section, edit, expected):
    assert expected in error_of(with_edit(section, edit))


@pytest.mark.parametrize(
    ("section", "edit", "expected"),
    [
        ("video", {"hist_bins": "many"}, "`video.hist_bins` = 'many': should be a valid integer"),
        ("video", {"hist_bins": 1}, "`video.hist_bins` = 1: should be greater than or equal to 2"),
        ("split", {"protocol": "rand"}, "'speaker', 'loso', 'fixed', 'kfold' or 'random'"),
        ("fusion", {"svm_gamma": "wide"}, "should be 'scale' or 'auto' or a valid number"),
        ("fusion", {"elm_members": 0}, "`fusion.elm_members` = 0: should be greater than 0"),
        ("base", {"modalities": ["audio", "text"]}, "`base.modalities.1` = 'text'"),
        ("base", {"n_jobs": 0}, "`base.n_jobs` = 0"),
        ("base", {"backend": "ray"}, "`base.backend` = 'ray': should be 'processes' or 'dask'"),
        ("base", {"dask_scheduler": "tcp://127.0.0.1:8786"}, "only used with backend: dask"),
        ("base", {"backend": "dask", "dask_scheduler": "localhost"}, "as tcp://host:port"),
        ("base", {"backend": "dask", "dask_scheduler": "tcp://10.0.0.5:8786"}, ""),
        ("train", {"lr": -1}, "`train.lr` = -1: should be greater than 0"),
        ("base", {"profile": "gpu"}, "base.profile='gpu' is not a profile"),
        ("baseline", {"n_mfcc": 40}, "n_mfcc=40 must be <= n_filters=26"),
        ("fusion", {"inner_folds": [0, 1]}, "inner_folds must be [] with stacking: paper"),
        (
            "fusion",
            {"stacking": "cross_fit", "inner_folds": [1, 2]},
            "needs inner_folds: [0, 1, ..., K-1]",
        ),
        (
            "fusion",
            {"inputs": ["cnn"], "gender_inputs": ["egemaps"], "elm2_input": "hidden"},
            "must equal gender_inputs ['egemaps']; use elm2_input: features_and_gender",
        ),
        ("fusion", {"inputs": ["egemaps"], "gender_inputs": ["egemaps"], "stacking": "paper"}, ""),
        ("train", {"optimizer": "adam"}, "`train.optimizer` = 'adam': should be 'sgd' or 'adamw'"),
        (
            "models",
            {
                "cpu": {
                    "audio": {"channels": [4], "fc": [8]},
                    "video": shipped()["models"]["cpu"]["video"],
                }
            },
            "audio CNN has 4",
        ),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(section, edit, expected):
    if not expected:  # a valid combination
        validate_params(with_edit(section, edit))
        return
    assert expected in error_of(with_edit(section, edit))


def test_fusion_inputs_must_be_built_by_functionals_sets():
    tree = with_edit("fusion", {"inputs": ["compare"], "gender_inputs": ["compare"]})
    tree["functionals"] = {"sets": ["egemaps"]}
    assert "name ['compare'], which functionals.sets ['egemaps'] does not build" in error_of(tree)


def test_values_are_converted_to_their_types():
    params = validate_params(with_edit("split", {"test_speakers": [1, 2], "seed": "7"}))
    assert params.split.test_speakers == ["1", "2"] and params.split.seed == 7
    assert validate_params({"base": {"modalities": ["video", "audio"]}}).base.modalities == (
        "audio",
        "video",
    )


def test_closest_key_is_none_for_nonsense():
    assert closest_key("zzz.qqq") is None


def test_load_params_refuses_a_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(BadInputError, match="must hold a mapping"):
        load_params(path)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "params").glob("*.yaml")))
def test_every_preset_gives_valid_params(name):
    tree = shipped()
    for dotted, value in load_preset(name, REPO / "params").items():
        section, _, key = dotted.partition(".")
        node = tree[section]
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    validate_params(tree)


def test_the_paper_augments_only_enterface():
    """Sections 3.4-3.5: no augmentation on RML and SAVEE; 3.3: rotations and noise on
    eNTERFACE'05."""
    for name in ("paper", "paper-random", "paper-rml", "paper-savee"):
        preset = load_preset(name, REPO / "params")
        assert not preset.get("augment.rotation_deg") and not preset.get("augment.snr_db")
    enterface = load_preset("paper-enterface", REPO / "params")
    assert enterface["augment.rotation_deg"] == [4, 8, 16, 32]
    assert enterface["augment.snr_db"] == [15, 20, 25, 30]


def write_project(tmp_path, stage_keys: list[str]):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    pipeline = {"stages": {"work": {"cmd": "true", "params": stage_keys}}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    return tmp_path / "params.yaml", tmp_path / "dvc.yaml"


def test_a_stage_reads_only_what_it_declares(tmp_path):
    params_path, pipeline = write_project(tmp_path, ["video", "base.seed"])
    view = stage_params("work", params_path, pipeline)
    assert view.video.hist_bins == 64 and view.base.seed == 42
    assert view.base.n_jobs == -1  # speed only: readable, never tracked
    assert view.base.backend == "processes" and view.base.dask_scheduler is None
    assert view.read == {"video", "base.seed"}
    with pytest.raises(UndeclaredParamError, match="`base.profile`"):
        _ = view.base.profile
    with pytest.raises(UndeclaredParamError, match="section `fusion`"):
        _ = view.fusion


def test_declared_params_of_a_foreach_stage(tmp_path):
    pipeline = tmp_path / "dvc.yaml"
    pipeline.write_text(
        yaml.safe_dump({"stages": {"s": {"foreach": [0], "do": {"params": ["a"]}}}})
    )
    assert declared_params("s", pipeline) == ("a",)
    with pytest.raises(BadInputError, match="has no stage 't'"):
        declared_params("t", pipeline)


def test_stage_docstrings_name_every_key_their_dvc_yaml_entry_declares():
    """A reader of `stages/<stage>.py` sees the params it reads, as dvc.yaml lists them:
    `base.seed`, `base.{seed,modalities}`, or a whole section in backticks."""
    import ast
    import re

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, entry in stages.items():
        entry = entry.get("do", entry)
        commands = entry["cmd"] if isinstance(entry["cmd"], list) else [entry["cmd"]]
        scripts = sorted({s for c in commands for s in re.findall(r"stages/(\w+)\.py", c)})
        assert scripts, f"stage {name} runs no stages/*.py script"
        sources = [(REPO / "stages" / f"{script}.py").read_text() for script in scripts]
        doc = " ".join(" ".join(ast.get_docstring(ast.parse(s)) or "" for s in sources).split())
        named = set(re.findall(r"`+([a-z_]+(?:\.[A-Za-z_0-9]+)?)`+", doc))
        for section, keys in re.findall(r"`+([a-z_]+)\.\{([^}]*)\}`+", doc):
            named |= {f"{section}.{key.strip()}" for key in keys.split(",")}
        missing = [key for key in declared_params(name, REPO / "dvc.yaml") if key not in named]
        assert not missing, f"stages/{name}.py's docstring does not name {missing}"


@pytest.mark.parametrize(
    ("final", "per_fold"),
    [
        ("train_final", "train_cnn"),
        ("fit_elm_final", "fit_elm"),
        ("fit_svm_final", "fit_svm"),
    ],
)
def test_the_final_model_is_trained_as_every_fold_is(final, per_fold):
    """The final model's stages run the fold stages' scripts with the same params, so a
    param that changes how a fold trains changes the final model the same way (but the
    inner CNNs of cross-fit stacking, which the final model does not train)."""
    final_keys = set(declared_params(final, REPO / "dvc.yaml"))
    fold_keys = set(declared_params(per_fold, REPO / "dvc.yaml")) - {"fusion.inner_folds"}
    assert final_keys == fold_keys
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    command = stages[final].get("do", stages[final])["cmd"]
    assert f"stages/{per_fold}.py" in command and f"--stage {final}" in command
