"""Image sources for meta-learning tasks.

Offline, bundled with the kit's dependencies:
    glyphs(split, image_size, seed)  -- Omniglot-like handwritten letters of ~17 scripts (GlyphSource)
    photos(split, patch_size, channels) -- natural photographs and random patches (PhotoSource)
Downloaded once into the user cache dir (pinned hashes):
    omniglot(root, split), mnist(root, split), fashion_mnist(root, split)
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
    "omniglot": ".downloads",
    "mnist": ".downloads",
    "fashion_mnist": ".downloads",
    "read_idx": ".downloads",
    "DatasetUnavailableError": ".downloads",
    "cache_dir": "._cache",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
