import json

import pytest

from .helpers import load_tool


def test_objects_found_counts_same_class_overlaps_per_image(tmp_path):
    tool = load_tool("objects_found")
    ground_truth = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
                    "annotations": [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 10]},
                                    {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},
                                    {"image_id": 2, "category_id": 0, "bbox": [5, 5, 20, 20]},
                                    {"image_id": 3, "category_id": 2, "bbox": [1, 1, 9, 9]}]}  # no detections
    detections = [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 12], "score": 0.1},  # IoU 10/12
                  {"image_id": 1, "category_id": 0, "bbox": [20, 20, 10, 10], "score": 0.9},  # wrong class
                  {"image_id": 2, "category_id": 0, "bbox": [5, 5, 20, 10], "score": 0.5}]  # IoU 0.5
    assert tool.objects_found(ground_truth, detections, 0.5) == {1: (1, 2), 2: (1, 1), 3: (0, 1)}
    assert tool.objects_found(ground_truth, detections, 0.75) == {1: (1, 2), 2: (0, 1), 3: (0, 1)}
    assert tool.objects_found(ground_truth, detections, 0.9) == {1: (0, 2), 2: (0, 1), 3: (0, 1)}
    # Any class: the right box with the wrong class now counts.
    assert tool.objects_found(ground_truth, detections, 0.5, class_agnostic=True) == {1: (2, 2), 2: (1, 1), 3: (0, 1)}
    # Sides sqrt(w * h): 10, 10 and 9 px below the edge, 20 px above it.
    hits = tool.hits_per_object(ground_truth, detections, 0.5)
    assert tool.found_by_size(hits, [15]) == [(0.0, 15, 1, 3), (15, float("inf"), 1, 1)]
    assert tool.found_by_size(hits, [10]) == [(0.0, 10, 0, 1), (10, float("inf"), 2, 3)]  # ranges [low, high)

    (tmp_path / "val_coco_format.json").write_text(json.dumps(ground_truth))
    with pytest.raises(FileNotFoundError, match="coco_instances_results.json"):
        tool.read_run(tmp_path)
    (tmp_path / "coco_instances_results.json").write_text(json.dumps(detections))
    assert tool.read_run(tmp_path) == (ground_truth, detections)


def test_slice_ap_scores_only_the_images_of_the_slice(tmp_path):
    tool = load_tool("slice_ap")
    ground_truth = {"images": [{"id": 7}, {"id": 3}, {"id": 5}],
                    "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
                    "annotations": [{"id": n + 1, "image_id": image, "category_id": 0, "bbox": [10, 10, 20, 20],
                                     "area": 400, "iscrowd": 0} for n, image in enumerate((7, 3, 5))]}
    # Image 7 found exactly; image 3 has a box of the wrong class; image 5 a box at IoU 0.6 only.
    detections = [{"image_id": 7, "category_id": 0, "bbox": [10, 10, 20, 20], "score": 0.9},
                  {"image_id": 3, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},
                  {"image_id": 5, "category_id": 0, "bbox": [10, 10, 20, 12.5], "score": 0.7}]  # IoU 0.625
    assert tool.slice_ap(ground_truth, detections, 0, 1) == pytest.approx({"AP": 100.0, "AP50": 100.0, "AP75": 100.0})
    assert tool.slice_ap(ground_truth, detections, 1, 1)["AP50"] == pytest.approx(0.0)
    assert tool.slice_ap(ground_truth, detections, 2, 1)["AP50"] == pytest.approx(100.0)
    assert tool.slice_ap(ground_truth, detections, 2, 1)["AP75"] == pytest.approx(0.0)
    # The second and third images of the list (ids 3 and 5; list order, not id order): one of two found.
    both = tool.slice_ap(ground_truth, detections, 1, 2)
    assert both["AP50"] == pytest.approx(50.0, abs=1.0)
    with pytest.raises(ValueError, match="images 2..3 asked, the ground truth holds 3"):
        tool.slice_ap(ground_truth, detections, 2, 2)
    (tmp_path / "val_coco_format.json").write_text(json.dumps(ground_truth))
    (tmp_path / "coco_instances_results.json").write_text(json.dumps(detections))
    assert tool.main([str(tmp_path), "--images", "0", "3"])["AP50"] == pytest.approx(
        tool.slice_ap(ground_truth, detections, 0, 3)["AP50"])


def test_slice_ap_merges_runs_of_disjoint_images(tmp_path):
    tool = load_tool("slice_ap")
    categories = [{"id": 0, "name": "a"}]

    def run(image_ids, found):
        truth = {"images": [{"id": image} for image in image_ids], "categories": categories,
                 "annotations": [{"id": n + 1, "image_id": image, "category_id": 0, "bbox": [10, 10, 20, 20],
                                  "area": 400, "iscrowd": 0} for n, image in enumerate(image_ids)]}
        return truth, [{"image_id": image, "category_id": 0, "bbox": [10, 10, 20, 20], "score": 0.9}
                       for image in found]

    first, second = run([0, 1], found=[0, 1]), run([2, 3], found=[])
    truth, detections = tool.merge_runs([first, second])
    assert [image["id"] for image in truth["images"]] == [0, 1, 2, 3]
    assert sorted(annotation["id"] for annotation in truth["annotations"]) == [1, 2, 3, 4]  # both runs had 1, 2
    assert tool.slice_ap(truth, detections, 0, 4)["AP50"] == pytest.approx(50.0, abs=1.0)  # 2 of 4 found
    with pytest.raises(ValueError, match="images already in an earlier run"):
        tool.merge_runs([first, run([1, 5], found=[])])
    with pytest.raises(ValueError, match="categories"):
        tool.merge_runs([first, ({**second[0], "categories": [{"id": 0, "name": "b"}]}, [])])
    for name, (truth_part, detections_part) in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "val_coco_format.json").write_text(json.dumps(truth_part))
        (tmp_path / name / "coco_instances_results.json").write_text(json.dumps(detections_part))
    assert tool.main([str(tmp_path / "a"), str(tmp_path / "b")])["AP50"] == pytest.approx(50.0, abs=1.0)
    assert tool.main([str(tmp_path / "a"), str(tmp_path / "b"), "--images", "0", "2"])["AP50"] == pytest.approx(100.0)


def test_each_missed_object_is_sorted_by_what_its_best_box_is():
    import torch

    from dive_d2.evaluation.objects_found import miss_kind

    truth = torch.tensor([[0, 0, 10, 10], [8, 0, 18, 10], [40, 40, 50, 50]], dtype=torch.float32)
    assert miss_kind(0, truth, torch.tensor([[0, 0, 18, 10]])) == "union with a neighbour"
    assert miss_kind(2, truth, torch.tensor([[0, 0, 18, 10]])) == "no overlap"
    assert miss_kind(2, truth, torch.zeros(0, 4)) == "no overlap"
    assert miss_kind(2, truth, torch.tensor([[40, 40, 45, 45]])) == "part of it"
    assert miss_kind(2, truth, torch.tensor([[30, 30, 60, 60]])) == "holds it"
    assert miss_kind(2, truth, torch.tensor([[45, 45, 55, 55]])) == "elsewhere"
    # The best-overlapping box decides, not the first.
    assert miss_kind(2, truth, torch.tensor([[0, 0, 18, 10], [40, 40, 45, 45]])) == "part of it"


def test_why_missed_counts_only_objects_without_a_box_of_any_class():
    tool = load_tool("objects_found")
    ground_truth = {"images": [{"id": 1}], "annotations": [
        {"image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [8, 8, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [40, 40, 10, 10]}]}
    detections = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 18, 18], "score": 0.9},
                  {"image_id": 1, "category_id": 0, "bbox": [40, 40, 10, 10], "score": 0.5}]
    counts = tool.why_missed(ground_truth, detections, 0.5)
    assert counts["union with a neighbour"] == 2 and sum(counts.values()) == 2
