"""The 26 classes of the CXR-LT 2023 challenge (MIMIC-CXR-LT) and their positive training images.

Source: ``cxr-lt-2023-class-counts.csv`` of the project's reference data (figures as published with a
public CXR-LT 2023 solution's training configuration): the challenge's column order, positives out of
:data:`TRAIN_IMAGES` training images, 2.40 labels per image on average, head/tail ratio
89,140 / 543 = 164. Copied here because the package must run without that folder. The built-in
synthetic data set draws its class names and priors from this table.
"""

from __future__ import annotations

TRAIN_IMAGES = 264_849
CLASS_COUNTS: tuple[tuple[str, int], ...] = (
    ("Atelectasis", 67_597),
    ("Calcification of the Aorta", 4_361),
    ("Cardiomegaly", 76_900),
    ("Consolidation", 16_038),
    ("Edema", 38_574),
    ("Emphysema", 4_255),
    ("Enlarged Cardiomediastinum", 30_119),
    ("Fibrosis", 1_158),
    ("Fracture", 11_883),
    ("Hernia", 4_049),
    ("Infiltration", 10_218),
    ("Lung Lesion", 2_533),
    ("Lung Opacity", 79_931),
    ("Mass", 5_529),
    ("No Finding", 41_869),
    ("Nodule", 7_663),
    ("Pleural Effusion", 69_240),
    ("Pleural Other", 675),
    ("Pleural Thickening", 3_369),
    ("Pneumomediastinum", 788),
    ("Pneumonia", 48_093),
    ("Pneumoperitoneum", 543),
    ("Pneumothorax", 14_983),
    ("Subcutaneous Emphysema", 2_453),
    ("Support Devices", 89_140),
    ("Tortuous Aorta", 3_499),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CLASS_COUNTS)


def prevalences() -> dict[str, float]:
    """Share of training images positive for each class, in the challenge's column order."""
    return {name: count / TRAIN_IMAGES for name, count in CLASS_COUNTS}
