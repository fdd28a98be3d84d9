"""Images -> one node per patch of a fixed grid (ViT-style patching: Dosovitskiy et al. 2021).

Every image encoder opens files with :func:`open_image`: any format Pillow reads, with the
EXIF orientation applied (a phone photo stored sideways is featurized upright).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.manifest import ItemError

IMAGE_MODES = {"grey": "L", "rgb": "RGB"}


def open_image(content: bytes, mode: str = "RGB") -> Image.Image:
    """File bytes -> a Pillow image in ``mode`` (``L`` or ``RGB``), upright by its EXIF
    orientation; raises ``ItemError`` for a file Pillow cannot read or a corrupt one."""
    try:
        image = Image.open(io.BytesIO(content))
        image.load()
        image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise ItemError("not an image format Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # corrupt or huge
        raise ItemError(f"corrupt image ({type(err).__name__}: {err})") from None
    return image.convert(mode)


class ImageFeaturizer(Featurizer):
    """An image, upright (EXIF), resized to ``size x size`` (bilinear), cut into ``(size / patch)^2`` patches.

    Node ``(r, c)`` of the grid has ``x`` = its patch's pixels scaled to [0, 1], flattened
    row by row with the channels last (``[patch * patch * channels]``, channels = 1 for
    ``grey``, 3 for ``rgb``), and ``pos = (r, c)``; nodes are in row-major grid order.

    Args:
        size: side of the resized image in pixels.
        patch: side of a square patch in pixels; must divide ``size``.
        mode: ``grey`` or ``rgb`` (transparency is dropped, palettes expanded).
    """

    kind = "image"
    encoder = "patches"
    reads_files = True

    def __init__(self, size: int = 32, patch: int = 8, mode: str = "grey") -> None:
        if mode not in IMAGE_MODES:
            raise ValueError(f"image mode {mode!r} is not one of {sorted(IMAGE_MODES)}")
        if size < 1 or patch < 1 or size % patch:
            raise ValueError(f"image patch ({patch}) must be a positive divisor of the image size ({size})")
        self.size, self.patch, self.mode = size, patch, mode
        grid = size // patch
        rows, cols = np.divmod(np.arange(grid * grid), grid)
        self._pos = np.stack([rows, cols], axis=1).astype(np.float32)

    def versions(self) -> dict[str, str]:
        return package_versions("Pillow")

    def decode(self, content: bytes) -> np.ndarray:
        """File bytes -> float32 ``[size, size, channels]`` in [0, 1]."""
        image = open_image(content, IMAGE_MODES[self.mode]).resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        return pixels.reshape(self.size, self.size, -1)

    def compute(self, decoded: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not decoded:
            return []
        grid, p = self.size // self.patch, self.patch
        images = np.stack(decoded)  # [B, size, size, C]
        patches = images.reshape(len(decoded), grid, p, grid, p, -1).transpose(0, 1, 3, 2, 4, 5)
        x = patches.reshape(len(decoded), grid * grid, -1)  # [B, grid^2, p * p * C]
        return [{"x": np.ascontiguousarray(item), "pos": self._pos.copy()} for item in x]
