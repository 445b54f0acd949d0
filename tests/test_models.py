"""The CNN branches: the paper's sizes exactly, the CPU profile's shapes, weight loading."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from avemotion.errors import BadInputError
from avemotion.models import (
    BranchSpec,
    branch_spec,
    build_audio_cnn,
    build_video_cnn,
    channels_first,
    count_parameters,
    fc_feature_dim,
    load_conv_weights,
)
from avemotion.params import Params, load_params, validate_params

ROOT = Path(__file__).resolve().parents[1]

# The numbers of paper sections 2.3.1 / 2.3.2 (video at C3D's 112 x 112, see models.py).
PAPER = {
    "audio": {"channels": [64, 128, 256, 512], "fc": [4096, 4096]},
    "video": {
        "channels": [64, 128, 256, 256, 512, 512, 512, 512],
        "fc": [4096, 4096],
        "input_size": 112,
    },
}
CPU = {
    "audio": {"channels": [16, 32, 64, 128], "fc": [256, 256]},
    "video": {"channels": [16, 32, 64, 64, 128, 128, 128, 128], "fc": [256, 256], "input_size": 64},
}
TREE = {"base": {"profile": "cpu"}, "models": {"dropout": 0.5, "cpu": CPU, "paper": PAPER}}
PARAMS = validate_params(TREE)


def with_profile(params: Params, profile: str) -> Params:
    """``params`` with another ``base.profile``, checked again."""
    tree = params.model_dump()
    return validate_params({**tree, "base": {**tree["base"], "profile": profile}})


def conv_params(c_in: int, c_out: int, kernel_volume: int) -> int:
    return c_in * c_out * kernel_volume + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


@pytest.fixture(scope="module")
def torch_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_paper_video_cnn_is_c3d(torch_threads) -> None:
    torch.manual_seed(0)
    model = build_video_cnn(6, PAPER["video"]).eval()
    widths = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    names = ["conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"]
    for name, c_in, c_out in zip(names, widths[:-1], widths[1:], strict=True):
        assert getattr(model, name).weight.shape == (c_out, c_in, 3, 3, 3)
    assert [m.kernel_size for n, m in model.named_children() if n.startswith("pool")] == [
        (1, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
    ]
    # 16 x 112 x 112 -> pools -> 1 x 4 x 4 (pool5 pads H, W by 1): C3D's fc6 of 8192 inputs.
    assert model.fc6.in_features == 512 * 1 * 4 * 4 == 8192
    assert (model.fc7.in_features, model.fc7.out_features) == (4096, 4096)
    assert (model.fc8.in_features, model.fc8.out_features) == (4096, 6)

    expected = (
        sum(conv_params(a, b, 27) for a, b in pairwise(widths))
        + linear_params(8192, 4096)
        + linear_params(4096, 4096)
        + linear_params(4096, 6)
    )
    assert count_parameters(model) == expected
    assert 77e6 < expected < 79e6  # "about 78M" with 4096-wide FCs

    with torch.no_grad():  # the one paper-size forward (~39 GMAC)
        features = model.features(torch.randn(1, 3, 16, 112, 112))
        logits = model.fc8(features)
    assert features.shape == (1, 4096) and logits.shape == (1, 6)
    assert bool(torch.isfinite(logits).all()) and bool((features >= 0).all())


def test_paper_audio_cnn_sizes(torch_threads) -> None:
    torch.manual_seed(0)
    model = build_audio_cnn(6, PAPER["audio"]).eval()
    assert model.conv1a.weight.shape == (64, 3, 7, 7)
    assert model.conv2a.weight.shape == (128, 64, 7, 7)
    assert model.conv3a.weight.shape == (256, 128, 3, 3)
    assert model.conv4a.weight.shape == (512, 256, 3, 3)
    assert [type(model.pool1), type(model.pool2), type(model.pool3)] == [
        torch.nn.MaxPool2d,
        torch.nn.AvgPool2d,
        torch.nn.AvgPool2d,
    ]
    assert not hasattr(model, "pool4")  # three pools for four convolutions
    # 30 x 100 -> 15 x 50 -> 7 x 25 -> 3 x 12 ('same' convolutions, floor 2 x 2 pools).
    assert model.fc5.in_features == 512 * 3 * 12
    expected = (
        conv_params(3, 64, 49)
        + conv_params(64, 128, 49)
        + conv_params(128, 256, 9)
        + conv_params(256, 512, 9)
        + linear_params(512 * 3 * 12, 4096)
        + linear_params(4096, 4096)
        + linear_params(4096, 6)
    )
    assert count_parameters(model) == expected
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 30, 100))
    assert logits.shape == (2, 6)
    assert model.feature_dim == fc_feature_dim(PAPER["audio"]) == 4096
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("branch", ["audio", "video"])
def test_cpu_profile_forward_and_features(torch_threads, branch: str) -> None:
    torch.manual_seed(0)
    spec = branch_spec(PARAMS, branch)
    if branch == "audio":
        model, x = build_audio_cnn(4, spec), torch.randn(3, 3, 30, 100)
    else:
        model, x = build_video_cnn(4, spec), torch.randn(3, 3, 16, 64, 64)
    assert model.input_shape == tuple(x.shape[1:])
    model.eval()  # feature extraction for the fusion runs in eval mode: no dropout
    with torch.no_grad():
        logits, features = model(x), model.features(x)
    assert logits.shape == (3, 4) and features.shape == (3, 256) == (3, fc_feature_dim(spec))
    last = list(model.children())[-1]
    torch.testing.assert_close(logits, last(features))


@pytest.mark.parametrize("branch", ["audio", "video"])
def test_channels_last_is_a_layout_not_a_different_network(torch_threads, branch: str) -> None:
    """The nets keep their weights channels-last (the fast layout for CPU convolutions).
    It is the same network: its logits and first-layer gradients match a float64 copy of
    the same weights in the default layout to float32 rounding."""
    torch.manual_seed(0)
    spec = branch_spec(PARAMS, branch)
    build = build_audio_cnn if branch == "audio" else build_video_cnn
    shape = (4, 3, 30, 100) if branch == "audio" else (4, 3, 16, 64, 64)
    model, x = build(4, spec), torch.randn(*shape)
    layout = torch.channels_last if branch == "audio" else torch.channels_last_3d
    assert model.memory_format == layout
    assert model.conv1a.weight.is_contiguous(memory_format=layout)
    exact = build(4, spec)
    exact.load_state_dict(model.state_dict())  # loads into either layout
    exact = exact.double().to(memory_format=torch.contiguous_format)
    assert exact.conv1a.weight.is_contiguous()
    results = []
    for net, batch in ((model, x), (exact, x.double().contiguous())):
        net.eval()
        net.zero_grad()
        logits = torch.nn.Sequential.forward(net, batch) if net is exact else net(batch)
        logits.sum().backward()
        results.append((logits.detach().double(), net.conv1a.weight.grad.double()))
    (logits, grad), (exact_logits, exact_grad) = results
    torch.testing.assert_close(logits, exact_logits, rtol=1e-5, atol=1e-5)
    assert (grad - exact_grad).norm() <= 1e-4 * exact_grad.norm()


def test_last_layer_starts_from_gaussian_0_01() -> None:
    torch.manual_seed(0)
    spec = BranchSpec(channels=(4, 4, 4, 4), fc=(4096,))
    model = build_audio_cnn(10, spec)
    weight = model.fc6.weight.detach()  # 40960 draws
    assert weight.shape == (10, 4096)
    assert abs(float(weight.std()) - 0.01) < 3e-4
    assert abs(float(weight.mean())) < 3e-4
    assert float(model.fc6.bias.detach().abs().max()) == 0.0
    assert float(model.fc5.weight.detach().std()) > 0.015  # hidden layers use Kaiming, not 0.01


def test_branch_spec_reads_the_profile_and_names_bad_keys() -> None:
    assert branch_spec(PARAMS, "video").channels == tuple(CPU["video"]["channels"])
    assert branch_spec(with_profile(PARAMS, "paper"), "video").input_size == 112
    tiny = {"audio": {"channels": [4] * 4, "fc": [8], "dropout": 0.2}, "video": CPU["video"]}
    custom = validate_params({"base": {"profile": "tiny"}, "models": {"tiny": tiny}})
    spec = branch_spec(custom, "audio")
    assert (spec.channels, spec.fc, spec.dropout) == ((4, 4, 4, 4), (8,), 0.2)
    assert branch_spec(custom, "video").dropout == 0.5  # models.dropout where none is given
    with pytest.raises(BadInputError, match="base.profile='gpu' is not a profile") as error:
        validate_params({**TREE, "base": {"profile": "gpu"}})
    assert "\n" not in str(error.value)
    bad = {"audio": CPU["audio"], "video": {"channels": [8], "fc": [8]}}
    with pytest.raises(BadInputError, match=r"models\.cpu.*video\.channels lists 1 widths.*8"):
        validate_params({"base": {"profile": "cpu"}, "models": {"cpu": bad}})


def test_too_small_input_is_refused() -> None:
    with pytest.raises(BadInputError, match="too small"):
        build_video_cnn(4, CPU["video"], input_size=8)


def test_channels_first_permutes_the_front_end_layout() -> None:
    video = np.arange(2 * 16 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 16, 5, 6, 3)
    tensor = channels_first(video)
    assert tensor.shape == (2, 3, 16, 5, 6) and tensor.dtype == torch.float32
    assert float(tensor[1, 2, 7, 4, 5]) == float(video[1, 7, 4, 5, 2])
    assert channels_first(np.zeros((4, 30, 100, 3))).shape == (4, 3, 30, 100)


def test_init_weights_load_convolutions_only(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_video_cnn(487, CPU["video"])  # e.g. a Sports-1M model: other class count
    path = tmp_path / "c3d.pt"
    torch.save(source.state_dict(), path)

    torch.manual_seed(2)
    fresh = build_video_cnn(4, CPU["video"])
    torch.manual_seed(2)
    loaded = build_video_cnn(4, CPU["video"], init_weights=path)
    for name in ("conv1a", "conv3b", "conv5b"):
        assert not torch.equal(getattr(fresh, name).weight, getattr(source, name).weight)
        torch.testing.assert_close(getattr(loaded, name).weight, getattr(source, name).weight)
        torch.testing.assert_close(getattr(loaded, name).bias, getattr(source, name).bias)
    torch.testing.assert_close(loaded.fc6.weight, fresh.fc6.weight)  # FC layers untouched
    assert loaded.fc8.out_features == 4


def test_init_weights_accept_c3d_pytorch_names(tmp_path: Path) -> None:
    source = build_video_cnn(4, CPU["video"])
    renamed = {
        "module." + key.replace("conv1a", "conv1").replace("conv2a", "conv2"): value
        for key, value in source.state_dict().items()
    }
    path = tmp_path / "c3d.pickle"
    torch.save({"state_dict": renamed}, path)
    target = build_video_cnn(4, CPU["video"])
    keys = load_conv_weights(target, path)
    assert "conv1a.weight" in keys and not any(k.startswith("fc") for k in keys)
    torch.testing.assert_close(target.conv2a.weight, source.conv2a.weight)


def test_init_weights_with_wrong_shapes_name_the_key(tmp_path: Path) -> None:
    narrow = {**CPU["video"], "channels": [8, 16, 32, 32, 64, 64, 64, 64]}
    path = tmp_path / "narrow.pt"
    torch.save(build_video_cnn(4, narrow).state_dict(), path)
    with pytest.raises(BadInputError, match=r"'conv1a\.weight' has shape \(8, 3, 3, 3, 3\)") as e:
        build_video_cnn(4, CPU["video"], init_weights=path)
    assert "(16, 3, 3, 3, 3)" in str(e.value) and str(path) in str(e.value)


def test_init_weights_missing_or_not_a_state_dict(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(BadInputError, match="not found") as e:
        build_audio_cnn(4, CPU["audio"], init_weights=missing)
    assert e.value.path == str(missing)

    text = tmp_path / "weights.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(BadInputError, match="state dict"):
        build_audio_cnn(4, CPU["audio"], init_weights=text)

    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], a_list)
    with pytest.raises(BadInputError, match="not a state dict"):
        build_audio_cnn(4, CPU["audio"], init_weights=a_list)

    video = tmp_path / "video.pt"
    torch.save(build_video_cnn(4, CPU["video"]).state_dict(), video)
    with pytest.raises(BadInputError, match=r"needs \(16, 3, 7, 7\)"):  # 3D file, 2D branch
        build_audio_cnn(4, CPU["audio"], init_weights=video)

    partial = build_audio_cnn(4, CPU["audio"]).state_dict()
    del partial["conv3a.bias"]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(BadInputError, match=r"no tensor for the model's 'conv3a\.bias'"):
        build_audio_cnn(4, CPU["audio"], init_weights=tmp_path / "partial.pt")


def test_params_yaml_profiles_match_the_paper() -> None:
    params = load_params(ROOT / "params.yaml")
    paper = with_profile(params, "paper")
    for branch in ("audio", "video"):
        spec = branch_spec(paper, branch)
        assert list(spec.channels) == PAPER[branch]["channels"]
        assert list(spec.fc) == PAPER[branch]["fc"]
        assert spec.dropout == 0.5 and not spec.batch_norm
    assert branch_spec(paper, "video").input_size == 112
    cpu = with_profile(params, "cpu")
    build_audio_cnn(4, branch_spec(cpu, "audio"))
    build_video_cnn(4, branch_spec(cpu, "video"))
