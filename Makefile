# The two commands of the README; both set up ./.venv first (fast when it is already up to date).
PY := .venv/bin/python
MAIN_CONFIG := configs/shapes/dive.yaml
MAIN_WEIGHTS := weights/shapes/dive.pth
# DIVE inverts every image (tens of seconds each on 2 CPU cores): the main job evaluates the first 8 images.
MAIN_IMAGES := 8

.PHONY: setup main test lint

setup:
	bash tools/setup_env.sh

# Main job: DIVE (shipped shapes pair) through COCOEvaluator on the first MAIN_IMAGES of dive_shapes_val.
main: setup
	$(PY) tools/train_net.py --config-file $(MAIN_CONFIG) --eval-only \
		MODEL.WEIGHTS $(MAIN_WEIGHTS) DATASETS.TEST_LIMIT $(MAIN_IMAGES) OUTPUT_DIR output/main

test: setup
	$(PY) -m pytest -q tests
	.venv/bin/ruff check .

lint: setup
	.venv/bin/ruff check .
