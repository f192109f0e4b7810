"""Build step: ship the repo's config.toml, rules/ and templates/ inside the wheel.

The top level of the repo is where admins and tests find them; a wheel (or an sdist built
into one) carries copies under the `daemon` package as `daemon/shipped/`, which
daemon/shipped.py reads with importlib.resources. An editable install reads the checkout.
Everything else is in pyproject.toml.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("config.toml", "rules", "templates")


class build_py_with_site_files(build_py):
    """build_py plus the shipped site files under daemon/shipped/ (not in editable mode)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "daemon" / "shipped"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in SHIPPED:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": build_py_with_site_files})
