"""
The review page
===============

``xglacier review PREDICTIONS --image SCENE`` (or :func:`xglacier.review` from Python) serves
a page on 127.0.0.1 where an expert corrects predicted outlines over the scene and saves
an auditable GeoPackage: the idea of Baraka et al. (2020), section 5. The page needs a
browser, so this gallery shows a screenshot taken by headless Chromium on the real
Athabasca HLS L30 crop of 2020-08-16, with the NDSI rule's polygons to review (made by
``docs/images/review_screenshot.py``; see the user guide page on reviewing).
"""

from pathlib import Path

import matplotlib.pyplot as plt

# sphinx-gallery runs the examples from their own folder
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
image = plt.imread(here.parent / "images" / "review.png")
fig, ax = plt.subplots(figsize=(12, 7.2), constrained_layout=True)
ax.imshow(image)
ax.set_axis_off()
