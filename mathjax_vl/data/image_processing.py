"""Image decode, augmentation, resize and normalisation matching the vision tower's HF processor.

The vision tower was pretrained on pixels produced by its Hugging Face image processor, so the
pipeline reproduces that processor's arithmetic exactly (checked against ``transformers`` in
tests/data/test_image_processing.py): transparency composited onto white, RGB, PIL bicubic resize
on uint8 pixels, rescale by 1/255 in float32, ``(x - mean) / std``. SigLIP squashes to a fixed
``height x width`` with mean = std = 0.5; CLIP resizes the shortest edge and centre-crops, with the
OpenAI mean/std. Output is channels-last ``[H, W, 3] float32`` (the JAX convention; HF returns CHW).

Augmentations (off by default) act on the decoded image before the resize and are seeded per
example and image, so a pipeline yields the same pixels whatever the number of workers:
``scale`` zooms in or out around the centre (white fill, as figures are drawn on white),
``stretch`` changes the aspect ratio, ``gamma`` bends intensities.

Dynamic resolution (InternVL, resize_mode ``"dynamic_tiles"``, HF GotOcr2ImageProcessor with
``crop_to_patches``): the image is squashed onto the grid of ``cols x rows`` tiles (between
``min_tiles`` and ``max_tiles`` of them) whose aspect ratio is closest to the image's, cut into
those tiles (row-major), and, when there is more than one, followed by the whole image squashed
to one tile (the thumbnail). ``process_image_tiles`` returns ``[n_tiles, H, W, 3]``; each tile is
one image for the model, so the pipeline counts tiles against its image budget.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
from typing import Any, Literal

import numpy as np
from PIL import Image

from mathjax_vl.data.records import RecordError

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Per-example random augmentations; ranges are inclusive, (1, 1) disables one.

    Attributes:
      scale_range: zoom factor; > 1 crops the centre, < 1 shrinks the figure onto a white canvas.
      stretch_range: factor applied to the width only (aspect-ratio change).
      gamma_range: intensities become ``(x / 255) ** gamma``.
    """

    scale_range: tuple[float, float] = (1.0, 1.0)
    stretch_range: tuple[float, float] = (1.0, 1.0)
    gamma_range: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("scale_range", "stretch_range", "gamma_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(
                    f"AugmentConfig.{name} must satisfy 0 < low <= high, got {(lo, hi)}"
                )

    @property
    def enabled(self) -> bool:
        return any(
            r != (1.0, 1.0) for r in (self.scale_range, self.stretch_range, self.gamma_range)
        )


RESIZE_MODES = ("squash", "shortest_edge_crop", "pad_square", "dynamic_tiles")
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
PAD_MIN_SIZE = 14  # DeepSeek-VL's processors: no side shorter than this after the resize


@dataclasses.dataclass(frozen=True)
class ImageProcessingConfig:
    """How raw images become the vision tower's ``pixel_values``.

    Attributes:
      height, width: output size (the tower's input resolution).
      resize_mode: ``"squash"`` resizes straight to height x width (SigLIP);
        ``"shortest_edge_crop"`` resizes the shortest edge to ``height`` keeping the aspect
        ratio, then centre-crops (CLIP); ``"pad_square"`` resizes the longest edge to ``height``
        (the other ``max(round(side * scale), 14)``) and centres it on a square of the colour
        ``int(255 * mean)`` (DeepSeek-VL).
      resample: the PIL filter, ``"bicubic"`` (every processor's default) or ``"bilinear"``.
      mean, std: per-channel normalisation after rescaling.
      rescale_factor: multiplies the uint8 pixels (1/255 in every HF processor we use).
      augment: random augmentations (training only); None disables them.
    """

    height: int = 384
    width: int = 384
    resize_mode: Literal["squash", "shortest_edge_crop", "pad_square", "dynamic_tiles"] = "squash"
    mean: tuple[float, float, float] = SIGLIP_MEAN
    std: tuple[float, float, float] = SIGLIP_STD
    rescale_factor: float = 1.0 / 255.0
    augment: AugmentConfig | None = None
    resample: Literal["bicubic", "bilinear"] = "bicubic"
    min_tiles: int = 1
    max_tiles: int = 1
    use_thumbnail: bool = True

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize_mode {self.resize_mode!r}; expected {RESIZE_MODES}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"unknown resample {self.resample!r}; expected {sorted(RESAMPLE)}")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(
                f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}"
            )
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @classmethod
    def siglip(cls, size: int = 384, **kwargs: Any) -> ImageProcessingConfig:
        return cls(height=size, width=size, resize_mode="squash", **kwargs)

    @classmethod
    def clip(cls, size: int = 224, **kwargs: Any) -> ImageProcessingConfig:
        return cls(
            height=size,
            width=size,
            resize_mode="shortest_edge_crop",
            mean=CLIP_MEAN,
            std=CLIP_STD,
            **kwargs,
        )

    @classmethod
    def for_tower(cls, vision: Any, **kwargs: Any) -> ImageProcessingConfig:
        """The processing a vision tower config expects: its resolution and mean/std, with
        SigLIP's squash resize or CLIP's shortest-edge resize + centre crop. Training and
        evaluation both use this, so a model is evaluated on the pixels it was trained on."""
        from mathjax_vl.models import registry

        spec = registry.spec_of(vision)
        if spec.resize_mode is None:
            raise ValueError(f"{spec.kind} ({spec.role}) declares no image preprocessing")
        tiling = {}
        if spec.resize_mode == "dynamic_tiles":  # the tower's tiling fields (InternViT)
            tiling = dict(
                min_tiles=vision.min_num_tiles,
                max_tiles=vision.max_num_tiles,
                use_thumbnail=vision.use_thumbnail,
            )
        return cls(
            height=vision.image_size,
            width=vision.image_size,
            resize_mode=spec.resize_mode,
            mean=tuple(vision.image_mean),
            std=tuple(vision.image_std),
            **{**tiling, **kwargs},
        )

    @property
    def tiles_images(self) -> bool:
        """Whether an image becomes several tiles (dynamic resolution with max_tiles > 1)."""
        return self.resize_mode == "dynamic_tiles" and self.max_tiles > 1

    @classmethod
    def from_hf_dir(cls, path: str, **kwargs: Any) -> ImageProcessingConfig:
        """Reads a local ``preprocessor_config.json`` (SigLIP- or CLIP-style) into a config."""
        cfg_path = os.path.join(path, "preprocessor_config.json")
        with open(cfg_path) as f:
            hf = json.load(f)
        size = hf.get("size", {})
        mean = tuple(hf.get("image_mean", SIGLIP_MEAN))
        std = tuple(hf.get("image_std", SIGLIP_STD))
        rescale = float(hf.get("rescale_factor", 1.0 / 255.0))
        if hf.get("crop_to_patches") and "height" in size:  # GotOcr2 / InternVL tiles
            tiles = dict(
                min_tiles=int(hf.get("min_patches", 1)), max_tiles=int(hf.get("max_patches", 12))
            )
            return cls(size["height"], size["width"], "dynamic_tiles", mean, std, rescale,
                       **{**tiles, **kwargs})  # fmt: skip
        if hf.get("do_center_crop") and "shortest_edge" in size:
            crop = hf.get("crop_size", {})
            h = crop.get("height", size["shortest_edge"])
            w = crop.get("width", size["shortest_edge"])
            if h != w or h != size["shortest_edge"]:
                raise ValueError(
                    f"{cfg_path}: only crop == shortest_edge is supported, got size={size}, "
                    f"crop_size={crop}"
                )
            return cls(h, w, "shortest_edge_crop", mean, std, rescale, **kwargs)
        if "height" in size and "width" in size:
            return cls(size["height"], size["width"], "squash", mean, std, rescale, **kwargs)
        raise ValueError(f"{cfg_path}: unsupported size spec {size}")


def decode_image(data: Any, source: str = "<memory>", index: int | str = "?") -> Image.Image:
    """Encoded bytes / uint8 array / PIL image -> RGB PIL image; RecordError if unreadable."""
    if isinstance(data, Image.Image):
        image = data
    elif isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        image = Image.fromarray(data)
    elif isinstance(data, (bytes, bytearray, memoryview, np.bytes_)):
        if len(data) == 0:
            raise RecordError(source, index, "corrupt_image", "image bytes are empty")
        try:
            image = Image.open(io.BytesIO(bytes(data)))
            image.load()
        except Exception as err:
            raise RecordError(
                source, index, "corrupt_image", f"cannot decode image ({len(data)} bytes): {err}"
            ) from err
    else:
        raise RecordError(
            source,
            index,
            "corrupt_image",
            "expected encoded image bytes, a uint8 array or a PIL image, got "
            f"{type(data).__name__}",
        )
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing any transparency onto white (what HF's convert_to_rgb does)."""
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def augment_image(image: Image.Image, cfg: AugmentConfig, rng: np.random.Generator) -> Image.Image:
    """Applies scale, stretch and gamma (in that order) drawn from ``rng``."""
    scale = float(rng.uniform(*cfg.scale_range))
    stretch = float(rng.uniform(*cfg.stretch_range))
    gamma = float(rng.uniform(*cfg.gamma_range))
    w, h = image.size
    if stretch != 1.0:
        image = image.resize((max(1, round(w * stretch)), h), Image.Resampling.BICUBIC)
        w, h = image.size
    if scale != 1.0:
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        scaled = image.resize((sw, sh), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        # Paste centred; a negative offset crops the centre of a zoomed-in figure.
        canvas.paste(scaled, ((w - sw) // 2, (h - sh) // 2))
        image = canvas
    if gamma != 1.0:
        lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
        image = image.point(list(lut) * 3)
    return image


def pad_square(image: Image.Image, cfg: ImageProcessingConfig) -> Image.Image:
    """Longest edge -> cfg.height, then centred on a square of colour int(255 * mean)."""
    w, h = image.size
    scale = cfg.height / max(w, h)
    new_w = max(round(w * scale), PAD_MIN_SIZE)  # Python's round, as the HF processor
    new_h = max(round(h * scale), PAD_MIN_SIZE)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), RESAMPLE[cfg.resample])
    if new_w == new_h:
        return image
    side = max(new_w, new_h)
    canvas = Image.new("RGB", (side, side), tuple(int(m * 255) for m in cfg.mean))
    canvas.paste(image, ((side - new_w) // 2, (side - new_h) // 2))
    return canvas


def resize_image(image: Image.Image, cfg: ImageProcessingConfig) -> Image.Image:
    """PIL resize on uint8 pixels (bicubic unless cfg.resample), as the HF PIL-backend
    processors do ("dynamic_tiles" here is its one-tile case, a squash; process_image_tiles
    tiles)."""
    if cfg.resize_mode == "pad_square":
        return pad_square(image, cfg)
    if cfg.resize_mode in ("squash", "dynamic_tiles"):
        if image.size != (cfg.width, cfg.height):
            image = image.resize((cfg.width, cfg.height), RESAMPLE[cfg.resample])
        return image
    # shortest_edge_crop: short side -> height, long side int(size * long / short) as in HF
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = cfg.height, int(cfg.height * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), RESAMPLE[cfg.resample])
    top = int((new_h - cfg.height) / 2.0)
    left = int((new_w - cfg.width) / 2.0)
    return image.crop((left, top, left + cfg.width, top + cfg.height))


@functools.lru_cache(maxsize=16)
def _normalize_table(
    rescale_factor: float, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """[256, 3] float32: the normalised value of every uint8 level per channel.

    Computed with HF's arithmetic (rescale in float64 then float32, ``(x - mean) / std`` in
    float32), so a table lookup gives bit-identical pixels at a fraction of the cost.
    """
    levels = (np.arange(256, dtype=np.float64) * rescale_factor).astype(np.float32)
    mean32 = np.asarray(mean, np.float32)
    std32 = np.asarray(std, np.float32)
    return ((levels[:, None] - mean32) / std32).astype(np.float32)


def normalize(pixels_uint8: np.ndarray, cfg: ImageProcessingConfig) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W, 3] float32: ``(x * rescale - mean) / std`` by table lookup."""
    table = _normalize_table(float(cfg.rescale_factor), tuple(cfg.mean), tuple(cfg.std))
    out = np.empty(pixels_uint8.shape, np.float32)
    for c in range(3):
        out[..., c] = table[:, c].take(pixels_uint8[..., c])
    return out


def process_image(
    data: Any,
    cfg: ImageProcessingConfig,
    *,
    rng: np.random.Generator | None = None,
    source: str = "<memory>",
    index: int | str = "?",
) -> np.ndarray:
    """Full path: decode -> (augment) -> resize -> rescale/normalise. Returns [H, W, 3] float32.

    ``rng`` is required when ``cfg.augment`` is enabled (seed it per example, see
    :func:`example_rng`), so augmentation is reproducible.
    """
    image = decode_image(data, source, index)
    if cfg.augment is not None and cfg.augment.enabled:
        if rng is None:
            raise ValueError("augmentation is enabled but no rng was given")
        image = augment_image(image, cfg.augment, rng)
    image = resize_image(image, cfg)
    return normalize(np.asarray(image, dtype=np.uint8), cfg)


def tile_grid(
    height: int, width: int, tile: int, min_tiles: int, max_tiles: int
) -> tuple[int, int]:
    """(cols, rows) of the tile grid for an image: the grid whose cols / rows is closest to
    width / height among min_tiles <= cols * rows <= max_tiles. Candidates go by tile count
    (cols-major within one count); on a tie the later (larger) grid wins while the image covers
    more than half of it, which is the rule of InternVL's dynamic_preprocess and HF's
    get_optimal_tiled_canvas."""
    grids = [
        (c, r)
        for c in range(1, max_tiles + 1)
        for r in range(1, max_tiles + 1)
        if min_tiles <= c * r <= max_tiles
    ]
    grids.sort(key=lambda g: g[0] * g[1])  # stable: cols-major order within a count
    ratio, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for c, r in grids:
        diff = abs(ratio - c / r)
        if diff < best_diff:
            best, best_diff = (c, r), diff
        elif diff == best_diff and area > 0.5 * tile * tile * c * r:
            best = (c, r)
    return best


def num_tiles(height: int, width: int, cfg: ImageProcessingConfig) -> int:
    """Tiles an image of height x width becomes (the thumbnail included)."""
    if not cfg.tiles_images:
        return 1
    c, r = tile_grid(height, width, cfg.height, cfg.min_tiles, cfg.max_tiles)
    return c * r + int(cfg.use_thumbnail and c * r > 1)


def tile_image(image: Image.Image, cfg: ImageProcessingConfig) -> list[Image.Image]:
    """An RGB image -> its tiles (row-major) and the thumbnail, each height x width, uint8."""
    if not cfg.tiles_images:
        return [resize_image(image, cfg)]
    if cfg.height != cfg.width:
        raise ValueError(f"dynamic tiles need square tiles, got {cfg.height}x{cfg.width}")
    t = cfg.height
    w, h = image.size
    cols, rows = tile_grid(h, w, t, cfg.min_tiles, cfg.max_tiles)
    grid = image.resize((cols * t, rows * t), RESAMPLE[cfg.resample])
    tiles = [
        grid.crop((c * t, r * t, (c + 1) * t, (r + 1) * t))
        for r in range(rows)
        for c in range(cols)
    ]
    if cfg.use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((t, t), RESAMPLE[cfg.resample]))
    return tiles


def process_image_tiles(
    data: Any,
    cfg: ImageProcessingConfig,
    *,
    rng: np.random.Generator | None = None,
    source: str = "<memory>",
    index: int | str = "?",
) -> np.ndarray:
    """process_image with dynamic tiles: [n_tiles, H, W, 3] float32 (n_tiles = 1 unless
    ``cfg.tiles_images``)."""
    image = decode_image(data, source, index)
    if cfg.augment is not None and cfg.augment.enabled:
        if rng is None:
            raise ValueError("augmentation is enabled but no rng was given")
        image = augment_image(image, cfg.augment, rng)
    tiles = tile_image(image, cfg)
    return np.stack([normalize(np.asarray(t, dtype=np.uint8), cfg) for t in tiles])


def example_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator determined by (seed, example key...), independent of worker layout."""
    return np.random.default_rng([int(seed), *(int(k) for k in key)])
