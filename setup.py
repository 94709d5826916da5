"""Packaging for privbox. Paddle itself is an extra: see README ("Install")."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "privbox" / "_version.py").read_text()).group(1)

setup(
    name="privbox",
    version=VERSION,
    description="Measure and defend against gradient leakage in federated learning, on PaddlePaddle 3.x",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["privbox", "privbox.*"]),
    package_data={"privbox": ["configs/*.yaml", "data/*.npz"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.9",
        "scikit-image>=0.21",
        "matplotlib>=3.6",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "tqdm>=4.60",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0"],
        "tune": ["optuna>=3.0"],
        "flower": ["flwr[simulation]>=1.22"],
        "test": ["pytest>=7", "hypothesis>=6.0"],
        # benchmarks/attack_speed.py's PyTorch column only (the CPU build is enough); never needed by tests
        "bench": ["torch"],
    },
    entry_points={"console_scripts": ["privbox=privbox.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Security",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
