"""Image sources for meta-learning tasks.

Offline, bundled with the kit's dependencies:
    glyphs(split, image_size, seed)  -- Omniglot-like handwritten letters of ~17 scripts (GlyphSource)
    photos(split, patch_size, channels) -- natural photographs and random patches (PhotoSource)
Downloaded once into the user cache dir (pinned hashes), or read from a folder:
    omniglot(root, split), mnist(root, split), fashion_mnist(root, split)
    kodak24(root, grey) -- the restoration test photographs; cbsd68(root, split) -- the train/dev pool (PhotoSet)
    photo_pool(split, patch_size, channels) -- CBSD68 train/dev plus the embedded photographs (PhotoSource)
The pre-registered restoration protocol (splits, TEST_SEED, TEST_TASKS) is in ``photo_sets``.
Class-structured sources share :class:`ClassImageSource` (``classes``, ``alphabets``, ``images_of``).

Importing this package is light: the modules (and pooch, skimage, matplotlib) load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "ClassImageSource": ".base",
    "glyphs": ".glyph_source",
    "GlyphSource": ".glyph_source",
    "photos": ".photo_source",
    "PhotoSource": ".photo_source",
    "kodak24": ".photo_sets",
    "cbsd68": ".photo_sets",
    "photo_pool": ".photo_sets",
    "PhotoSet": ".photo_sets",
    "RESTORATION_SPLITS": ".photo_sets",
    "omniglot": ".downloads",
    "mnist": ".downloads",
    "fashion_mnist": ".downloads",
    "read_idx": ".downloads",
    "DatasetUnavailableError": ".downloads",
    "cache_dir": "._cache",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
