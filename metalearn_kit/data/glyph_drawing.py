"""Drawing the glyphs: letters rendered from matplotlib's fonts, thinned to centre lines, and redrawn by
"drawers" (a face, an affine jitter, an elastic wobble, a pen width) -- the machinery behind
:func:`metalearn_kit.data.glyph_source.glyphs` and its look-alike checks.

A class's images depend only on ``(seed, letter)`` (:func:`_class_seed`), never on which other letters exist.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np
import torch
import torch.nn.functional as F

__all__: list[str] = []  # internal to the glyph source

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


def _class_params(faces: int, seed: int, n: int) -> dict[str, torch.Tensor]:
    """The random drawers of one class's ``n`` images, from its own seeded stream: face index ``[n]``, affine
    ``linear [n, 2, 2]`` and ``shift [n, 2]``, elastic wobble ``freq [n, 2, 3, 2]``, ``phase``/``amp [n, 2, 3]``,
    pen ``[n]`` in [0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    # Each face is used about equally often, in a random order per class.
    order = torch.randperm(faces, generator=gen)
    params = {"face": order[torch.arange(n) % faces]}
    angle = (torch.rand(n, generator=gen) - 0.5) * np.deg2rad(24)
    shear = (torch.rand(n, generator=gen) - 0.5) * 0.4
    scale = 0.82 + 0.22 * torch.rand(n, 2, generator=gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_m = torch.zeros(n, 2, 2)
    shear_m[:, 0, 0] = 1
    shear_m[:, 1, 1] = 1
    shear_m[:, 0, 1] = shear  # x += shear * y: writing slanted left or right
    params["linear"] = rotation @ shear_m @ torch.diag_embed(scale)
    params["shift"] = (torch.rand(n, 2, generator=gen) - 0.5) * 0.12
    # Elastic wobble: per output axis a sum of 3 smooth plane waves over the letter.
    params["freq"] = (torch.rand(n, 2, 3, 2, generator=gen) - 0.5) * 2 * 2.2
    params["phase"] = torch.rand(n, 2, 3, generator=gen) * 2 * np.pi
    params["amp"] = torch.rand(n, 2, 3, generator=gen) * 0.05
    params["pen"] = torch.rand(n, generator=gen)
    return params


def _warped_points(skeletons: list[tuple[np.ndarray, ...]], params: dict[str, torch.Tensor],
                   images_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image's skeleton points in one flat list, wobbled and moved by its drawer: ``xy [P, 2]`` (x, y) in
    about [-1, 1], and the index of the image each point belongs to, ``owner [P]``."""
    points, owners = [], []
    for c, faces in enumerate(skeletons):
        for j in range(images_per_class):
            i = c * images_per_class + j
            pts = faces[int(params["face"][i])]
            points.append(pts)
            owners.append(np.full(len(pts), i, dtype=np.int64))
    pts = torch.from_numpy(np.concatenate(points))
    owner = torch.from_numpy(np.concatenate(owners))
    xy = pts.flip(-1)  # (x, y)
    wave = torch.sin(torch.einsum("pakd,pd->pak", params["freq"][owner], xy) * np.pi + params["phase"][owner])
    xy = xy + (params["amp"][owner] * wave).sum(-1)
    return torch.einsum("pij,pj->pi", params["linear"][owner], xy) + params["shift"][owner], owner


def _splat(xy: torch.Tensor, owner: torch.Tensor, num_images: int, canvas: int) -> torch.Tensor:
    """Ink of the points ``xy [P, 2]`` spread bilinearly on ``num_images`` canvases ``[N, 1, canvas, canvas]``."""
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
    return ink.view(num_images, 1, canvas, canvas).clamp_(max=1.0)


def _pen_strokes(ink: torch.Tensor, pen: torch.Tensor, image_size: int) -> torch.Tensor:
    """The 2x canvases ``ink [N, 1, 2S, 2S]`` drawn with a round pen of the size ``pen [N]`` picks and
    downsampled: ``[N, 1, S, S]`` in [0, 1]."""
    # Round pen: convolve with a soft disc. Pen radii (in canvas pixels) come in a few sizes so that one
    # convolution serves many images; 28x28 gives strokes about 1.5-2.5 output pixels wide (mean ink ~0.1, like MNIST).
    # The disc is pre-blurred with the 2x2 box and applied with stride 2, which downsamples in the same
    # pass (4x less work than inking the 2x canvas and pooling afterwards).
    radii = (np.array([0.9, 1.2, 1.5, 1.8]) * image_size / 28).tolist()
    which = (pen * len(radii)).long().clamp_(max=len(radii) - 1)
    out = torch.empty(ink.shape[0], 1, image_size, image_size)
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
    return out


def _draw(skeletons: list[tuple[np.ndarray, ...]], seeds: list[int], images_per_class: int,
          image_size: int) -> torch.Tensor:
    """Draw ``images_per_class`` images per class; returns uint8 ``[classes * images_per_class, 1, S, S]``."""
    per_class = [_class_params(len(faces), seed, images_per_class) for faces, seed in zip(skeletons, seeds)]
    params = {key: torch.cat([p[key] for p in per_class]) for key in per_class[0]}
    xy, owner = _warped_points(skeletons, params, images_per_class)
    # draw at 2x and box-downsample: cheap anti-aliasing
    ink = _splat(xy, owner, len(skeletons) * images_per_class, 2 * image_size)
    return (_pen_strokes(ink, params["pen"], image_size) * 255).round_().to(torch.uint8)
