"""Device mesh from config: axes (data, fsdp, tensor), one size may be -1 to take what is left.

The same config runs on 1 CPU and on a pod: with all sizes -1/1 a single device gives a (1, 1, 1)
mesh, and the model code never changes because it only names logical axes (see sharding.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

MESH_AXES = ("data", "fsdp", "tensor")


def resolve_mesh_shape(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Fill a single -1 entry so the product equals `num_devices`; validate the rest."""
    unknown = [k for k in sizes if k not in MESH_AXES]
    if unknown:
        raise ValueError(f"unknown mesh axes {unknown}; expected a subset of {MESH_AXES}")
    shape = {axis: int(sizes.get(axis, 1)) for axis in MESH_AXES}
    fill = [axis for axis, size in shape.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {fill} in {dict(sizes)}")
    bad = [axis for axis, size in shape.items() if size == 0 or size < -1]
    if bad:
        raise ValueError(f"mesh axis sizes must be positive or -1, got {dict(sizes)}")
    known = math.prod(size for size in shape.values() if size != -1)
    if fill:
        if num_devices % known:
            raise ValueError(
                f"mesh {dict(sizes)}: {num_devices} devices are not divisible by the fixed axes' "
                f"product {known}"
            )
        shape[fill[0]] = num_devices // known
    if math.prod(shape.values()) != num_devices:
        raise ValueError(
            f"mesh {shape} has {math.prod(shape.values())} devices but {num_devices} are available"
        )
    return shape


def parse_mesh_arg(text: str) -> dict[str, int]:
    """Parse `data=2,fsdp=4,tensor=1` (the CLI's --mesh) into a dict."""
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"--mesh entry {part!r} is not axis=size (e.g. data=2,fsdp=4)")
        axis, value = part.split("=", 1)
        sizes[axis.strip()] = int(value)
    return sizes


def make_mesh(
    sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
    """A Mesh over `devices` (default: all global devices) with axes (data, fsdp, tensor).

    `jax.experimental.mesh_utils` orders devices so the fastest-varying axis (tensor) sits on
    neighbouring chips; on CPU/fake devices the order is simply the device list's.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(sizes, len(devices))
    dims = tuple(shape[a] for a in MESH_AXES)
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(dims, devices=devices, allow_split_physical_axes=True)
    except Exception:  # CPU and odd topologies: plain row-major order
        grid = np.asarray(devices, dtype=object).reshape(dims)
    return jax.sharding.Mesh(grid, MESH_AXES)


def mesh_from_config(config: Any) -> jax.sharding.Mesh:
    """The trainer's mesh from config.mesh: `num_devices` (0 = all, N = the first N; more than
    are available is an error, never a silent smaller run) and `shape` (ConfigError naming the
    key when it does not fit)."""
    from mathjax_vl.errors import ConfigError

    devices = jax.devices()
    want = int(config.mesh.get("num_devices", 0) or 0)
    if want < 0:
        raise ConfigError(f"mesh.num_devices={want}: expected 0 (all devices) or a positive count")
    if want > len(devices):
        raise ConfigError(
            f"mesh.num_devices={want} but only {len(devices)} {devices[0].platform} device(s) are "
            f"available; expected at most {len(devices)} (0 = all)"
        )
    if want:  # a prefix of the devices (tests, benchmarks)
        devices = devices[:want]
    try:
        return make_mesh(dict(config.mesh.shape), devices)
    except ValueError as err:
        raise ConfigError(f"mesh.shape={dict(config.mesh.shape)}: {err}") from None
