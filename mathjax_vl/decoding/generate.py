"""Batched generation with a KV cache: one prefill, then a jitted while-loop of one-token steps.

Prompts of different lengths are aligned to the right (left padding, as HF does for decoder-only
generation), so every row writes its next key/value into the same cache slot and the cache needs
a single write index; right-padded prompts are shifted to left padding on the host first. RoPE
positions come from the mask (cumsum - 1), so a row's tokens sit at 0..len-1 whatever its padding.

The prefill takes token ids or embeddings (the VLM scatters image features into the embeddings
first); the decode loop only ever feeds token ids. Compilation: `prefill` once per prompt shape,
`decode_loop` once per (batch, cache length, sampling config) — its step is traced once inside a
lax.while_loop, never per token.

    from mathjax_vl.decoding import SamplingConfig, generate
    out = generate(registry.build(cfg), params, input_ids, attention_mask,   # any decoder kind
                   sampling=SamplingConfig(max_new_tokens=32, stop_tokens=(eos,), pad_token=pad))
    out.tokens   # [B, max_new_tokens] generated ids, pad_token after a row's stop token
    out.lengths  # [B] generated tokens per row (stop token included)
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mathjax_vl.decoding.sampling import SamplingConfig, sample_token
from mathjax_vl.models.decoder import Decoder, KVCache, init_cache

Array = jax.Array


@flax.struct.dataclass
class GenerateOutput:
    tokens: Array  # [B, N] int32
    lengths: Array  # [B] int32


def to_left_padding(
    attention_mask: Any, *arrays: Any
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Shifts right-padded rows to left padding; arrays are [B, T, ...] aligned with the mask.

    Each row must be one contiguous run of tokens touching the left or the right edge; anything
    else (holes, empty rows) raises, naming the row.
    """
    mask = np.asarray(attention_mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"attention_mask must be [B, T], got shape {mask.shape}")
    b, t = mask.shape
    lengths = mask.sum(axis=1)
    idx = np.arange(t)
    shift = np.zeros(b, np.int64)
    for row in range(b):
        n = int(lengths[row])
        if n == 0:
            raise ValueError(f"attention_mask row {row} has no tokens")
        if np.array_equal(mask[row], idx >= t - n):
            continue
        if np.array_equal(mask[row], idx < n):
            shift[row] = t - n
            continue
        raise ValueError(
            f"attention_mask row {row} is neither left- nor right-padded "
            f"(expected one contiguous run of {n} ones at an edge): {mask[row].astype(int)}"
        )
    gather = (idx[None, :] - shift[:, None]) % t  # [B, T] source column of each output column
    out_mask = np.take_along_axis(mask, gather, axis=1)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        a = np.asarray(a)
        g = gather.reshape(gather.shape + (1,) * (a.ndim - 2))
        out.append(np.take_along_axis(a, g, axis=1))
    return out_mask.astype(np.int32), out


@functools.partial(jax.jit, static_argnames=("model",))
def prefill(
    model: Decoder,
    params: Any,
    input_ids: Array | None,
    inputs_embeds: Array | None,
    attention_mask: Array,
    cache: KVCache,
) -> tuple[Array, KVCache, Array]:
    """Runs the left-padded prompt through the model, filling the cache.

    Returns (logits of the last prompt token [B, V] float32, cache, next position [B]).
    Only the last position's logits are computed, not [B, T, V].
    """
    positions = jnp.maximum(jnp.cumsum(attention_mask, axis=-1) - 1, 0).astype(jnp.int32)
    out = model.apply(
        {"params": params},
        input_ids,
        positions,
        attention_mask,
        inputs_embeds=inputs_embeds,
        cache=cache,
        return_logits=False,
    )
    last = model.apply({"params": params}, out.hidden_states[:, -1:], method=Decoder.logits)
    next_pos = jnp.sum(attention_mask, axis=-1).astype(jnp.int32)
    return last[:, 0].astype(jnp.float32), out.cache, next_pos


def decode_step(
    model: Decoder, params: Any, token: Array, position: Array, cache: KVCache
) -> tuple[Array, KVCache]:
    """One token per row: token [B], position [B] -> (logits [B, V] float32, cache)."""
    b = token.shape[0]
    out = model.apply(
        {"params": params},
        token[:, None],
        position[:, None],
        jnp.ones((b, 1), jnp.int32),
        cache=cache,
    )
    return out.logits[:, 0].astype(jnp.float32), out.cache


@functools.partial(jax.jit, static_argnames=("model", "sampling"))
def decode_loop(
    model: Decoder,
    params: Any,
    sampling: SamplingConfig,
    logits: Array,
    cache: KVCache,
    next_pos: Array,
    rng: Array,
) -> GenerateOutput:
    """Samples up to sampling.max_new_tokens tokens; stops early when every row has stopped."""
    b = logits.shape[0]
    n = sampling.max_new_tokens
    stop = jnp.asarray(sampling.stop_tokens or (-1,), jnp.int32)

    def cond(state):
        i, _, done, *_ = state
        return (i < n) & ~jnp.all(done)

    def body(state):
        i, tokens, done, lengths, logits, pos, cache, rng = state
        rng, sub = jax.random.split(rng)
        tok = sample_token(logits, sub, sampling.temperature, sampling.top_p)
        tok = jnp.where(done, sampling.pad_token, tok)
        tokens = jax.lax.dynamic_update_slice(tokens, tok[:, None], (0, i))
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | jnp.isin(tok, stop)
        # No model step after the last token or once every row has stopped.
        logits, cache = jax.lax.cond(
            (i + 1 < n) & ~jnp.all(done),
            lambda: decode_step(model, params, tok, pos, cache),
            lambda: (logits, cache),
        )
        return i + 1, tokens, done, lengths, logits, pos + 1, cache, rng

    state = (
        jnp.zeros((), jnp.int32),
        jnp.full((b, n), sampling.pad_token, jnp.int32),
        jnp.zeros((b,), bool),
        jnp.zeros((b,), jnp.int32),
        logits,
        next_pos,
        cache,
        rng,
    )
    _, tokens, _, lengths, *_ = jax.lax.while_loop(cond, body, state)
    return GenerateOutput(tokens=tokens, lengths=lengths)


def generate(
    model: Decoder,
    params: Any,
    input_ids: Any = None,
    attention_mask: Any = None,
    *,
    inputs_embeds: Any = None,
    sampling: SamplingConfig | None = None,
    rng: Array | None = None,
) -> GenerateOutput:
    """Generates continuations of a batch of prompts (left- or right-padded, any mix).

    input_ids [B, T] or inputs_embeds [B, T, D]; attention_mask [B, T] (default: all ones).
    params: the decoder's params (boxed or not, with or without a "params" level).
    sampling: defaults to greedy, 32 new tokens, no stop tokens.
    rng: needed only when sampling (temperature > 0).
    """
    sampling = sampling or SamplingConfig()
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    params = nn.meta.unbox(params)
    params = params.get("params", params)
    first = input_ids if input_ids is not None else inputs_embeds
    b, t = np.shape(first)[:2]
    if attention_mask is None:
        attention_mask = np.ones((b, t), np.int32)
    if np.shape(attention_mask) != (b, t):
        name = "input_ids" if input_ids is not None else "inputs_embeds"
        raise ValueError(
            f"attention_mask shape {np.shape(attention_mask)} does not match {name} shape "
            f"{np.shape(first)} (expected ({b}, {t}))"
        )
    mask, (ids, embeds) = to_left_padding(attention_mask, input_ids, inputs_embeds)
    if sampling.temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng")
    rng = jax.random.PRNGKey(0) if rng is None else rng
    cache = init_cache(model.config, b, t + sampling.max_new_tokens)
    logits, cache, next_pos = prefill(
        model,
        params,
        None if ids is None else jnp.asarray(ids, jnp.int32),
        None if embeds is None else jnp.asarray(embeds),
        jnp.asarray(mask),
        cache,
    )
    return decode_loop(model, params, sampling, logits, cache, next_pos, rng)


def generate_vlm(
    cfg: Any,
    params: Any,
    input_ids: Any,
    attention_mask: Any = None,
    pixel_values: Any = None,
    sampling: SamplingConfig | None = None,
    rng: Array | None = None,
    image_inputs: dict[str, Any] | None = None,
) -> GenerateOutput:
    """Generation with images: the VLM builds the prompt embeddings (image features scattered
    in), then the decoder (any registered kind) is prefilled from them and decodes token ids.

    cfg: any registered composite config (its module has `embed`; the text part is cfg.text);
    input_ids [B, T] (left- or right-padded), pixel_values [N, H, W, C] or None; image_inputs:
    the model's other per-image arrays (DeepSeek-VL's high_res_pixel_values), by keyword.
    """
    from mathjax_vl.models import registry
    from mathjax_vl.models.vlm import check_image_tokens

    params = nn.meta.unbox(params)
    params = params.get("params", params)
    ids = jnp.asarray(input_ids, jnp.int32)
    if pixel_values is not None:
        check_image_tokens(input_ids, np.shape(pixel_values)[0], cfg)
        pixel_values = jnp.asarray(pixel_values)
    extra = {k: jnp.asarray(v) for k, v in (image_inputs or {}).items()}
    embeds = _embed_jit(cfg, params, ids, pixel_values, extra)
    return generate(
        registry.build(cfg.text),
        params["language_model"],
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        sampling=sampling,
        rng=rng,
    )


@functools.partial(jax.jit, static_argnames=("cfg",))
def _embed_jit(
    cfg: Any, params: Any, input_ids: Array, pixel_values: Array | None, extra: dict
) -> Array:
    from mathjax_vl.models import registry

    module = registry.build(cfg)
    return module.apply({"params": params}, input_ids, pixel_values, **extra, method="embed")
