"""ImageTransform (resize, channels, the backbone's mean/std) and make_loader over file and array splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runners.config import DataConfig
from runners.data import ImageTransform, load_dataset, make_loader
from runners.data.base import Split

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_transform_normalises_with_the_given_statistics():
    transform = ImageTransform(8, *IMAGENET, in_chans=3)
    white = np.full((2, 5, 7), 255, np.uint8)  # gray, another size: resized and repeated to 3 channels
    out = transform(white)
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    for c in range(3):
        expected = (1.0 - IMAGENET[0][c]) / IMAGENET[1][c]
        assert torch.allclose(out[:, c], torch.full((2, 8, 8), expected), atol=1e-5)


def test_rgb_to_one_channel_uses_luma_and_averaged_statistics():
    transform = ImageTransform(4, *IMAGENET, in_chans=1)
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    out = transform(red)
    mean, std = sum(IMAGENET[0]) / 3, sum(IMAGENET[1]) / 3
    assert out.shape == (1, 1, 4, 4)
    assert torch.allclose(out, torch.full_like(out, (0.299 - mean) / std), atol=1e-5)


def test_transform_rejects_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="in_chans must be 1 or 3"):
        ImageTransform(8, (0.5,), (0.5,), in_chans=2)
    with pytest.raises(ValueError, match="std must be positive"):
        ImageTransform(8, (0.5,), (0.0,))
    with pytest.raises(ValueError, match=r"expected images \(B, H, W\) or \(B, H, W, 3\)"):
        ImageTransform(8, (0.5,), (0.5,))(np.zeros((1, 4, 4, 2), np.uint8))


def test_file_loader_serves_mixed_png_and_jpeg(manifest, cache_dir):
    ds = load_dataset(DataConfig(name="csv", path=str(manifest()), uncertain="ignore"), cache_dir)
    batches = list(make_loader(ds.train, ImageTransform(12, *IMAGENET), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 3, 12, 12), (2, 3, 12, 12)]
    labels = torch.cat([b[1] for b in batches])
    assert torch.equal(labels, torch.from_numpy(ds.train.labels.astype(np.float32)))
    assert torch.equal(torch.cat([b[2] for b in batches]), torch.ones(6, 3))
    # The file path gives the same tensor as transforming the decoded image directly.
    direct = ImageTransform(12, *IMAGENET)(ds.train.image(1)[None])
    assert torch.allclose(batches[0][0][1:2], direct)


def test_array_loader_shuffles_reproducibly_and_passes_the_mask():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (10, 3)).astype(np.uint8)
    mask = np.ones((10, 3), bool)
    mask[4, 2] = False
    split = Split("train", labels=labels, mask=mask, images=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8))
    transform = ImageTransform(6, (0.5,), (0.5,), in_chans=1)

    def order(seed: int) -> list[list[int]]:
        return [b[1].tolist() for b in make_loader(split, transform, 3, shuffle=True, seed=seed)]

    assert order(7) == order(7)
    assert order(7) != order(8)
    sequential = list(make_loader(split, transform, 4))
    assert torch.equal(torch.cat([b[2] for b in sequential]), torch.from_numpy(mask.astype(np.float32)))
    first = sequential[0][0]
    assert torch.allclose(first, (torch.from_numpy(split.images[:4]).float()[:, None] / 255 - 0.5) / 0.5)
    with pytest.raises(ValueError, match=r"indices must be a 1-D list of rows in \[0, 10\)"):
        make_loader(split, transform, 4, indices=[0, 10])
