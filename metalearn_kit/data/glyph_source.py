"""An Omniglot-like set of handwritten-looking characters, made offline from the fonts in matplotlib.

How a picture is made:

1. *Catalogue* (once, independent of the seed): every letter DejaVu Sans draws in a list of scripts is
   rendered, look-alikes (Latin ``o``, Cyrillic ``о``, Greek ``ο``; ``l`` and ``I``; ...) are removed by
   comparing the renderings, and each script keeps at most ``_MAX_PER_ALPHABET`` letters (its first
   ones in code order). The script is the character's *alphabet*, the letter its *class*. Evaluation letters
   that look like a background letter -- in the renderings, or in the mean of their drawn images -- are dropped.
2. *Skeleton*: each letter is rendered large in several faces (DejaVu Sans/Serif/Mono upright and slanted,
   STIX italic; no bold, which skeletonises into blobs) and thinned to a one-pixel centre line.
3. *Drawer*: every image of a class is one "person" drawing the letter: a face, an affine jitter
   (rotation, shear, scale, shift), a smooth elastic wobble, and a pen width. The skeleton points are
   moved, splatted on a 2x canvas, inked with a round pen and box-downsampled.

Images are ink = 1 on background 0, like MNIST and the inverted Omniglot. The split into background
(meta-train) and evaluation (meta-test) is by alphabet and fixed, as in Omniglot.
"""

from __future__ import annotations

import functools
import time
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_int
from ._cache import cache_dir, load_npz, save_npz_atomic
from .base import ClassImageSource
from .glyph_drawing import _FACES, _charmap, _class_seed, _draw, _render, _skeletons

__all__ = ["GlyphSource", "SPLITS", "catalogue", "glyphs"]

# Bump when the catalogue or the drawing changes, so stale cache entries are never read.
_VERSION = 8
SPLITS = ("background", "evaluation")
_MAX_PER_ALPHABET = 90
# Mean absolute difference (on normalised, blurred 24x24 renderings) under which two letters count as the
# same shape. Chosen by looking at the merged pairs: it joins o/о/ο, l/I/ӏ, p/р, Η/H, ق/ڧ; a higher value
# starts joining letters that differ by a dot or a bar (i/I, Θ/O, ڎ/ڈ).
_LOOKALIKE_THRESHOLD = 0.045
_CROSS_SPLIT_THRESHOLD = 0.065
# Look-alikes as the models see them: the cosine similarity of two classes' *mean drawn images* (every drawer of
# the class averaged, at _REFERENCE_DRAWING), which the font renderings above miss when the drawers' jitter makes
# two different-looking renderings overlap (Tifinagh ⵊ and IPA ɪ, Old Italic 𐌗 and Latin X). An evaluation letter
# whose class mean is at least this close to a background letter's is dropped. The value is the 90th percentile of
# the nearest-neighbour class-mean cosine *within* the evaluation split (0.936 at _VERSION 7, rounded down): a
# meta-test letter may not be closer to a meta-train letter than nine in ten meta-test letters are to their own
# nearest meta-test letter, so meta-testing does not reward recognising training shapes. The highest
# within-evaluation pair (0.972, ⴲ / 𐌈) is not used as the limit: it is itself a pair of look-alikes, and a limit
# that high keeps 𐌗 / X (0.947). tests/test_data_glyphs.py holds the limit on the drawn images.
_CLASS_MEAN_COSINE_THRESHOLD = 0.935
_REFERENCE_DRAWING = {"seed": 0, "image_size": 28, "images_per_class": 20}  # glyphs()'s defaults

# (alphabet, Unicode ranges). Order matters for look-alike removal: an earlier alphabet keeps a shared
# shape, so Latin keeps "o" and Cyrillic/Greek lose theirs.
_SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("Latin", ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))),
    ("IPA", ((0x250, 0x2AF), (0x1D00, 0x1D7F))),
    ("Latin_Extended", ((0x2C60, 0x2C7F), (0xA720, 0xA7FF), (0x1E00, 0x1EFF))),
    ("Greek", ((0x370, 0x3E1), (0x3F0, 0x3FF))),
    ("Coptic", ((0x3E2, 0x3EF), (0x2C80, 0x2CFF))),
    ("Cyrillic", ((0x400, 0x52F), (0xA640, 0xA69F))),
    ("Armenian", ((0x530, 0x58F),)),
    ("Hebrew", ((0x590, 0x5FF),)),
    ("Arabic", ((0x600, 0x6FF),)),
    ("NKo", ((0x7C0, 0x7FF),)),
    ("Lao", ((0xE80, 0xEFF),)),
    ("Georgian", ((0x10A0, 0x10FF), (0x2D00, 0x2D2F))),
    ("Canadian_Syllabics", ((0x1400, 0x167F),)),
    ("Ogham", ((0x1680, 0x169F),)),
    ("Tifinagh", ((0x2D30, 0x2D7F),)),
    ("Lisu", ((0xA4D0, 0xA4FF),)),
    ("Old_Italic", ((0x10300, 0x1032F),)),
)
# Meta-test alphabets: about a third of the letters (Omniglot: 40%). All Latin variants stay in training,
# so a test letter is never a training letter with an extra tick; Coptic and Old Italic still relate to
# Greek the way some of Omniglot's evaluation alphabets relate to its background ones.
_EVALUATION_ALPHABETS = frozenset({"Armenian", "Coptic", "Georgian", "Hebrew", "Lao", "Ogham", "Tifinagh",
                                   "Lisu", "Old_Italic"})

def _signature(codepoint: int) -> np.ndarray | None:
    """Size-normalised 24x24 blurred rendering in the main face, for look-alike comparison."""
    from scipy.ndimage import gaussian_filter, zoom

    image = _render(_FACES[0], codepoint, 48)
    if image.size == 0 or max(image.shape) < 4:
        return None
    side = max(image.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - image.shape[0]) // 2, (side - image.shape[1]) // 2
    square[top:top + image.shape[0], left:left + image.shape[1]] = image
    small = zoom(square, 24 / side, order=1)[:24, :24]
    padded = np.zeros((24, 24), np.float32)
    padded[:small.shape[0], :small.shape[1]] = small
    return gaussian_filter(padded, 1.0)


def _is_letter(codepoint: int) -> bool:
    char = chr(codepoint)
    # Modifier letters (Lm) are superscript copies of other letters; precomposed letters differ from their
    # base only by a small diacritic; both would be near-duplicate classes.
    return unicodedata.category(char) in ("Lu", "Ll", "Lo", "Lt") and not unicodedata.decomposition(char)


def _class_name(alphabet: str, codepoint: int) -> str:
    words = unicodedata.name(chr(codepoint), f"U+{codepoint:04X}").lower().split()
    script_words = set(alphabet.lower().replace("_", " ").split()) | {"letter", "syllabics", "nko", "old", "latin"}
    kept = [w for w in words if w not in script_words] or words
    return f"{alphabet}/{'_'.join(kept)}"


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The letters of every alphabet after look-alike removal: ``((alphabet, (codepoint, ...)), ...)``."""
    path = cache_dir("glyphs") / f"catalogue-v{_VERSION}-{_matplotlib_version()}.npz"
    cached = load_npz(path)
    if cached is not None:
        return tuple((str(name), tuple(int(c) for c in cached[name])) for name in cached["alphabets"])
    available = _charmap(_FACES[0])
    candidates = []  # (alphabet index, codepoint, signature) in table order
    for a, (_, ranges) in enumerate(_SCRIPTS):
        for low, high in ranges:
            for codepoint in range(low, high + 1):
                if codepoint in available and _is_letter(codepoint):
                    signature = _signature(codepoint)
                    if signature is not None:
                        candidates.append((a, codepoint, signature.reshape(-1)))
    flat = torch.from_numpy(np.stack([c[2] for c in candidates]))
    # All pairwise mean absolute differences at once; the greedy pass below only reads this matrix.
    distance = (torch.cdist(flat[None], flat[None], p=1)[0] / flat.shape[1]).numpy()
    kept: list[int] = []  # candidate indices kept so far, all alphabets
    result = []
    for a, (alphabet, _) in enumerate(_SCRIPTS):
        mine: list[int] = []
        for i in (i for i, c in enumerate(candidates) if c[0] == a):
            # A letter survives only if no letter kept so far (this or an earlier alphabet) looks like it.
            if not kept + mine or distance[i, kept + mine].min() >= _LOOKALIKE_THRESHOLD:
                mine.append(i)
        # Keep the first letters in code order: the core of a script (basic Latin, the Greek and Cyrillic
        # alphabets) comes before its rarer extensions.
        mine = mine[:_MAX_PER_ALPHABET]
        kept.extend(mine)
        result.append((alphabet, mine))
    # Meta-test letters must not be near-copies of meta-train ones: across the split a stricter threshold
    # also drops pairs such as Tifinagh ⵅ / X or Armenian Տ / S.
    background = [i for i in kept if _SCRIPTS[candidates[i][0]][0] not in _EVALUATION_ALPHABETS]
    result = [(alphabet, tuple(candidates[i][1] for i in mine
                               if alphabet not in _EVALUATION_ALPHABETS
                               or distance[i, background].min() >= _CROSS_SPLIT_THRESHOLD))
              for alphabet, mine in result]
    result = _drop_drawn_lookalikes(result)
    save_npz_atomic(path, alphabets=np.array([a for a, _ in result]),
                    **{a: np.array(c, dtype=np.int64) for a, c in result})
    return tuple(result)


def class_mean_cosine(codepoints_a: list[int], codepoints_b: list[int]) -> torch.Tensor:
    """Cosine similarity ``[len(a), len(b)]`` of the letters' mean drawn images at :data:`_REFERENCE_DRAWING`
    (letters no face can draw get -1: they never become classes)."""
    def means(codepoints):
        skeletons = [_skeletons(c) for c in codepoints]
        drawable = [i for i, faces in enumerate(skeletons) if faces]
        out = torch.zeros(len(codepoints), _REFERENCE_DRAWING["image_size"] ** 2)
        if drawable:
            n = _REFERENCE_DRAWING["images_per_class"]
            pixels = _draw([skeletons[i] for i in drawable],
                           [_class_seed(_REFERENCE_DRAWING["seed"], codepoints[i]) for i in drawable], n,
                           _REFERENCE_DRAWING["image_size"]).float().view(len(drawable), n, -1).mean(1)
            out[drawable] = F.normalize(pixels, dim=1)
        return out, torch.tensor([bool(f) for f in skeletons])

    (a, ok_a), (b, ok_b) = means(codepoints_a), means(codepoints_b)
    cosine = a @ b.T
    cosine[~ok_a] = -1.0
    cosine[:, ~ok_b] = -1.0
    return cosine


def _drop_drawn_lookalikes(result: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
    """Drop the evaluation letters whose class mean is a look-alike of a background letter's (see
    :data:`_CLASS_MEAN_COSINE_THRESHOLD`); the background split is left as it is."""
    background = [c for a, cps in result if a not in _EVALUATION_ALPHABETS for c in cps]
    evaluation = [c for a, cps in result if a in _EVALUATION_ALPHABETS for c in cps]
    closest = class_mean_cosine(evaluation, background).max(1).values
    dropped = {c for c, value in zip(evaluation, closest.tolist()) if value >= _CLASS_MEAN_COSINE_THRESHOLD}
    return [(a, tuple(c for c in cps if c not in dropped)) for a, cps in result]


def _matplotlib_version() -> str:
    import matplotlib

    return matplotlib.__version__


class GlyphSource(ClassImageSource):
    """Handwritten-looking letters of many scripts (see :func:`glyphs`). ``images_of(c)`` gives
    ``[images_per_class, 1, image_size, image_size]`` float32 in [0, 1], ink = 1."""

    def __init__(self, split: str, image_size: int, seed: int, pixels: torch.Tensor, classes: list[str],
                 alphabets: list[str], class_alphabet: list[int], codepoints: list[int], build_seconds: float):
        per_class = pixels.shape[0] // len(classes)
        labels = torch.arange(len(classes)).repeat_interleave(per_class)
        super().__init__(f"glyphs/{split}", pixels, labels, classes, alphabets, class_alphabet)
        self.split = split
        self.seed = seed
        self.codepoints = codepoints
        self.build_seconds = build_seconds  # 0.0 when read from the cache

    def character(self, class_index: int) -> str:
        """The Unicode character a class is drawn from."""
        check_int("class_index", class_index, 0, self.num_classes - 1)
        return chr(self.codepoints[class_index])


def glyphs(split: str = "background", image_size: int = 28, seed: int = 0, images_per_class: int = 20,
           cache: bool = True) -> GlyphSource:
    """Omniglot-like handwritten characters of ~17 scripts, drawn offline from matplotlib's fonts.

    Args:
        split: ``"background"`` (meta-train alphabets) or ``"evaluation"`` (meta-test alphabets); the two
            share no alphabet and no letter shape (checked on the renderings and on the classes' mean drawn
            images, see ``_CLASS_MEAN_COSINE_THRESHOLD``).
        image_size: side of the square images (>= 8).
        seed: picks every drawer's face, jitter and pen; same seed -> identical images.
        images_per_class: drawers per letter (Omniglot has 20).
        cache: keep the drawn arrays under the user cache dir so the next call is instant.

    Returns:
        a :class:`GlyphSource` (a :class:`ClassImageSource`), ``images_of(c)`` ``[N, 1, S, S]`` in [0, 1].
    """
    check_choice("split", split, SPLITS)
    check_int("image_size", image_size, 8, 512)
    check_int("seed", seed, 0)
    check_int("images_per_class", images_per_class, 1, 1000)
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be True or False, got {cache!r}")
    key = (f"glyphs-v{_VERSION}-mpl{_matplotlib_version()}-{split}-size{image_size}-seed{seed}"
           f"-n{images_per_class}.npz")
    path = cache_dir("glyphs") / key
    cached = load_npz(path) if cache else None
    if cached is not None:
        return GlyphSource(split, image_size, seed, torch.from_numpy(cached["pixels"]),
                           [str(c) for c in cached["classes"]], [str(a) for a in cached["alphabets"]],
                           cached["class_alphabet"].tolist(), cached["codepoints"].tolist(), 0.0)
    start = time.perf_counter()
    wanted = [(a, cps) for a, cps in catalogue() if (a in _EVALUATION_ALPHABETS) == (split == "evaluation")]
    alphabets = [a for a, cps in wanted if cps]
    classes, class_alphabet, codepoints, skeletons = [], [], [], []
    for a, cps in wanted:
        for codepoint in cps:
            faces = _skeletons(codepoint)
            if not faces:
                continue
            classes.append(_class_name(a, codepoint))
            class_alphabet.append(alphabets.index(a))
            codepoints.append(codepoint)
            skeletons.append(faces)
    pixels = _draw(skeletons, [_class_seed(seed, c) for c in codepoints], images_per_class, image_size)
    seconds = time.perf_counter() - start
    if cache:
        save_npz_atomic(path, pixels=pixels.numpy(), classes=np.array(classes), alphabets=np.array(alphabets),
                        class_alphabet=np.array(class_alphabet, dtype=np.int64),
                        codepoints=np.array(codepoints, dtype=np.int64))
    return GlyphSource(split, image_size, seed, pixels, classes, alphabets, class_alphabet, codepoints, seconds)
