"""DIVE classification: data, the class-conditional model, enumeration and inversion."""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import dive_d2  # noqa: F401
from dive_d2 import add_dive_config
from dive_d2.classification import (
    AdaptiveEnumerationClassifier,
    ClassInversion,
    EnumerationClassifier,
    build_classifier,
    classify,
    classify_dataset,
)
from dive_d2.data import PATCH_CLASSES, load_image_folder
from dive_d2.data.classification import CLASSIFICATION_SPLITS, generate_patch, patch_mask


def tiny_classifier(num_classes: int = 6, channels: int = 1, size: int = 8):
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "DiffusionClassifier"
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.FORMAT = "L" if channels == 1 else "RGB"
    node = cfg.MODEL.DIFFUSION_CLASSIFIER
    node.NUM_CLASSES, node.IN_CHANNELS, node.INPUT_SIZE = num_classes, channels, size
    node.BLOCK_OUT_CHANNELS, node.NORM_NUM_GROUPS = (8, 16), 4
    node.INVERSION.MAX_STEPS, node.INVERSION.PATIENCE = 10, 2
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def test_patch_classes_are_nested_size_colour_shape():
    assert len(PATCH_CLASSES) == 120
    assert PATCH_CLASSES[0] == "small-red-circle"
    assert PATCH_CLASSES[6] == "small-green-square"
    assert PATCH_CLASSES[40] == "medium-red-circle"
    assert PATCH_CLASSES[-1] == "large-white-cross"


def test_patch_masks_are_distinct_and_sized():
    masks = {shape: patch_mask(shape, 16, (0, 0)) for shape in ("circle", "square", "triangle", "diamond", "cross")}
    assert masks["square"].sum() == 16 * 16
    for a in masks:
        for b in masks:
            if a != b:
                assert (masks[a] != masks[b]).any(), (a, b)
    rows, cols = np.nonzero(masks["square"])
    assert (rows.min(), cols.min(), rows.max(), cols.max()) == (8, 8, 23, 23)  # centred in 32 px
    with pytest.raises(ValueError, match="hexagon"):
        patch_mask("hexagon", 10, (0, 0))


def test_generate_patch_is_deterministic_and_coloured():
    image = generate_patch(seed=1, class_index=PATCH_CLASSES.index("large-blue-square"), index=3)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, generate_patch(1, PATCH_CLASSES.index("large-blue-square"), 3))
    blue = (image == np.array([40, 80, 230], dtype=np.uint8)).all(axis=2)
    assert blue.sum() == 22 * 22


def test_split_sizes_follow_the_issue():
    assert len(CLASSIFICATION_SPLITS["dive_patches_train"]) == 12000
    assert len(CLASSIFICATION_SPLITS["dive_patches_val"]) == 1200
    assert len(CLASSIFICATION_SPLITS["dive_digits_cls_train"]) == 1300
    assert len(CLASSIFICATION_SPLITS["dive_digits_cls_test"]) == 497


def test_image_folder_reading_and_errors(tmp_path):
    for name, value in (("a", 10), ("b", 200)):
        os.makedirs(tmp_path / name)
        cv2.imwrite(str(tmp_path / name / "0.png"), np.full((8, 8), value, dtype=np.uint8))
    records = load_image_folder(str(tmp_path), ["a", "b"])
    assert [r["label"] for r in records] == [0, 1] and records[0]["height"] == 8
    with pytest.raises(ValueError, match="not classes"):
        load_image_folder(str(tmp_path), ["a"])
    with pytest.raises(FileNotFoundError):
        load_image_folder(str(tmp_path / "missing"), ["a"])


def test_training_forward_returns_the_image_loss():
    _, model = tiny_classifier()
    model.train()
    batch = [{"image": torch.randint(0, 255, (1, 8, 8), dtype=torch.uint8), "label": i} for i in range(3)]
    losses = model(batch)
    assert set(losses) == {"loss_image"} and losses["loss_image"].requires_grad
    with pytest.raises(ValueError, match="labels"):
        model([{"image": batch[0]["image"], "label": 6}])


def test_wrong_image_shape_names_the_file():
    _, model = tiny_classifier()
    with pytest.raises(ValueError, match=r"x\.png.*\(3, 8, 8\)"):
        model([{"image": torch.zeros(3, 8, 8, dtype=torch.uint8), "file_name": "x.png"}])
    with pytest.raises(ValueError, match=r"\(1, 16, 16\)"):
        model([{"image": torch.zeros(1, 16, 16, dtype=torch.uint8)}])


def test_config_rejects_channels_that_do_not_match_the_input_format():
    cfg, _ = tiny_classifier()
    cfg.INPUT.FORMAT = "RGB"
    with pytest.raises(ValueError, match="IN_CHANNELS"):
        build_model(cfg)


def test_enumeration_counts_every_class_on_every_pair():
    _, model = tiny_classifier()
    images = torch.randint(0, 255, (3, 1, 8, 8), dtype=torch.uint8)
    prediction, _ = classify(model, images, EnumerationClassifier(num_pairs=4, batch_size=7))
    assert prediction.cost.forwards == 3 * 6 * 4 and prediction.cost.backwards == 0
    assert prediction.labels.shape == (3,)
    subset = torch.tensor([1, 4])
    prediction, _ = classify(model, images, EnumerationClassifier(num_pairs=4), classes=subset)
    assert set(prediction.labels.tolist()) <= {1, 4}


def test_adaptive_enumeration_prunes_and_validates():
    _, model = tiny_classifier()
    images = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    prediction, _ = classify(model, images, AdaptiveEnumerationClassifier((2, 3), (2,)))
    assert prediction.cost.forwards == 2 * (6 * 2 + 2 * 3)
    with pytest.raises(ValueError, match="one 'keep' per round"):
        AdaptiveEnumerationClassifier((2, 3), (2, 1))


def test_inversion_snaps_to_real_classes_and_is_batch_independent():
    _, model = tiny_classifier()
    images = torch.randint(0, 255, (4, 1, 8, 8), dtype=torch.uint8)
    inversion = ClassInversion(max_steps=8, num_pairs=8, pairs_per_step=2, monitor_pairs=4, monitor_period=2,
                               patience=2)
    subset = torch.tensor([0, 2, 5])
    together, _ = classify(model, images, inversion, [10, 11, 12, 13], classes=subset)
    assert set(together.labels.tolist()) <= {0, 2, 5}
    again, _ = classify(model, images, inversion, [10, 11, 12, 13], classes=subset)
    assert torch.equal(together.labels, again.labels) and torch.equal(together.stop_step, again.stop_step)
    alone = [classify(model, images[i : i + 1], inversion, [10 + i], classes=subset)[0] for i in range(4)]
    assert together.labels.tolist() == [p.labels.item() for p in alone]
    assert together.stop_step.tolist() == [p.stop_step.item() for p in alone]
    assert together.cost.backwards > 0 and together.cost.forwards > together.cost.backwards


def test_inversion_finds_the_class_whose_row_explains_the_image_best():
    """On a model whose denoising error is smallest for one class row, inversion returns that class."""
    _, model = tiny_classifier(num_classes=5)
    table = model.class_table.vocabulary().detach()
    target = 3

    def error(images, class_embeddings, timesteps, noise):  # a quadratic bowl around row 3
        return ((class_embeddings - table[target]) ** 2).mean(dim=1) + 0.0 * images.flatten(1).mean(1)

    model.class_denoising_error = error
    images = torch.randint(0, 255, (3, 1, 8, 8), dtype=torch.uint8)
    inversion = ClassInversion(max_steps=100, learning_rate=0.1, num_pairs=4, pairs_per_step=2, monitor_pairs=2,
                               monitor_period=5, patience=0)
    prediction, _ = classify(model, images, inversion, [0, 1, 2])
    assert prediction.labels.tolist() == [target] * 3


def test_save_pretrained_round_trip(tmp_path):
    cfg, model = tiny_classifier()
    model.save_pretrained(str(tmp_path))
    _, other = tiny_classifier()
    torch.nn.init.zeros_(other.class_table.embedding.weight)
    other.load_pretrained(str(tmp_path))
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    args = (torch.tensor([10, 700]), torch.randn(2, 1, 8, 8))
    with torch.no_grad():
        expected = model.class_denoising_error(images, model.class_table(torch.tensor([1, 2])), *args)
        actual = other.class_denoising_error(images, other.class_table(torch.tensor([1, 2])), *args)
    torch.testing.assert_close(actual, expected)


def test_build_classifier_rejects_unknown_methods():
    cfg, _ = tiny_classifier()
    with pytest.raises(ValueError, match="METHOD"):
        build_classifier(cfg, "oracle")


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights", "classification", "digits_cls.pth")


@pytest.mark.skipif(not os.path.exists(SHIPPED), reason="shipped digits-cls weights not present")
def test_shipped_digits_model_both_methods_agree_on_easy_images():
    from detectron2.data import DatasetCatalog

    from dive_d2.loading import load_config, load_model

    cfg = load_config("configs/classification/digits_cls.yaml", ["MODEL.DEVICE", "cpu"])
    model = load_model(cfg, SHIPPED)
    records = DatasetCatalog.get("dive_digits_cls_test")[:8]
    enumeration = classify_dataset(model, records, build_classifier(cfg, "enumeration"), progress=False)
    inversion = classify_dataset(model, records, build_classifier(cfg, "inversion"), progress=False)
    easy = [i for i, (p, y) in enumerate(zip(enumeration.predictions, enumeration.labels, strict=True)) if p == y]
    assert len(easy) >= 6, enumeration
    agree = sum(inversion.predictions[i] == enumeration.predictions[i] for i in easy)
    assert agree >= len(easy) - 1, (inversion.predictions, enumeration.predictions)


def test_token_logits_snap_to_allowed_rows_with_straight_through_gradients():
    from dive_d2.inversion.parameterisations import TokenLogits

    vocabulary = torch.randn(5, 3)
    allowed = torch.tensor([[True, False, True, False, True]])
    logits = torch.zeros(2, 1, 5)
    logits[0, 0, 1] = 9.0  # a forbidden row's logit is ignored
    layout = TokenLogits(logits, allowed)
    assert set(layout.tokens(vocabulary).flatten().tolist()) <= {0, 2, 4}
    current = layout.embeddings(vocabulary, torch.arange(2), snap=True)
    torch.testing.assert_close(current, vocabulary[layout.tokens(vocabulary)])
    current.sum().backward()
    assert layout.logits.grad is not None and layout.logits.grad[:, :, [0, 2, 4]].abs().sum() > 0
    torch.testing.assert_close(layout.continuous(vocabulary)[1, 0], vocabulary[[0, 2, 4]].mean(0))


def test_logits_inversion_returns_candidate_classes():
    _, model = tiny_classifier()
    images = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    inversion = ClassInversion(max_steps=4, num_pairs=4, pairs_per_step=2, monitor_pairs=2, monitor_period=2,
                               parameterisation="logits")
    prediction, _ = classify(model, images, inversion, classes=torch.tensor([1, 3]))
    assert set(prediction.labels.tolist()) <= {1, 3}
    with pytest.raises(ValueError, match="parameterisation"):
        ClassInversion(parameterisation="box")


def test_generate_class_images_is_seeded_and_shaped():
    from dive_d2.sampling import generate_class_images

    _, model = tiny_classifier()
    labels = torch.tensor([0, 5])
    first = generate_class_images(model, labels, torch.Generator().manual_seed(3), num_steps=3)
    again = generate_class_images(model, labels, torch.Generator().manual_seed(3), num_steps=3)
    assert first.shape == (2, 1, 8, 8) and first.dtype == torch.uint8
    assert torch.equal(first, again)
