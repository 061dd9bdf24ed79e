"""Installs the `dive_d2` package (a Detectron2 plugin). Dependencies: see requirements.txt and
tools/setup_env.sh; detectron2 itself is not on the package registries, so it is not listed here."""

from setuptools import find_packages, setup

setup(
    name="dive_d2",
    version="0.1.0",
    description="DIVE generative object detection (inverting layout-to-image diffusion) as a Detectron2 plugin",
    packages=find_packages(include=["dive_d2", "dive_d2.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "diffusers>=0.30",
        "fvcore",
        "pycocotools",
        "opencv-python-headless",
        "scikit-learn",
    ],
)
