import numpy as np
import pytest
import torch

from qosbatch.core.errors import UserError
from qosbatch.models.backends import export_onnx, make_backend, sample_batch
from qosbatch.models.flops import count_flops_per_sample, count_params
from qosbatch.models.loading import load_torch_module, parse_shape, resolve_model
from qosbatch.models.zoo import ZOO, build_zoo_model


def test_zoo_models_have_the_published_parameter_counts():
    # torchvision's counts for the same architectures.
    expected = {"alexnet": 61_100_840, "resnet18": 11_689_512, "resnet50": 25_557_032,
                "mobilenet": 3_504_872}  # fmt: skip
    for name, count in expected.items():
        assert count_params(build_zoo_model(name)) == count


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_runs_on_its_input_shape(name):
    entry = ZOO[name]
    with torch.inference_mode():
        out = build_zoo_model(name)(torch.zeros((2, *entry.input_shape)))
    assert out.shape[0] == 2


def test_zoo_weights_are_the_same_for_the_same_seed_and_differ_otherwise():
    a, b, c = (build_zoo_model("mlp", s) for s in (0, 0, 1))
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_flops_count_two_per_multiply_accumulate():
    mlp = build_zoo_model("mlp")
    macs = 784 * 1024 + 1024 * 1024 + 1024 * 10
    assert count_flops_per_sample(mlp, (784,)) == 2 * macs


@pytest.mark.parametrize("name", ["mlp", "small-cnn"])
def test_onnx_and_torch_backends_agree_on_the_same_weights(name, tmp_path):
    ref = resolve_model(name)
    x = sample_batch(ref, 5, seed=3)
    torch_out = make_backend(ref, "torch").run(x)
    onnx_out = make_backend(ref, "onnx", onnx_dir=tmp_path).run(x)
    assert onnx_out.shape == torch_out.shape
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-5)


def test_onnx_export_has_a_dynamic_batch_and_is_reused(tmp_path):
    ref = resolve_model("mlp")
    path = export_onnx(ref, tmp_path)
    assert export_onnx(ref, tmp_path) == path
    backend = make_backend(resolve_model(path), "onnx")
    for batch in (1, 7):
        assert backend.run(sample_batch(ref, batch)).shape == (batch, 10)


def test_users_own_models_load_from_every_format(tmp_path):
    module = build_zoo_model("mlp")
    x = torch.zeros((2, 784))
    ts = tmp_path / "m.pt"
    torch.jit.trace(module, x).save(str(ts))
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(module, (x,)), str(pt2))
    onnx = export_onnx(resolve_model("mlp"), tmp_path)
    expected = module(x).detach().numpy()
    for path, backend in ((ts, "torch"), (pt2, "torch"), (onnx, "onnx")):
        ref = resolve_model(str(path), (784,))
        out = make_backend(ref, backend, onnx_dir=tmp_path).run(x.numpy())
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_factory_models_load_and_need_an_input_shape(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def tiny():\n"
        "    return torch.nn.Linear(4, 2)\n"
        "def not_a_module():\n"
        "    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = resolve_model("usermodels:tiny", (4,))
    assert load_torch_module(ref).out_features == 2
    with pytest.raises(UserError, match="--input-shape"):
        resolve_model("usermodels:tiny")
    with pytest.raises(UserError, match=r"not a torch\.nn\.Module"):
        resolve_model("usermodels:not_a_module", (4,))
    with pytest.raises(UserError, match="cannot load factory"):
        resolve_model("no_such_package_xyz:make", (4,))


def test_bad_model_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="unknown model 'resnet999'"):
        resolve_model("resnet999")
    with pytest.raises(UserError, match="model file not found"):
        resolve_model(str(tmp_path / "missing.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    with pytest.raises(UserError, match="does not load"):
        resolve_model(str(broken))
    with pytest.raises(UserError, match="use --backend onnx"):
        make_backend(resolve_model(export_onnx(resolve_model("mlp"), tmp_path)), "torch")


def test_parse_shape():
    assert parse_shape("3,224,224") == (3, 224, 224)
    assert parse_shape("3x32x32") == (3, 32, 32)
    for bad in ("", "a,b", "3,0"):
        with pytest.raises(UserError, match="--input-shape"):
            parse_shape(bad)


def test_the_zoo_names_every_architecture_and_naming_needs_no_torch():
    import subprocess
    import sys

    from qosbatch.models.nets import BUILDERS

    assert set(BUILDERS) == set(ZOO)
    code = (
        "import sys; import qosbatch.serve.app, qosbatch.cli.serve_cmds; "
        "from qosbatch.models.loading import resolve_model; resolve_model('resnet18'); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
