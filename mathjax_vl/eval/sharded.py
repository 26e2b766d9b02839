"""Generation on a device mesh: parameters placed with the training logical-axis rules, and the
decoding `Layout` that shards prompts, logits and the KV cache the same way.

    gm = GenerationMesh.create("fsdp=4,tensor=2")           # this process's devices
    params = gm.place(cfg, params, dtype="bfloat16")         # numpy / lazy / jax leaves
    out = decoding.generate_vlm(cfg, params, ids, mask, pixels, sampling, layout=gm.layout)

The mesh axes are training's (data, fsdp, tensor) and the rules are training's
(mathjax_vl.train.sharding.DEFAULT_RULES unless given): fsdp splits every matrix's model width,
tensor splits heads / MLP width / vocabulary, the batch goes over data x fsdp. An axis that does
not divide a dimension is dropped for that dimension (replicated), so any mesh runs any model.

A mesh is built from THIS process's devices only (`jax.local_devices()`): several processes
(mathjax_vl.eval.shards) each hold a full model replica on their own devices and take a share
of the items, which needs no cross-host communication in the decode loop.

Placement reads only what a device holds: a lazy leaf (an HF safetensors tensor or a mathjax-vl
checkpoint entry, mathjax_vl.hf.streaming) is read region by region into its shards
(train.hf_init.place), so a 7B model never exists whole on one device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from mathjax_vl.decoding import Layout
from mathjax_vl.train import sharding as shard_lib
from mathjax_vl.train.mesh import make_mesh, parse_mesh_arg


def _boxed_abstract(cfg: Any) -> Any:
    """eval_shape'd init of the model of `cfg`, still logically boxed (the names of each dim)."""
    from mathjax_vl.models import registry

    module = registry.build(cfg)
    args, kwargs = registry.init_inputs(cfg)
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))["params"]


def with_compute_dtype(cfg: Any, dtype: str) -> Any:
    """`cfg` (a decoder, tower, projector or composite config) with every part's compute and
    parameter dtype set to `dtype` (bf16 generation: bf16 weights, activations and KV cache)."""
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = with_compute_dtype(value, dtype)
        elif f.name in ("dtype", "param_dtype"):
            changes[f.name] = dtype
    return dataclasses.replace(cfg, **changes)


@dataclasses.dataclass(eq=False)
class GenerationMesh:
    """A mesh + logical-axis rules for generation and the decoding Layout built from them."""

    mesh: jax.sharding.Mesh
    rules: shard_lib.Rules = shard_lib.DEFAULT_RULES

    def __post_init__(self) -> None:
        mesh_shape = dict(self.mesh.shape)
        rules, mesh = self.rules, self.mesh

        def sharding(names, shape):
            spec = shard_lib.logical_to_spec(tuple(names), tuple(shape), mesh_shape, rules)
            return jax.sharding.NamedSharding(mesh, spec)

        from mathjax_vl.train.step import mesh_context

        self.layout = Layout(
            mesh=mesh, sharding=sharding, context=lambda: mesh_context(mesh, rules)
        )

    @classmethod
    def create(
        cls,
        sizes: str | Mapping[str, int] | None,
        devices: list[Any] | None = None,
        rules: shard_lib.Rules | None = None,
    ) -> GenerationMesh:
        """From `--mesh` text ("fsdp=4,tensor=2"; one size may be -1: all devices) or a dict;
        None = one device. devices default to this process's local devices; explicit sizes use
        the first that many."""
        devices = list(jax.local_devices() if devices is None else devices)
        if sizes is None:
            sizes, devices = {}, devices[:1]
        elif isinstance(sizes, str):
            sizes = parse_mesh_arg(sizes)
        wanted = int(np.prod([int(v) for v in dict(sizes).values()] or [1]))
        if wanted > 0 and -1 not in dict(sizes).values() and wanted < len(devices):
            devices = devices[:wanted]  # explicit sizes: the first that many devices
        return cls(make_mesh(dict(sizes), devices), rules or shard_lib.DEFAULT_RULES)

    @property
    def size(self) -> int:
        return int(self.mesh.size)

    @property
    def batch_multiple(self) -> int:
        """Batch sizes that are a multiple of this are split evenly over the devices."""
        return shard_lib.batch_shard_count(self.mesh, self.rules)

    def shardings(self, cfg: Any, dtype: str | None = None) -> dict[str, Any]:
        """Flat {path: ShapeDtypeStruct with its NamedSharding} of `cfg`'s parameters."""
        boxed = _boxed_abstract(cfg)
        abstract, shardings = shard_lib.tree_shardings(boxed, self.mesh, self.rules)
        flat_a = traverse_util.flatten_dict(abstract, sep="/")
        flat_s = traverse_util.flatten_dict(shardings, sep="/")
        return {
            k: jax.ShapeDtypeStruct(a.shape, np.dtype(dtype or a.dtype), sharding=flat_s[k])
            for k, a in flat_a.items()
        }

    def place(self, cfg: Any, params: Any, dtype: str | None = None) -> Any:
        """`params` (nested dict of numpy, lazy or jax leaves) on the mesh, cast to `dtype`.

        Every leaf must be one the model of `cfg` has, with its shape; the message names the
        first that is missing or extra."""
        from mathjax_vl.train.hf_init import place

        targets = self.shardings(cfg, dtype)
        flat = traverse_util.flatten_dict(dict(params), sep="/")
        missing, extra = sorted(set(targets) - set(flat)), sorted(set(flat) - set(targets))
        if missing or extra:
            raise ValueError(
                f"parameters do not match the model config: missing {missing[:3]}, unexpected "
                f"{extra[:3]}"
            )
        placed = {}
        for key, like in targets.items():
            shape = tuple(getattr(flat[key], "shape", None) or np.shape(flat[key]))
            if shape != tuple(like.shape):
                raise ValueError(f"parameter {key}: expected shape {like.shape}, found {shape}")
            value = flat[key]
            if isinstance(value, jax.Array):  # already on devices: reshard (and cast)
                placed[key] = jax.device_put(value.astype(like.dtype), like.sharding)
            else:
                placed[key] = place(value, like, key)
        return traverse_util.unflatten_dict(placed, sep="/")

    def bytes_per_device(self, params: Any) -> int:
        """Parameter bytes on the most loaded device (from the shardings)."""
        total = 0
        for leaf in jax.tree.leaves(params):
            shard = leaf.sharding.shard_shape(leaf.shape)
            total += int(np.prod(shard)) * leaf.dtype.itemsize
        return total
