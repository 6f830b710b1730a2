"""An Omniglot-like set of handwritten-looking characters, made offline from the fonts in matplotlib.

How a picture is made:

1. *Catalogue* (once, independent of the seed): every letter DejaVu Sans draws in a list of scripts is
   rendered, look-alikes (Latin ``o``, Cyrillic ``о``, Greek ``ο``; ``l`` and ``I``; ...) are removed by
   comparing the renderings, and each script keeps at most ``_MAX_PER_ALPHABET`` letters (its first
   ones in code order). The script is the character's *alphabet*, the letter its *class*.
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
import hashlib
import os
import time
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_int
from ._cache import cache_dir, load_npz, save_npz_atomic
from .base import ClassImageSource

__all__ = ["GlyphSource", "SPLITS", "catalogue", "glyphs"]

# Bump when the catalogue or the drawing changes, so stale cache entries are never read.
_VERSION = 7
SPLITS = ("background", "evaluation")
_MAX_PER_ALPHABET = 90
# Mean absolute difference (on normalised, blurred 24x24 renderings) under which two letters count as the
# same shape. Chosen by looking at the merged pairs: it joins o/о/ο, l/I/ӏ, p/р, Η/H, ق/ڧ; a higher value
# starts joining letters that differ by a dot or a bar (i/I, Θ/O, ڎ/ڈ).
_LOOKALIKE_THRESHOLD = 0.045
_CROSS_SPLIT_THRESHOLD = 0.065

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

# Faces a "drawer" may write in. The first one defines which letters exist. Upright STIX is left out: its
# wide serifs survive thinning and make letters look typeset.
_FACES = ("DejaVuSans.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
          "DejaVuSansMono.ttf", "DejaVuSansMono-Oblique.ttf", "STIXGeneralItalic.ttf")
_SKELETON_SIDE = 56  # the longer side of a letter when it is thinned, in pixels


def _font_dir() -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


@functools.cache
def _font(face: str):
    from matplotlib.ft2font import FT2Font

    return FT2Font(os.path.join(_font_dir(), face))


@functools.cache
def _charmap(face: str) -> frozenset[int]:
    return frozenset(_font(face).get_charmap())


def _render(face: str, codepoint: int, em_px: float) -> np.ndarray:
    """Grey rendering of one character, cropped to its ink: float ``[h, w]`` in [0, 1] (may be empty)."""
    from matplotlib.ft2font import LoadFlags

    font = _font(face)
    font.clear()
    font.set_size(em_px, 72)  # at 72 dpi one point is one pixel
    font.set_text(chr(codepoint), 0.0, flags=LoadFlags.NO_HINTING)
    font.draw_glyphs_to_bitmap(antialiased=True)
    image = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    rows, cols = np.nonzero(image > 0.25)
    if rows.size == 0:
        return np.zeros((0, 0), np.float32)
    return image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


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
    save_npz_atomic(path, alphabets=np.array([a for a, _ in result]),
                    **{a: np.array(c, dtype=np.int64) for a, c in result})
    return tuple(result)


def _matplotlib_version() -> str:
    import matplotlib

    return matplotlib.__version__


def _skeleton_points(face: str, codepoint: int) -> np.ndarray | None:
    """Centre-line pixels of one letter in one face, as ``[P, 2]`` (y, x) in about [-1, 1]."""
    from skimage.morphology import skeletonize

    probe = _render(face, codepoint, 48)
    if probe.size == 0 or max(probe.shape) < 3:
        return None
    # Re-render so the longer side is _SKELETON_SIDE pixels: skeleton points then lie about one pixel
    # apart whatever the letter's natural size, which keeps the redrawn strokes gap-free.
    image = _render(face, codepoint, 48 * _SKELETON_SIDE / max(probe.shape))
    if image.size == 0:
        return None
    skeleton = _prune_spurs(skeletonize(np.pad(image > 0.5, 2)), max_length=_SKELETON_SIDE // 7)
    points = np.argwhere(skeleton).astype(np.float32)
    if len(points) < 2:
        return None
    center = (points.max(0) + points.min(0)) / 2
    return (points - center) / (_SKELETON_SIDE / 2)


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _prune_spurs(skeleton: np.ndarray, max_length: int) -> np.ndarray:
    """Remove branches shorter than ``max_length`` that run from a free end into a junction.

    Thinning a font letter leaves such spurs at serifs and sharp corners; a pen never draws them, and
    they are what makes a skeleton still look typeset. Isolated short strokes (dots) are kept.
    """
    from scipy.ndimage import convolve

    skeleton = skeleton.copy()
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    counts = convolve(skeleton.astype(np.uint8), ring, mode="constant") * skeleton
    ends = np.argwhere(skeleton & (counts == 1))
    height, width = skeleton.shape
    for y, x in ends:
        path, visited = [(y, x)], {(y, x)}
        while len(path) <= max_length:
            cy, cx = path[-1]
            if len(path) > 1 and counts[cy, cx] >= 3:
                # Reached a junction: the path so far (without the junction) is a spur.
                for py, px in path[:-1]:
                    skeleton[py, px] = False
                break
            nxt = [(cy + dy, cx + dx) for dy, dx in _NEIGHBOURS
                   if 0 <= cy + dy < height and 0 <= cx + dx < width and skeleton[cy + dy, cx + dx]
                   and (cy + dy, cx + dx) not in visited]
            if not nxt:  # a free end again: an isolated short stroke (a dot, an accent), keep it
                break
            # Prefer the side neighbour over the diagonal one, so a staircase is walked step by step.
            nxt.sort(key=lambda p: abs(p[0] - cy) + abs(p[1] - cx))
            visited.update(nxt)
            path.append(nxt[0])
    return skeleton


@functools.lru_cache(maxsize=4096)
def _skeletons(codepoint: int) -> tuple[np.ndarray, ...]:
    """Skeletons of one letter in every face that draws it (the main face first); memoised, since every
    seed and image size redraws the same centre lines."""
    result = []
    for face in _FACES:
        if codepoint in _charmap(face):
            points = _skeleton_points(face, codepoint)
            if points is not None:
                result.append(points)
    return tuple(result)


def _class_seed(seed: int, codepoint: int) -> int:
    # A class's images depend only on (seed, letter), not on which other classes exist.
    digest = hashlib.sha256(f"glyphs:{seed}:{codepoint}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _draw(skeletons: list[tuple[np.ndarray, ...]], seeds: list[int], images_per_class: int,
          image_size: int) -> torch.Tensor:
    """Draw ``images_per_class`` images per class; returns uint8 ``[classes * images_per_class, 1, S, S]``."""
    num_images = len(skeletons) * images_per_class
    params = {key: [] for key in ("face", "linear", "shift", "freq", "phase", "amp", "pen")}
    for faces, seed in zip(skeletons, seeds):
        gen = torch.Generator().manual_seed(seed)
        n = images_per_class
        # Each face is used about equally often, in a random order per class.
        order = torch.randperm(len(faces), generator=gen)
        params["face"].append(order[torch.arange(n) % len(faces)])
        angle = (torch.rand(n, generator=gen) - 0.5) * np.deg2rad(24)
        shear = (torch.rand(n, generator=gen) - 0.5) * 0.4
        scale = 0.82 + 0.22 * torch.rand(n, 2, generator=gen)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear_m = torch.zeros(n, 2, 2)
        shear_m[:, 0, 0] = 1
        shear_m[:, 1, 1] = 1
        shear_m[:, 0, 1] = shear  # x += shear * y: writing slanted left or right
        params["linear"].append(rotation @ shear_m @ torch.diag_embed(scale))
        params["shift"].append((torch.rand(n, 2, generator=gen) - 0.5) * 0.12)
        # Elastic wobble: per output axis a sum of 3 smooth plane waves over the letter.
        params["freq"].append((torch.rand(n, 2, 3, 2, generator=gen) - 0.5) * 2 * 2.2)
        params["phase"].append(torch.rand(n, 2, 3, generator=gen) * 2 * np.pi)
        params["amp"].append(torch.rand(n, 2, 3, generator=gen) * 0.05)
        params["pen"].append(torch.rand(n, generator=gen))
    face = torch.cat(params["face"])
    linear, shift = torch.cat(params["linear"]), torch.cat(params["shift"])
    freq, phase, amp = torch.cat(params["freq"]), torch.cat(params["phase"]), torch.cat(params["amp"])
    pen = torch.cat(params["pen"])

    # Gather every image's skeleton points into one flat list with an image index per point.
    points, owners = [], []
    for c, faces in enumerate(skeletons):
        for j in range(images_per_class):
            i = c * images_per_class + j
            pts = faces[int(face[i])]
            points.append(pts)
            owners.append(np.full(len(pts), i, dtype=np.int64))
    pts = torch.from_numpy(np.concatenate(points))
    owner = torch.from_numpy(np.concatenate(owners))
    xy = pts.flip(-1)  # (x, y)
    wave = torch.sin(torch.einsum("pakd,pd->pak", freq[owner], xy) * np.pi + phase[owner])
    xy = xy + (amp[owner] * wave).sum(-1)
    xy = torch.einsum("pij,pj->pi", linear[owner], xy) + shift[owner]

    canvas = 2 * image_size  # draw at 2x and box-downsample: cheap anti-aliasing
    # The letter's longer side spans ~70% of the image, like Omniglot characters at 28x28.
    pos = (xy * 0.35 + 0.5) * canvas - 0.5
    x0, y0 = pos[:, 0].floor(), pos[:, 1].floor()
    fx, fy = pos[:, 0] - x0, pos[:, 1] - y0
    ink = torch.zeros(num_images * canvas * canvas)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = (x0 + dx).long(), (y0 + dy).long()
        inside = (x >= 0) & (x < canvas) & (y >= 0) & (y < canvas)
        index = owner[inside] * canvas * canvas + y[inside] * canvas + x[inside]
        ink.index_add_(0, index, w[inside])
    ink = ink.view(num_images, 1, canvas, canvas).clamp_(max=1.0)

    # Round pen: convolve with a soft disc. Pen radii (in canvas pixels) come in a few sizes so that one
    # convolution serves many images; 28x28 gives strokes about 1.5-2.5 output pixels wide (mean ink ~0.1, like MNIST).
    # The disc is pre-blurred with the 2x2 box and applied with stride 2, which downsamples in the same
    # pass (4x less work than inking the 2x canvas and pooling afterwards).
    radii = (np.array([0.9, 1.2, 1.5, 1.8]) * image_size / 28).tolist()
    which = (pen * len(radii)).long().clamp_(max=len(radii) - 1)
    out = torch.empty(num_images, 1, image_size, image_size)
    for k, radius in enumerate(radii):
        chosen = torch.nonzero(which == k).flatten()
        if chosen.numel() == 0:
            continue
        half = int(np.ceil(radius + 1))
        grid = torch.arange(-half, half + 1, dtype=torch.float32)
        dist = torch.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)
        disc = (radius + 0.5 - dist).clamp(0, 1)
        # box_disc[m] = mean of disc[m - 1], disc[m] per axis: output pixel o reads canvas 2o - half ...
        box_disc = F.avg_pool2d(F.pad(disc[None, None], (1, 1, 1, 1)), 2, stride=1)
        out[chosen] = F.conv2d(ink[chosen], box_disc, stride=2, padding=half).clamp_(0, 1)
    return (out * 255).round_().to(torch.uint8)


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
            share no alphabet and no letter shape.
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
