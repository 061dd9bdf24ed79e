"""The benchmarks follow their specification, are deterministic, and round-trip through COCO json."""

import dataclasses
import filecmp
import json
import os

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools.coco import COCO

from dive_d2.config import add_dive_config
from dive_d2.data import (
    BENCHMARK_SPLITS,
    load_coco_dataset_dicts,
    prepare_datasets_from_config,
    register_coco_json,
    write_coco_dataset,
)
from dive_d2.data.benchmarks import write_split
from dive_d2.data.synthetic import (
    DIGITS_CLASSES,
    SHAPES_CLASSES,
    generate_digits_image,
    generate_shapes_image,
    load_sklearn_digits,
    tight_box,
)

NUM_CHECKED = 300  # images per benchmark checked one by one against the specification


def test_registered_splits_names_sizes_classes():
    expected = {
        "dive_shapes_train": (5000, SHAPES_CLASSES),
        "dive_shapes_val": (500, SHAPES_CLASSES),
        "dive_digits_train": (3000, DIGITS_CLASSES),
        "dive_digits_val": (500, DIGITS_CLASSES),
    }
    assert SHAPES_CLASSES == ("circle", "square", "triangle")
    assert DIGITS_CLASSES == tuple("0123456789")
    for name, (count, classes) in expected.items():
        assert name in DatasetCatalog.list()
        assert BENCHMARK_SPLITS[name].num_images == count
        metadata = MetadataCatalog.get(name)
        assert metadata.thing_classes == list(classes)
        assert metadata.evaluator_type == "coco"
    assert (BENCHMARK_SPLITS["dive_shapes_train"].seed, BENCHMARK_SPLITS["dive_shapes_val"].seed) == (0, 1)
    assert (BENCHMARK_SPLITS["dive_digits_train"].seed, BENCHMARK_SPLITS["dive_digits_val"].seed) == (0, 1)


@pytest.mark.parametrize("name", ["dive_shapes_val", "dive_digits_val"])
def test_registered_val_split_loads_from_cache(name):
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 500
    first = BENCHMARK_SPLITS[name].generate(0)
    assert os.path.isfile(dicts[0]["file_name"])
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in dicts[0]["annotations"]]
    np.testing.assert_allclose(boxes, first.boxes)
    assert [a["category_id"] for a in dicts[0]["annotations"]] == first.classes.tolist()


def test_shapes_follow_specification():
    counts, class_counts = set(), np.zeros(3, int)
    for index in range(NUM_CHECKED):
        sample = generate_shapes_image(seed=0, index=index)
        image, boxes = sample.image, sample.boxes
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert 1 <= len(boxes) <= 4
        counts.add(len(boxes))
        class_counts += np.bincount(sample.classes, minlength=3)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        # A shape fills an s x s box, s in [10, 28]; an even-sized triangle has no pixel centre in its apex row.
        assert np.all((widths >= 9) & (heights >= 9) & (widths <= 28) & (heights <= 28))
        assert np.all(np.maximum(widths, heights) >= 10)
        assert np.all((boxes[:, :2] >= 0) & (boxes[:, 2:] <= 64))
        squares = sample.classes == SHAPES_CLASSES.index("square")
        np.testing.assert_array_equal(widths[squares], heights[squares])
        # Objects have a channel >= 200; the background is <= 90 plus noise of sigma 6.
        foreground = image.max(axis=2) >= 160
        if len(boxes) == 1:
            np.testing.assert_array_equal(tight_box(foreground), boxes[0])
            background = image[~foreground].astype(float)
            assert background.mean(axis=0).max() <= 95 and 3 < background.std(axis=0).mean() < 9
    assert counts == {1, 2, 3, 4}
    assert class_counts.min() > 0.25 * class_counts.sum()


def test_triangle_is_upright():
    for index in range(200):
        sample = generate_shapes_image(seed=3, index=index)
        if len(sample.boxes) == 1 and sample.classes[0] == SHAPES_CLASSES.index("triangle"):
            x0, y0, x1, y1 = sample.boxes[0].astype(int)
            mask = sample.image.max(axis=2) >= 160
            top, bottom = mask[y0, x0:x1].sum(), mask[y1 - 1, x0:x1].sum()
            assert top <= 2 and bottom == x1 - x0
            return
    pytest.fail("no single-triangle image in 200 draws")


def test_digits_follow_specification_and_split():
    images, labels = load_sklearn_digits()
    for split, (low, high) in (("train", (0, 1300)), ("val", (1300, 1797))):
        counts = set()
        for index in range(NUM_CHECKED // 2):
            sample = generate_digits_image(seed=0, index=index, split=split)
            image, boxes = sample.image, sample.boxes
            assert image.shape == (64, 64, 3)
            assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
            assert 1 <= len(boxes) <= 3
            counts.add(len(boxes))
            assert np.all((sample.digit_indices >= low) & (sample.digit_indices < high))
            np.testing.assert_array_equal(sample.classes, labels[sample.digit_indices])
            for box, source in zip(boxes.astype(int), sample.digit_indices, strict=True):
                # The crop is the nearest-neighbour 2x upscale of the digit, cut to its non-zero pixels.
                glyph = np.kron(images[source], np.ones((2, 2), np.uint8))
                glyph_box = tight_box(glyph > 0).astype(int)
                expected = glyph[glyph_box[1] : glyph_box[3], glyph_box[0] : glyph_box[2]]
                np.testing.assert_array_equal(image[box[1] : box[3], box[0] : box[2], 0], expected)
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    overlap = min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
                    assert not overlap
            if len(boxes) == 1:
                np.testing.assert_array_equal(tight_box(image[..., 0] > 0), boxes[0])
        assert counts == {1, 2, 3}


def test_generation_is_deterministic_and_prefix_stable(tmp_path):
    split = BENCHMARK_SPLITS["dive_shapes_val"]
    write_split(split, str(tmp_path / "a" / "images"), str(tmp_path / "a.json"), num_images=12)
    write_split(split, str(tmp_path / "b" / "images"), str(tmp_path / "b.json"), num_images=12)
    assert filecmp.cmp(tmp_path / "a.json", tmp_path / "b.json", shallow=False)
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "a" / "images", tmp_path / "b" / "images", sorted(os.listdir(tmp_path / "a" / "images")),
        shallow=False)
    assert len(match) == 12 and not mismatch and not errors
    other_seed = dataclasses.replace(split, seed=7)
    assert not np.array_equal(other_seed.generate(0).image, split.generate(0).image)
    np.testing.assert_array_equal(generate_shapes_image(1, 5).image, split.generate(5).image)


@pytest.mark.parametrize("name", ["dive_shapes_val", "dive_digits_val"])
def test_coco_export_round_trips_through_pycocotools(tmp_path, name):
    split = BENCHMARK_SPLITS[name]
    json_path, image_dir = str(tmp_path / "ann.json"), str(tmp_path / "images")
    write_split(split, image_dir, json_path, num_images=20)
    coco = COCO(json_path)
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(split.class_names)
    assert len(coco.imgs) == 20
    for image_id in sorted(coco.imgs):
        sample = split.generate(image_id - 1)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        xywh = np.array([a["bbox"] for a in anns]).reshape(-1, 4)
        np.testing.assert_allclose(xywh[:, :2], sample.boxes[:, :2])
        np.testing.assert_allclose(xywh[:, :2] + xywh[:, 2:], sample.boxes[:, 2:])
        assert [a["category_id"] - 1 for a in anns] == sample.classes.tolist()
        assert os.path.isfile(os.path.join(image_dir, coco.imgs[image_id]["file_name"]))


def test_coco_categories_are_matched_by_name(tmp_path):
    image = np.zeros((32, 48, 3), np.uint8)
    records = [(image, np.array([[1.0, 2.0, 11.0, 22.0]]), np.array([0])),
               (image, np.zeros((0, 4)), np.zeros(0, np.int64))]
    json_path = str(tmp_path / "ann.json")
    # The file's only category is "triangle" with id 1; the model's index of "triangle" is 2.
    write_coco_dataset(records, ["triangle"], str(tmp_path / "images"), json_path)
    dicts = load_coco_dataset_dicts(json_path, str(tmp_path / "images"), list(SHAPES_CLASSES))
    assert dicts[0]["annotations"][0]["category_id"] == 2
    assert dicts[0]["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 20.0]
    assert (dicts[0]["height"], dicts[0]["width"]) == (32, 48)
    assert dicts[1]["annotations"] == []  # images without objects are kept

    with open(json_path) as f:
        coco = json.load(f)
    coco["categories"] = [{"id": 1, "name": "hexagon"}]
    with open(json_path, "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match=r"ann\.json.*hexagon"):
        load_coco_dataset_dicts(json_path, str(tmp_path / "images"), list(SHAPES_CLASSES))
    with pytest.raises(ValueError, match="hexagon"):
        register_coco_json("bad_coco_for_test", json_path, str(tmp_path / "images"), list(SHAPES_CLASSES))
    assert "bad_coco_for_test" not in DatasetCatalog.list()


def test_test_start_and_limit_select_a_slice_of_the_test_split():
    cfg = add_dive_config(get_cfg())
    cfg.DATASETS.TEST = ("dive_shapes_val",)
    cfg.DATASETS.TEST_LIMIT, cfg.DATASETS.TEST_START = 3, 5
    (name,) = prepare_datasets_from_config(cfg).DATASETS.TEST
    whole = DatasetCatalog.get("dive_shapes_val")
    assert [r["image_id"] for r in DatasetCatalog.get(name)] == [r["image_id"] for r in whole[5:8]]
    assert MetadataCatalog.get(name).thing_classes == MetadataCatalog.get("dive_shapes_val").thing_classes

    cfg = add_dive_config(get_cfg())
    cfg.DATASETS.TEST, cfg.DATASETS.TEST_START = ("dive_shapes_val",), 5
    with pytest.raises(ValueError, match="TEST_START 5.*TEST_LIMIT"):
        prepare_datasets_from_config(cfg)
