"""Sphinx configuration of the xglacier documentation (builds offline, warning-free)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import sphinx_autosummary_accessors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # _gallery_order
# the gallery runs real code: keep it on the CPU cores it is given, headless
os.environ.setdefault("MPLBACKEND", "Agg")

import xglacier  # noqa: E402


def _short_warning(message, category, filename, lineno, line=None):
    """Warnings in the gallery's output as a user reads them: class and message, without
    the path of the file on the machine that built the page."""
    return f"{category.__name__}: {message}\n"


warnings.formatwarning = _short_warning

# The examples train small models on a few thousand patches: more torch threads only add
# overhead (on 2 busy cores the forecast example took 2-4 times longer with 2 threads)
import torch  # noqa: E402

torch.set_num_threads(1)

project = "xglacier"
author = "the xglacier developers"
copyright = "2026, the xglacier developers"
version = release = xglacier.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_autosummary_accessors",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip", "gallery/*.json",
                    "gallery/*.md5", "examples/README.rst"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "gallery",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "_gallery_order.PipelineOrder",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
}

html_theme = "pydata_sphinx_theme"
html_title = f"xglacier {version}"
html_static_path = ["_static"]
html_css_files = ["xglacier.css"]
html_theme_options = {
    # the theme fetches nothing at build time; these keep the page itself offline too
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "use_edit_page_button": False,
    "icon_links": [],
}
html_show_sourcelink = False
