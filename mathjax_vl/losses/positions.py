"""Which weak-side logits are compared with which strong-side logits (Math-PUMA stage 2).

The two sequences of a pair differ in their prompts (text-rich vs vision-rich, with different
numbers of image features) but end with the same response. The i-th response token of the weak
sequence is aligned with the i-th response token of the strong one, at positions taken AFTER the
image placeholder is expanded into its features. The logits that predict response token r sit at
position r - 1 (next-token prediction). A pair whose responses do not tokenize identically is an
error naming the pair: the released code instead read positions before expansion and silently
compared tokens 727 positions apart.

Host side (NumPy, data pipeline): align_pair -> AlignedPair, stack_aligned -> padded batch.
In graph (jit): response_positions / align_in_graph for padded label batches, and gather_aligned
to pull the [N, D] hidden-state rows that the fused objective consumes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mathjax_vl.losses.constants import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class AlignedPair:
    """Aligned prediction positions of one pair; all arrays [n] int32."""

    weak_positions: np.ndarray  # position in the weak sequence whose logits predict targets[i]
    strong_positions: np.ndarray
    targets: np.ndarray  # the i-th response token (identical on both sides)


def expanded_positions(ids: np.ndarray, image_token_id: int, num_image_tokens: int) -> np.ndarray:
    """Position of each token of an UNexpanded sequence once every image placeholder becomes
    num_image_tokens features (a placeholder maps to the first of its features)."""
    ids = np.asarray(ids)
    is_img = (ids == image_token_id).astype(np.int64)
    before = np.cumsum(is_img) - is_img  # placeholders strictly before each position
    return (np.arange(ids.shape[0]) + before * (num_image_tokens - 1)).astype(np.int64)


def _response(ids, mask, side: str, pair: str, image_token_id, num_image_tokens):
    ids = np.asarray(ids).reshape(-1)
    mask = np.asarray(mask).reshape(-1).astype(bool)
    if ids.shape != mask.shape:
        raise ValueError(
            f"pair {pair}: {side} ids {ids.shape} and response mask {mask.shape} differ"
        )
    pos = np.nonzero(mask)[0]
    if pos.size and pos[0] == 0:
        raise ValueError(f"pair {pair}: {side} response starts at position 0, nothing predicts it")
    if image_token_id is not None:
        if np.any(ids[pos] == image_token_id):
            raise ValueError(f"pair {pair}: {side} response contains the image token")
        full = expanded_positions(ids, image_token_id, num_image_tokens)
        return ids[pos], full[pos]
    return ids[pos], pos


def align_pair(
    weak_ids,
    weak_response_mask,
    strong_ids,
    strong_response_mask,
    pair: str | int = "?",
    image_token_id: int | None = None,
    num_image_tokens: int = 1,
) -> AlignedPair:
    """Align the i-th response token of the weak sequence with the i-th of the strong one.

    ids / masks: [L] per side, the mask marking response (label) tokens. If the ids still hold
    one placeholder per image, pass image_token_id and num_image_tokens so positions refer to the
    expanded sequence the model actually runs on. Raises ValueError naming `pair` when the two
    responses differ in length or in any token.
    """
    w_tok, w_pos = _response(
        weak_ids, weak_response_mask, "weak", pair, image_token_id, num_image_tokens
    )
    s_tok, s_pos = _response(
        strong_ids, strong_response_mask, "strong", pair, image_token_id, num_image_tokens
    )
    if w_tok.size == 0:
        raise ValueError(f"pair {pair}: the weak side has no response tokens")
    if w_tok.size != s_tok.size:
        raise ValueError(
            f"pair {pair}: responses tokenize to {w_tok.size} (weak) vs {s_tok.size} (strong) "
            "tokens; both sides must carry the same solution text"
        )
    diff = np.nonzero(w_tok != s_tok)[0]
    if diff.size:
        i = int(diff[0])
        raise ValueError(
            f"pair {pair}: response token {i} differs: weak id {int(w_tok[i])} vs strong id "
            f"{int(s_tok[i])} ({diff.size} differing tokens)"
        )
    as32 = lambda x: np.asarray(x, np.int32)
    return AlignedPair(as32(w_pos - 1), as32(s_pos - 1), as32(w_tok))


def stack_aligned(pairs: list[AlignedPair], max_tokens: int) -> dict[str, np.ndarray]:
    """Pad a list of pairs to [B, max_tokens] arrays: weak_positions, strong_positions, targets,
    mask. A pair longer than max_tokens is an error naming its index (no silent truncation)."""
    b = len(pairs)
    out = {
        k: np.zeros((b, max_tokens), np.int32)
        for k in ("weak_positions", "strong_positions", "targets")
    }
    out["mask"] = np.zeros((b, max_tokens), bool)
    for i, p in enumerate(pairs):
        n = p.targets.size
        if n > max_tokens:
            raise ValueError(f"pair index {i}: {n} aligned tokens exceed max_tokens={max_tokens}")
        out["weak_positions"][i, :n] = p.weak_positions
        out["strong_positions"][i, :n] = p.strong_positions
        out["targets"][i, :n] = p.targets
        out["mask"][i, :n] = True
    return out


# ----------------------------------------------------------------------------- in graph


def response_positions(labels: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    """[B, L] labels (IGNORE_INDEX outside the response) -> (positions [B, num] of the first
    `num` response tokens in order, zero-filled; count [B] of response tokens)."""
    is_resp = labels != IGNORE_INDEX
    pos = jax.vmap(lambda r: jnp.nonzero(r, size=num, fill_value=0)[0])(is_resp)
    return pos.astype(jnp.int32), jnp.sum(is_resp, axis=-1, dtype=jnp.int32)


def align_in_graph(weak_labels: jax.Array, strong_labels: jax.Array, num: int) -> dict:
    """Jittable alignment from padded, already-expanded label batches [B, Lw] and [B, Ls].

    Returns weak_positions / strong_positions (predicting positions, [B, num]), targets, mask
    ([B, num]) and ok ([B] bool). A row whose responses differ (length, tokens, more than `num`
    tokens, or a response at position 0) gets ok = False and an all-False mask; the caller
    checks `ok` (jit cannot raise), the host-side align_pair raises instead.
    """
    w_pos, w_n = response_positions(weak_labels, num)
    s_pos, s_n = response_positions(strong_labels, num)
    w_tok = jnp.take_along_axis(weak_labels, w_pos, axis=1)
    s_tok = jnp.take_along_axis(strong_labels, s_pos, axis=1)
    valid = jnp.arange(num)[None, :] < w_n[:, None]
    ok = (w_n == s_n) & (w_n <= num) & (w_n > 0)
    ok &= jnp.all(jnp.where(valid, w_tok == s_tok, True), axis=1)
    ok &= jnp.all(jnp.where(valid, (w_pos > 0) & (s_pos > 0), True), axis=1)
    mask = valid & ok[:, None]
    return {
        "weak_positions": jnp.maximum(w_pos - 1, 0),
        "strong_positions": jnp.maximum(s_pos - 1, 0),
        "targets": jnp.where(mask, w_tok, 0),
        "mask": mask,
        "ok": ok,
    }


def gather_aligned(
    weak_hidden: jax.Array,
    strong_hidden: jax.Array,
    weak_positions: jax.Array,
    strong_positions: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """[B, Lw, D], [B, Ls, D] hidden states and [B, N] positions -> two [B*N, D] row sets."""
    d = weak_hidden.shape[-1]
    if strong_hidden.shape[-1] != d or weak_hidden.shape[0] != strong_hidden.shape[0]:
        raise ValueError(f"hidden shapes {weak_hidden.shape} / {strong_hidden.shape} disagree")
    if weak_positions.shape != strong_positions.shape or weak_positions.ndim != 2:
        raise ValueError(
            f"positions must both be [B, N], got {weak_positions.shape} / {strong_positions.shape}"
        )
    hw = jnp.take_along_axis(weak_hidden, weak_positions[..., None], axis=1)  # [B, N, D]
    hs = jnp.take_along_axis(strong_hidden, strong_positions[..., None], axis=1)
    return hw.reshape(-1, d), hs.reshape(-1, d)
