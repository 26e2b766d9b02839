"""The warm matplotlib state a sandbox zygote builds once, before it forks any program.

Why: a fresh interpreter that imports matplotlib costs about a second, a figure ~25 ms. The zygote
imports matplotlib, draws one warm-up figure (fonts, glyph caches, PNG encoder loaded) and moves
the warm heap out of the garbage collector's reach; every program then runs in a child forked
from it, which starts with all of that in copy-on-write memory.

Besides the image, a program's child reports which drawn text labels fall outside the canvas
(`DRAWN_TEXT`, filled during `savefig` on the actual renderer), for the quality gate "no label
clipped off the canvas".
"""

from __future__ import annotations

import os
from typing import Any

# (text, x0, y0, x1, y1, canvas width, canvas height) of every label drawn by this process.
DRAWN_TEXT: list[tuple[str, float, float, float, float, float, float]] = []


def prepare_interpreter(preload: tuple[str, ...], share_text_metrics: bool) -> None:
    """Zygote-side, once: import matplotlib & co. and measure every text label drawn."""
    os.environ["MPLBACKEND"] = "Agg"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import importlib

    for name in preload:
        importlib.import_module(name)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import matplotlib.text

    original_text_draw = matplotlib.text.Text.draw
    original_get_layout = matplotlib.text.Text._get_layout

    def text_draw(self, renderer):  # type: ignore[no-untyped-def]
        if not (self.get_visible() and self.get_text().strip()):
            return original_text_draw(self, renderer)
        # The extent is the layout draw() computes, placed where draw() puts it. Reusing that
        # layout (instead of `get_window_extent`, which lays the text out again and toggles the
        # figure's dpi) keeps the clip measurement at a few microseconds per label.
        memo: list[Any] = []
        if not self.get_wrap():  # a wrapped text is laid out on its re-wrapped string

            def layout_once(r):  # type: ignore[no-untyped-def]
                if r is not renderer:
                    return original_get_layout(self, r)
                if not memo:
                    memo.append(original_get_layout(self, r))
                return memo[0]

            self._get_layout = layout_once
        try:
            original_text_draw(self, renderer)
        finally:
            self.__dict__.pop("_get_layout", None)
        try:
            if memo:
                x, y = self.get_transform().transform(self.get_unitless_position())
                box = memo[0][0].translated(x, y)
            else:
                box = self.get_window_extent(renderer)
            width, height = renderer.get_canvas_width_height()
            DRAWN_TEXT.append((self.get_text(), box.x0, box.y0, box.x1, box.y1, width, height))
        except Exception:
            pass

    matplotlib.text.Text.draw = text_draw
    if share_text_metrics:
        _share_text_metrics_across_figures()
    # Draw once so font files, glyph caches and the PNG encoder are loaded before forking: every
    # worker then starts with them in (copy-on-write) memory instead of paying on its first figure.
    import io

    fig = matplotlib.pyplot.figure(figsize=(2, 2), dpi=50)
    fig.gca().plot([0, 1], [0, 1])
    fig.gca().set_title("warm-up 0123456789 ABC xyz °∠△⊥∥√π²")
    fig.savefig(io.BytesIO(), format="png")
    matplotlib.pyplot.close(fig)
    draw_typical_figure(io.BytesIO())
    DRAWN_TEXT.clear()
    freeze_heap()


def draw_typical_figure(out: Any) -> None:
    """A figure like the families' (lines, polygon, labels, no axes): warms what they use."""
    import matplotlib.patches
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=96)
    ax.add_patch(matplotlib.patches.Polygon([(0, 0), (1, 0), (0.4, 0.8)], fill=False))
    ax.plot([0, 1, 0.5, 0], [0, 0, 1, 0], "k-", linewidth=1.5)
    for x, y, name in ((0, 0, "A"), (1, 0, "B"), (0.5, 1, "C"), (0.5, -0.05, "5 cm")):
        ax.text(x, y, name, fontsize=12)
    ax.set_title("x = 3, y = 4")
    ax.set_aspect("equal")
    ax.axis("off")
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)


_TEXT_METRICS_CACHE_SIZE = 50_000


def _share_text_metrics_across_figures() -> None:
    """Let every figure of this worker reuse text measurements (width, height, descent).

    matplotlib caches `get_text_width_height_descent` per renderer INSTANCE, and each figure gets
    a new renderer, so every label of every figure is shaped twice by FreeType (measure, then
    draw). For plain (non-math) text on the
    Agg renderer the result depends only on the string, the font properties, the dpi, the font
    files they resolve to and the hinting/kerning settings, so a process-wide cache keyed on
    exactly those returns the numbers a fresh interpreter computes (the image-code reproduction
    test checks it byte for byte). Math text, usetex and other renderers are not cached.
    """
    import matplotlib
    import matplotlib.text
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import fontManager

    original = getattr(matplotlib.text, "_get_text_metrics_with_cache", None)
    if original is None or not hasattr(fontManager, "_find_fonts_by_props"):
        return  # another matplotlib version: keep its own caching
    cache: dict[tuple[Any, ...], tuple[float, float, float]] = {}
    rc = matplotlib.rcParams

    def metrics(renderer, text, fontprop, ismath, dpi):  # type: ignore[no-untyped-def]
        if ismath is not False or type(renderer) is not RendererAgg:
            return original(renderer, text, fontprop, ismath, dpi)
        key = (
            text,
            fontprop.copy(),
            dpi,
            renderer.dpi,
            tuple(map(str, fontManager._find_fonts_by_props(fontprop))),
            rc["text.hinting"],
            rc["text.hinting_factor"],
            rc["text.kerning_factor"],
            rc["font.enable_last_resort"],
        )
        value = cache.get(key)
        if value is None:
            if len(cache) >= _TEXT_METRICS_CACHE_SIZE:
                cache.clear()
            value = cache[key] = original(renderer, text, fontprop, ismath, dpi)
        return value

    matplotlib.text._get_text_metrics_with_cache = metrics


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (`gc.freeze`).

    Why: a figure allocates thousands of container objects, so the cyclic collector runs many
    times per figure, and each older-generation pass walks the whole heap (matplotlib, numpy,
    sympy: 100K+ objects) that will never be garbage. Frozen, they are skipped and, in the
    zygote, not written to by the collector, so forked workers share the pages.
    """
    import gc

    gc.collect()
    gc.freeze()
