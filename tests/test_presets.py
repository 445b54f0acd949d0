"""Presets name only params that exist, and turn into arguments dvc exp run accepts."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from avemotion.errors import BadInputError
from avemotion.presets import flatten, load_preset, set_arguments

PRESETS = sorted(p.stem for p in (REPO / "params").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_key_exists_in_params_yaml(name):
    defaults = flatten(yaml.safe_load((REPO / "params.yaml").read_text()))
    preset = load_preset(name, REPO / "params")
    assert preset
    sections = {k.rsplit(".", n)[0] for k in defaults for n in range(1, k.count(".") + 1)}
    unknown = [key for key in preset if key not in defaults and key not in sections]
    assert not unknown, f"{name} sets keys params.yaml does not have: {unknown}"


def test_paper_preset_values_and_arguments():
    preset = load_preset("paper-enterface", REPO / "params")
    assert preset["train.lr"] == 0.001 and preset["base.profile"] == "paper"  # from `extends`
    assert preset["split.protocol"] == "kfold"
    arguments = set_arguments(preset)
    assert "augment.rotation_deg=[4,8,16,32]" in arguments
    assert all(" " not in a for a in arguments)
    assert arguments[::2] == ["-S"] * len(preset)


def test_unknown_preset(tmp_path):
    with pytest.raises(BadInputError, match="no preset 'nope'"):
        load_preset("nope", tmp_path)
