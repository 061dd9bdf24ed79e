#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in ./.venv from the package registries only.
#
# Idempotent: a stamp file records the hash of requirements.txt, setup.py and this script; when nothing
# changed, a re-run only checks that the imports still work (a few seconds).
#
# Detectron2 is not published on the registry by its maintainers. If `import detectron2` already works in
# the venv (for example a source build with its C++ ops), it is kept. Otherwise the Python part of the
# registry's `sal-detectron2==0.7.2` (detectron2 main of late 2024) is installed without its CPython-3.10
# extension; detectron2 imports its `_C` lazily, so only rotated boxes, deformable conv and the fast COCO
# evaluation are missing (COCOEvaluator falls back to pycocotools).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv="${DIVE_VENV:-$repo_root/.venv}"
python_bin="${PYTHON:-python3}"
stamp="$venv/.dive_d2_setup_stamp"
want_stamp="$(cat requirements.txt setup.py tools/setup_env.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
    && "$venv/bin/python" -c "import torch, torchvision, detectron2, diffusers, dive_d2" 2>/dev/null; then
  echo "[setup_env] $venv is up to date"
  exit 0
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup_env] creating virtual environment $venv"
  "$python_bin" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=24"
echo "[setup_env] installing pinned requirements (torch is large: about 1 minute from a warm cache)"
"${pip[@]}" install --quiet -r requirements.txt

if "$venv/bin/python" -c "import detectron2" 2>/dev/null; then
  echo "[setup_env] keeping the detectron2 already importable in $venv"
else
  echo "[setup_env] installing the Python part of sal-detectron2==0.7.2"
  site_packages="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  tmp_target="$(mktemp -d)"
  "${pip[@]}" install --quiet --no-deps --python-version 3.10 --only-binary=:all: \
    --target "$tmp_target" sal-detectron2==0.7.2
  # The wheel also ships a top-level `tools/` package and a CPython-3.10-only extension; keep neither.
  rm -rf "$tmp_target/tools" "$tmp_target"/detectron2/_C*.so "$tmp_target"/bin
  cp -r "$tmp_target"/* "$site_packages"/
  rm -rf "$tmp_target"
fi

"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
"$venv/bin/python" -c "import torch, torchvision, detectron2, diffusers, dive_d2; \
print('[setup_env] torch', torch.__version__, '| torchvision', torchvision.__version__, \
'| detectron2', detectron2.__version__, '| diffusers', diffusers.__version__)"
echo "$want_stamp" > "$stamp"
echo "[setup_env] done in $(( $(date +%s) - start )) s"
