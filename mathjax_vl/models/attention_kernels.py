"""Segment-aware causal self-attention kernels, chosen by ``attention_impl``.

The XLA einsum path in ``layers.Attention`` (a dense [B, 1, T, S] boolean mask) stays the
reference. The kernels here take segment ids instead of a dense mask, which is what fused kernels
want and what packed rows carry:

  q [B, T, H, Dh], k/v [B, T, KV, Dh] (GQA: query head h uses KV head h // (H // KV), HF's
  repeat_kv grouping), segment_ids [B, T] int32 (0 = padding; a query attends to keys of its own
  segment at or before it) -> out [B, T, H, Dh].

Outputs at padding queries are unspecified (they attend among themselves instead of to nothing);
no real query ever sees a padding key, so real outputs, losses and gradients are unaffected.

Registry (``KERNELS``), keyed by ``attention_impl``:

- ``"splash"``: TPU splash attention (jax.experimental.pallas.ops.tpu.splash_attention), one
  MQA kernel per KV head and example (vmapped), causal mask x segment ids. Off TPU it runs in
  Pallas interpret mode (for tests; slow). Under a mesh it runs in ``shard_map``: batch and heads
  sharded as the logical rules say, the sequence unsharded (the kernel cannot split keys).
  T must be a multiple of the 128-token block (``SPLASH_BLOCK``).
- ``"cudnn"``: cuDNN flash attention through ``jax.nn.dot_product_attention(implementation=
  "cudnn")`` with ``is_causal`` and a same-segment mask; GPU only (bf16/fp16). XLA partitions
  the cuDNN call itself along batch and heads.
- ``"dot_product_attention"``: the same call with ``implementation=None`` (XLA's own lowering
  on CPU/TPU); this is also how the cuDNN path's plumbing and segment mask are tested on CPU.

Decoding with a KV cache keeps the dense-mask path (the kernels are for training-shaped
self-attention).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from mathjax_vl.models import logical_axes as ax

Array = jax.Array
Kernel = Callable[..., Array]

SPLASH_BLOCK = 128  # splash's lane width: every block size must be a multiple of it
_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


@jax.tree_util.register_pytree_node_class
class SegmentMask:
    """What the kernels get instead of a dense mask: segment_ids [B, T] int32, 0 = padding."""

    def __init__(self, segment_ids: Array):
        self.segment_ids = segment_ids

    def tree_flatten(self):
        return (self.segment_ids,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def segment_mask(
    batch_shape: tuple[int, int], attention_mask: Array | None, segment_ids: Array | None
) -> SegmentMask:
    """Segment ids for the kernels: the packed rows' ids, else 1 for tokens and 0 for padding."""
    if segment_ids is not None:
        seg = segment_ids.astype(jnp.int32)
        if attention_mask is not None:
            seg = jnp.where(attention_mask.astype(bool), seg, 0)
        return SegmentMask(seg)
    if attention_mask is not None:
        return SegmentMask(attention_mask.astype(jnp.int32))
    return SegmentMask(jnp.ones(batch_shape, jnp.int32))


def dense_mask(segment_ids: Array) -> Array:
    """[B, T] segment ids -> the reference's boolean mask [B, 1, T, T]: causal, same segment,
    real keys only (what ``layers.make_attention_mask`` builds for the XLA path)."""
    t = segment_ids.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    real = (segment_ids > 0)[:, None, :]
    return (causal[None] & same & real)[:, None]


# ------------------------------------------------------------------ jax.nn.dot_product_attention


def _dpa(q: Array, k: Array, v: Array, segment_ids: Array, *, scale: float, impl) -> Array:
    """Causal + same-segment mask through jax.nn.dot_product_attention (GQA native).

    Padding queries keep their own segment (0) so no row is fully masked (cuDNN would give NaN
    for an all-masked row); that mask differs from the reference only at padding queries."""
    same = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]  # [B, 1, T, T]
    return jax.nn.dot_product_attention(
        q, k, v, mask=same, scale=scale, is_causal=True, implementation=impl
    )


def cudnn_attention(q: Array, k: Array, v: Array, segment_ids: Array, *, scale: float) -> Array:
    """cuDNN flash attention (GPU; float16/bfloat16 inputs)."""
    return _dpa(q, k, v, segment_ids, scale=scale, impl="cudnn")


def dot_product_attention(
    q: Array, k: Array, v: Array, segment_ids: Array, *, scale: float
) -> Array:
    """The same call with the backend's default lowering (XLA on CPU / TPU)."""
    return _dpa(q, k, v, segment_ids, scale=scale, impl=None)


# ------------------------------------------------------------------------------------- splash


def _splash_kernel(groups: int, t: int, interpret: bool):
    """The MQA kernel for G query heads per KV head (built per trace: its mask tables become
    constants of the traced function, so it is never cached across traces)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as sm,
    )

    b = SPLASH_BLOCK
    sizes = sk.BlockSizes(
        block_q=b,
        block_kv=b,
        block_kv_compute=b,
        block_q_dkv=b,
        block_kv_dkv=b,
        block_kv_dkv_compute=b,
        block_q_dq=b,
        block_kv_dq=b,
    )
    mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(groups)])
    kernel = sk.make_splash_mqa_single_device(mask, block_sizes=sizes, interpret=interpret)
    return kernel, sk.SegmentIds


def _splash_local(q: Array, k: Array, v: Array, segment_ids: Array, scale: float) -> Array:
    """Unsharded splash: q [B, T, H, Dh], k/v [B, T, KV, Dh] -> [B, T, H, Dh]."""
    b, t, h, d = q.shape
    kv = k.shape[2]
    g = h // kv
    kernel, segment_cls = _splash_kernel(g, t, jax.default_backend() != "tpu")
    # [B, T, KV*G, Dh] -> [B, KV, G, T, Dh]; the kernel does not scale q itself
    qh = (q * jnp.asarray(scale, q.dtype)).reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4)
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, KV, T, Dh]

    def one(qg, kk, vv, seg):  # qg [G, T, Dh], kk/vv [T, Dh], seg [T]
        return kernel(qg, kk, vv, segment_ids=segment_cls(q=seg, kv=seg))

    per_head = jax.vmap(one, in_axes=(0, 0, 0, None))  # over KV heads
    out = jax.vmap(per_head, in_axes=(0, 0, 0, 0))(qh, kh, vh, segment_ids)  # [B, KV, G, T, Dh]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(q.dtype)


def splash_partition_specs(
    mesh_shape: dict[str, int], q_shape: tuple[int, ...], kv_heads: int
) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
    """(q/out, k/v, segment ids) specs for the splash shard_map under the active logical rules.

    Batch follows the BATCH rule and heads the HEADS rule, each mesh axis kept only where it
    divides the dimension (heads: both H and KV, so a query group stays with its KV head); the
    sequence is never split (the kernel needs every key of a row), so a rule sharding LENGTH is
    an error naming it."""
    b, _, h, _ = q_shape

    def axes(name: str, *dims: int) -> tuple[str, ...]:
        spec = nn.logical_to_mesh_axes((name,))[0]
        names = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
        kept, size = [], 1
        for a in names:
            n = mesh_shape.get(a, 1)
            if all(d % (size * n) == 0 for d in dims):
                kept.append(a)
                size *= n
        return tuple(kept)

    length = nn.logical_to_mesh_axes((ax.LENGTH,))[0]
    if length is not None and any(
        mesh_shape.get(a, 1) > 1 for a in ((length,) if isinstance(length, str) else length)
    ):
        raise ValueError(
            f"splash attention needs the sequence unsharded, but the rules map "
            f"{ax.LENGTH!r} to {length!r}"
        )
    bat = axes(ax.BATCH, b) or None
    heads = axes(ax.HEADS, h, kv_heads) or None
    return (
        PartitionSpec(bat, None, heads, None),
        PartitionSpec(bat, None, heads, None),
        PartitionSpec(bat, None),
    )


def splash_attention(q: Array, k: Array, v: Array, segment_ids: Array, *, scale: float) -> Array:
    """TPU splash attention (interpret mode off TPU), in shard_map under a multi-device mesh."""
    t = q.shape[1]
    if t % SPLASH_BLOCK:
        raise ValueError(
            f"splash attention needs the sequence length to be a multiple of {SPLASH_BLOCK}, "
            f"got {t}"
        )
    mesh = jax.sharding.get_abstract_mesh()
    local = functools.partial(_splash_local, scale=scale)
    if mesh is None or mesh.empty or mesh.size == 1:
        return local(q, k, v, segment_ids)
    qspec, kvspec, segspec = splash_partition_specs(dict(mesh.shape), q.shape, k.shape[2])
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(qspec, kvspec, kvspec, segspec),
        out_specs=qspec,
        check_vma=False,
    )(q, k, v, segment_ids)


KERNELS: dict[str, Kernel] = {
    "splash": splash_attention,
    "cudnn": cudnn_attention,
    "dot_product_attention": dot_product_attention,
}


def get(name: str) -> Kernel:
    """The kernel registered under ``attention_impl`` = name."""
    if name not in KERNELS:
        raise ValueError(f"attention_impl {name!r} has no kernel; kernels: {sorted(KERNELS)}")
    return KERNELS[name]


def reference_attention(q: Array, k: Array, v: Array, segment_ids: Array, *, scale: float) -> Array:
    """Dense float32-softmax attention with the reference mask (the XLA path's math), for tests
    and benchmarks: q [B, T, H, Dh], k/v [B, T, KV, Dh]."""
    b, t, h, d = q.shape
    kv = k.shape[2]
    qh = q.reshape(b, t, kv, h // kv, d)
    scores = jnp.einsum("btkgd,bskd->bkgts", qh, k).astype(jnp.float32) * scale
    mask = dense_mask(segment_ids)[:, :, None]  # [B, 1, 1, T, T]
    probs = jax.nn.softmax(jnp.where(mask, scores, _MASK_VALUE), axis=-1).astype(q.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
    return out.reshape(b, t, h, d)
