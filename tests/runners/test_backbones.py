"""Backbones: offline creation, local checkpoints (.pth / .safetensors) and their error messages."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import runners
from runners.backbones import create_backbone, data_spec, feature_dim, load_checkpoint


def _trained_like(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_backbone(name)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pth_checkpoint_loads_every_weight(tmp_path):
    source = _trained_like("test_resnet", seed=123)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    fresh = _trained_like("test_resnet", seed=0)
    assert not _same_weights(fresh, source)
    loaded = create_backbone("test_resnet", path)
    assert _same_weights(loaded, source)


def test_safetensors_checkpoint_with_classifier_and_wrapper_prefix_loads(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    full = timm.create_model("test_resnet", pretrained=False, num_classes=7)  # has an ImageNet-style head "fc"
    state = {f"module.{k}": v.contiguous() for k, v in full.state_dict().items()}  # as saved from DDP
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    loaded = create_backbone("test_resnet", path)
    body = {k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in body.items())
    assert set(loaded.state_dict()) == set(body)


def test_nested_state_dict_is_unwrapped(tmp_path):
    source = _trained_like("test_resnet", seed=9)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": torch.tensor(3)}, path)
    assert _same_weights(create_backbone("test_resnet", path), source)


def test_missing_checkpoint_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError, match="nowhere.pth.*does not exist"):
        create_backbone("test_resnet", missing)


def test_checkpoint_of_another_architecture_is_refused_with_the_keys(tmp_path):
    path = tmp_path / "convnext.pth"
    torch.save(create_backbone("test_convnext").state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit backbone.*missing \(e\.g\..*unexpected") as info:
        create_backbone("test_resnet", path)
    assert "--backbone" in str(info.value)


def test_checkpoint_with_a_wrong_shape_is_refused(tmp_path):
    state = create_backbone("test_resnet").state_dict()
    key = "conv1.weight" if "conv1.weight" in state else next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    path = tmp_path / "bad-shape.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="another shape"):
        load_checkpoint(create_backbone("test_resnet"), path)


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        create_backbone("test_resnet", path)


def test_unknown_backbone_suggests_similar_names():
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet_nonexistent'.*similar"):
        create_backbone("resnet_nonexistent")


def test_data_spec_and_feature_dim_come_from_the_model():
    model = create_backbone("test_resnet")
    spec = data_spec(model)
    assert spec.in_chans == 3 and len(spec.mean) == 3 and all(s > 0 for s in spec.std)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, feature_dim(model))


def test_trial_with_a_checkpoint_differs_from_random_init_and_is_keyed_by_it(tmp_path, tiny_config, prepared):
    path = tmp_path / "other.pth"
    torch.save(_trained_like("test_resnet", seed=77).state_dict(), path)
    config = dataclasses.replace(tiny_config, checkpoint=str(path))
    with_ckpt = runners.prepare(config, progress=False)
    assert with_ckpt.embedding_key != prepared.embedding_key
    assert runners.run_trial(config, "bce", {}, seed=0).value != runners.run_trial(tiny_config, "bce", {}, seed=0).value
