# The two commands of the README; both set up ./.venv first (fast when it is already up to date).
PY := .venv/bin/python
MAIN_CONFIG := configs/shapes/faster_rcnn_R18_FPN.yaml
MAIN_WEIGHTS := weights/shapes/faster_rcnn_R18_FPN.pth

.PHONY: setup main test lint

setup:
	bash tools/setup_env.sh

# Main job: COCOEvaluator on dive_shapes_val with the shipped weights.
main: setup
	$(PY) tools/train_net.py --config-file $(MAIN_CONFIG) --eval-only \
		MODEL.WEIGHTS $(MAIN_WEIGHTS) OUTPUT_DIR output/main

test: setup
	$(PY) -m pytest -q tests
	.venv/bin/ruff check .

lint: setup
	.venv/bin/ruff check .
