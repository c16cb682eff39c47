"""Sphinx configuration of the xglacier documentation (builds offline, warning-free)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sphinx_autosummary_accessors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the gallery runs real code: keep it on the CPU cores it is given, headless
os.environ.setdefault("MPLBACKEND", "Agg")

import xglacier  # noqa: E402

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
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
}

html_theme = "pydata_sphinx_theme"
html_title = f"xglacier {version}"
html_static_path = ["_static"]
html_theme_options = {
    # the theme fetches nothing at build time; these keep the page itself offline too
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "use_edit_page_button": False,
    "icon_links": [],
}
html_show_sourcelink = False
