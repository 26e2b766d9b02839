"""Streaming engine for LM-head losses that never holds a [tokens, vocab] array.

Shared by the fused next-token cross-entropy (stages 1 and 3, image-to-code) and the fused
Math-PUMA alignment objective (stage 2). Tokens are processed in chunks of `token_block`; inside a
chunk the vocabulary is processed in blocks of `vocab_block` with online (running-max) accumulators:

  pass 0 (z-scored variant only): per-token mean / variance of the logits (Chan's merge).
  pass 1: log-sum-exp of every softmax involved plus the scalar sums that the KL values and the
          z-score backward need (all rescaled online like flash attention).
  pass 2 (only when differentiating): the gradient of the logits block, immediately contracted into
          dH (token chunk) and dW (vocab block); nothing of size [T, V] survives.

When one vocab block covers the whole vocabulary (`vocab_block=None`, the default), each token chunk
computes its logits once and runs the three passes on them (Liger-Kernel style): 8*T*D*V FLOPs per
step with the strong side frozen, i.e. no recomputation at all. With several vocab blocks the logits
are recomputed per pass (memory O(token_block * vocab_block), 12*T*D*V FLOPs).

Gradients are computed in the forward pass of a `jax.custom_vjp`; the backward only scales them by
the incoming cotangent. All softmax statistics and the dW accumulator are float32; matmul operands
may be bfloat16 (`matmul_dtype`), with float32 accumulation, identically in every pass.

Per-token weights (`a_ce`, `a_kl`, shape [T]) carry the mask and the normalisation, so the engine
computes  loss = w_ce*sum(a_ce*CE) + w_z*sum(a_ce*LSE^2) + w_fkl*sum(a_kl*FKL) + w_rkl*sum(a_kl*RKL)
and the API modules decide what a_* and w_* are.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

ZSCORE_EPS = 1e-6  # the released Math-PUMA code adds this to the std before dividing
LAYOUTS = ("vd", "dv")  # "vd": [V, D] (tied embedding table); "dv": [D, V] (Dense kernel)


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """Static description of one fused loss; hashable so it can key the custom_vjp."""

    has_kl: bool  # a strong side exists (alignment objective) or not (plain CE)
    strong_grad: bool  # differentiate through the strong side's hidden states
    zscore: bool  # z-score each logit vector before the temperature softmax (released code)
    tau: float
    w_ce: float
    w_z: float
    w_fkl: float
    w_rkl: float
    token_block: int
    vocab_block: int | None
    matmul_dtype: str | None  # e.g. "bfloat16"; None = the inputs' dtype
    w_layout: str  # "vd" or "dv"
    skip_inactive: bool = True  # run only the token chunks that hold rows with nonzero weight
    vary_axes: tuple[str, ...] = ()  # inside shard_map: mesh axes the token rows vary over

    def __post_init__(self):
        if self.w_layout not in LAYOUTS:
            raise ValueError(f"w_layout must be one of {LAYOUTS}, got {self.w_layout!r}")
        if self.token_block < 1:
            raise ValueError(f"token_block must be >= 1, got {self.token_block}")
        if self.vocab_block is not None and self.vocab_block < 1:
            raise ValueError(f"vocab_block must be >= 1 or None, got {self.vocab_block}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    @property
    def ce_separate(self) -> bool:
        """CE needs its own (tau = 1, raw-logit) log-sum-exp unless it equals the KL softmax."""
        return (not self.has_kl) or self.zscore or self.tau != 1.0


# ----------------------------------------------------------------------------- block helpers


def _vocab_blocks(vocab: int, vocab_block: int | None) -> tuple[int, int, int]:
    """(block size, number of full blocks, static tail size) without padding W."""
    vb = vocab if vocab_block is None else min(vocab_block, vocab)
    return vb, vocab // vb, vocab % vb


def _loop_vocab(fn: Callable, carry: Any, vocab: int, vocab_block: int | None) -> Any:
    """carry = fn(v0, size, carry) over vocab blocks; the last partial block is a static tail."""
    vb, n_full, tail = _vocab_blocks(vocab, vocab_block)
    if n_full == 1:
        carry = fn(0, vb, carry)
    elif n_full > 1:
        carry = jax.lax.fori_loop(0, n_full, lambda i, c: fn(i * vb, vb, c), carry)
    if tail:
        carry = fn(n_full * vb, tail, carry)
    return carry


def _w_block(w: jax.Array, v0, size: int, layout: str) -> jax.Array:
    """Rows v0:v0+size of the LM head as [size, D], whatever the stored layout."""
    if layout == "vd":
        return jax.lax.dynamic_slice_in_dim(w, v0, size, axis=0)
    return jax.lax.dynamic_slice_in_dim(w, v0, size, axis=1).T


def _dw_add(dw: jax.Array, v0, blk: jax.Array, layout: str) -> jax.Array:
    """dW[v0:v0+size] += blk ([size, D]) in the LM head's layout."""
    size = blk.shape[0]
    if layout == "vd":
        old = jax.lax.dynamic_slice_in_dim(dw, v0, size, axis=0)
        return jax.lax.dynamic_update_slice_in_dim(dw, old + blk, v0, axis=0)
    old = jax.lax.dynamic_slice_in_dim(dw, v0, size, axis=1)
    return jax.lax.dynamic_update_slice_in_dim(dw, old + blk.T, v0, axis=1)


def _label_rows(w: jax.Array, labels: jax.Array, layout: str) -> jax.Array:
    """W[labels] as [Tc, D]: the target rows, so the target logit and the one-hot part of the
    CE gradient never need a [Tc, V] one-hot."""
    return jnp.take(w, labels, axis=0) if layout == "vd" else jnp.take(w, labels, axis=1).T


def _logits(h: jax.Array, wb: jax.Array) -> jax.Array:
    """[Tc, D] x [Vb, D] -> [Tc, Vb] float32 (operands already in the matmul dtype)."""
    return jax.lax.dot_general(h, wb, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def _vary(spec: EngineSpec, tree):
    """Mark fresh loop carries as device-varying inside shard_map (they get varying updates)."""
    if not spec.vary_axes or tree is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.pcast(x, spec.vary_axes, to="varying"), tree)


# ----------------------------------------------------------------------------- statistics


def _zero(tc: int) -> jax.Array:
    return jnp.zeros((tc,), jnp.float32)


def _neg_inf(tc: int) -> jax.Array:
    return jnp.full((tc,), -jnp.inf, jnp.float32)


def _moments_update(st: dict, z: jax.Array) -> dict:
    """Chan's parallel merge of (count, mean, M2) with one block's logits [Tc, Vb]."""
    nb = float(z.shape[1])
    mb = jnp.mean(z, axis=1)
    m2b = jnp.sum(jnp.square(z - mb[:, None]), axis=1)
    n = st["n"]
    n_new = n + nb
    delta = mb - st["mean"]
    return {
        "n": n_new,
        "mean": st["mean"] + delta * (nb / n_new),
        "m2": st["m2"] + m2b + jnp.square(delta) * (n * nb / n_new),
    }


def _rescale(m_old: jax.Array, blk_max: jax.Array) -> tuple[jax.Array, jax.Array]:
    """New running max and the factor exp(m_old - m_new) for the old accumulators."""
    m_new = jnp.maximum(m_old, blk_max)
    return m_new, jnp.exp(m_old - m_new)


class _Engine:
    """Runs the passes for one token chunk; all per-token state is float32 [Tc]."""

    def __init__(self, spec: EngineSpec, vocab: int):
        self.spec = spec
        self.vocab = vocab

    # -- transforms ---------------------------------------------------------------
    def zstats(self, moments: dict) -> dict:
        sigma = jnp.sqrt(moments["m2"] / (self.vocab - 1))
        s = sigma + ZSCORE_EPS
        # s / sigma appears in the z-score backward; define it as 0 for constant rows (sigma = 0).
        ratio = jnp.where(sigma > 0, s / jnp.where(sigma > 0, sigma, 1.0), 0.0)
        return {"mu": moments["mean"], "s": s, "ratio": ratio}

    def scaled(self, z: jax.Array, zs: dict | None) -> tuple[jax.Array, jax.Array | None]:
        """(u, y): u = logits fed to the temperature softmax, y = z-scored logits (or None)."""
        if zs is None:
            return z / self.spec.tau, None
        y = (z - zs["mu"][:, None]) / zs["s"][:, None]
        return y / self.spec.tau, y

    # -- pass 1 -------------------------------------------------------------------
    def init_stats(self, tc: int) -> dict:
        sp = self.spec
        st = {}
        if sp.ce_separate:
            st.update(mr=_neg_inf(tc), sr=_zero(tc))
        if sp.has_kl:
            st.update(mw=_neg_inf(tc), sw=_zero(tc), ms=_neg_inf(tc), ss=_zero(tc))
            st.update(fa=_zero(tc), ra=_zero(tc))
            if sp.zscore:
                st.update(aw=_zero(tc), bw=_zero(tc), cw=_zero(tc))
                if sp.strong_grad:
                    st.update(as_=_zero(tc), bs=_zero(tc), cs=_zero(tc))
        return st

    def update_stats(self, st, zw, zs_, zst_w, zst_s) -> dict:
        sp = self.spec
        st = dict(st)
        if sp.ce_separate:
            m, sc = _rescale(st["mr"], jnp.max(zw, axis=1))
            st["mr"], st["sr"] = m, st["sr"] * sc + jnp.sum(jnp.exp(zw - m[:, None]), axis=1)
        if not sp.has_kl:
            return st
        uw, yw = self.scaled(zw, zst_w)
        us, ys = self.scaled(zs_, zst_s)
        mw, scw = _rescale(st["mw"], jnp.max(uw, axis=1))
        ms, scs = _rescale(st["ms"], jnp.max(us, axis=1))
        ew = jnp.exp(uw - mw[:, None])  # [Tc, Vb]
        es = jnp.exp(us - ms[:, None])
        diff = uw - us
        st["mw"], st["ms"] = mw, ms
        st["sw"] = st["sw"] * scw + jnp.sum(ew, axis=1)
        st["ss"] = st["ss"] * scs + jnp.sum(es, axis=1)
        st["fa"] = st["fa"] * scw + jnp.sum(ew * diff, axis=1)
        st["ra"] = st["ra"] * scs - jnp.sum(es * diff, axis=1)
        if sp.zscore:
            st["aw"] = st["aw"] * scw + jnp.sum(ew * diff * yw, axis=1)
            st["bw"] = st["bw"] * scw + jnp.sum(ew * yw, axis=1)
            st["cw"] = st["cw"] * scs + jnp.sum(es * yw, axis=1)
            if sp.strong_grad:
                st["as_"] = st["as_"] * scs - jnp.sum(es * diff * ys, axis=1)
                st["bs"] = st["bs"] * scs + jnp.sum(es * ys, axis=1)
                st["cs"] = st["cs"] * scw + jnp.sum(ew * ys, axis=1)
        return st

    def finalize(self, st, zy, found, a_ce, a_kl, zst_w, zst_s) -> dict:
        """Per-token loss values and the scalars the gradient pass needs. zy [Tc]: the target
        logit; found [Tc]: whether the label is inside [0, V)."""
        sp = self.spec
        out = {}
        if sp.has_kl:
            lse_w = st["mw"] + jnp.log(st["sw"])
            lse_s = st["ms"] + jnp.log(st["ss"])
            dl = lse_w - lse_s
            fkl = st["fa"] / st["sw"] - dl
            rkl = st["ra"] / st["ss"] + dl
            out.update(lse_w=lse_w, lse_s=lse_s, fkl=fkl, rkl=rkl)
            # per-token gradient coefficients of the KL terms (w.r.t. the tempered logits u)
            out["kf"] = a_kl * sp.w_fkl
            out["kr"] = a_kl * sp.w_rkl
            if sp.zscore:
                # G = sum_k g_u[k] * y[k]; the z-score backward subtracts K * y with K below.
                pdy = st["aw"] / st["sw"] - dl * st["bw"] / st["sw"]
                pwy, psy = st["bw"] / st["sw"], st["cw"] / st["ss"]
                g_w = out["kf"] * (pdy - fkl * pwy) + out["kr"] * (pwy - psy)
                out["k_w"] = g_w / sp.tau * zst_w["ratio"] / (self.vocab - 1)
                if sp.strong_grad:
                    qdy = st["as_"] / st["ss"] + dl * st["bs"] / st["ss"]
                    qsy, qwy = st["bs"] / st["ss"], st["cs"] / st["sw"]
                    g_s = out["kr"] * (qdy - rkl * qsy) + out["kf"] * (qsy - qwy)
                    out["k_s"] = g_s / sp.tau * zst_s["ratio"] / (self.vocab - 1)
        lse_r = st["mr"] + jnp.log(st["sr"]) if sp.ce_separate else out["lse_w"]
        out["lse_r"] = lse_r
        active = a_ce != 0
        # An unmasked label outside [0, V) is never found: poison the loss instead of a silent 0.
        ce = jnp.where(found, lse_r - zy, jnp.nan)
        out["ce"] = jnp.where(active, ce, 0.0)
        out["zsq"] = jnp.where(active, jnp.square(lse_r), 0.0)
        return out

    # -- pass 2 -------------------------------------------------------------------
    def grad_blocks(self, zw, zs_, a_ce, fin, zst_w, zst_s):
        """d loss / d logits for one block, WITHOUT the CE's -onehot term (the caller adds it
        as a row correction): ([Tc, Vb] weak, [Tc, Vb] strong or None)."""
        sp = self.spec
        p_raw = jnp.exp(zw - fin["lse_r"][:, None])
        c_ce = (a_ce * sp.w_ce)[:, None]
        g_w = c_ce * p_raw
        if sp.w_z:
            g_w = g_w + (a_ce * sp.w_z * 2.0 * fin["lse_r"])[:, None] * p_raw
        if not sp.has_kl:
            return g_w, None
        uw, yw = self.scaled(zw, zst_w)
        us, ys = self.scaled(zs_, zst_s)
        lw = uw - fin["lse_w"][:, None]
        ls = us - fin["lse_s"][:, None]
        pw, ps = jnp.exp(lw), jnp.exp(ls)
        d = lw - ls
        kf, kr = fin["kf"][:, None], fin["kr"][:, None]
        g_uw = kf * pw * (d - fin["fkl"][:, None]) + kr * (pw - ps)
        if sp.zscore:
            g_w = g_w + (g_uw / sp.tau - fin["k_w"][:, None] * yw) / zst_w["s"][:, None]
        else:
            g_w = g_w + g_uw / sp.tau
        if not sp.strong_grad:
            return g_w, None
        g_us = kr * ps * (-d - fin["rkl"][:, None]) + kf * (ps - pw)
        if sp.zscore:
            g_s = (g_us / sp.tau - fin["k_s"][:, None] * ys) / zst_s["s"][:, None]
        else:
            g_s = g_us / sp.tau
        return g_w, g_s


def _run_chunk(spec: EngineSpec, w, hw, hs, labels, a_ce, a_kl, dw, needs: tuple | None):
    """Loss sums (and dH, updated dW) for one token chunk. hw/hs: [Tc, D] in the matmul dtype.

    needs: None (loss only) or which gradients to form: (d hw, d hs, d W) as static bools.
    """
    vocab = w.shape[0] if spec.w_layout == "vd" else w.shape[1]
    eng = _Engine(spec, vocab)
    tc = hw.shape[0]
    _, n_full, tail = _vocab_blocks(vocab, spec.vocab_block)
    single = n_full == 1 and tail == 0
    mdt = hw.dtype

    def block_logits(v0, size):
        wb = _w_block(w, v0, size, spec.w_layout).astype(mdt)
        zw = _logits(hw, wb)
        zs_ = _logits(hs, wb) if spec.has_kl else None
        return wb, zw, zs_

    cached = block_logits(0, vocab) if single else None
    get = (lambda v0, size: cached) if single else block_logits

    # pass 0: z-score moments
    zst_w = zst_s = None
    if spec.has_kl and spec.zscore:
        init = _vary(spec, {"n": _zero(tc), "mean": _zero(tc), "m2": _zero(tc)})

        def p0(v0, size, c):
            _, zw, zs_ = get(v0, size)
            return (_moments_update(c[0], zw), _moments_update(c[1], zs_))

        mom_w, mom_s = _loop_vocab(p0, (init, init), vocab, spec.vocab_block)
        zst_w, zst_s = eng.zstats(mom_w), eng.zstats(mom_s)

    # pass 1: online log-sum-exp and scalar sums; the target logit comes from the label rows
    def p1(v0, size, st):
        _, zw, zs_ = get(v0, size)
        return eng.update_stats(st, zw, zs_, zst_w, zst_s)

    st = _loop_vocab(p1, _vary(spec, eng.init_stats(tc)), vocab, spec.vocab_block)
    w_lab = _label_rows(w, labels, spec.w_layout).astype(mdt)  # [Tc, D]
    zy = jnp.einsum("td,td->t", hw, w_lab, preferred_element_type=jnp.float32)
    found = (labels >= 0) & (labels < vocab)
    fin = eng.finalize(st, zy, found, a_ce, a_kl, zst_w, zst_s)
    sums = {"ce": jnp.sum(a_ce * fin["ce"]), "zsq": jnp.sum(a_ce * fin["zsq"])}
    if spec.has_kl:
        sums["fkl"] = jnp.sum(a_kl * fin["fkl"])
        sums["rkl"] = jnp.sum(a_kl * fin["rkl"])
    if needs is None:
        return sums, None, None, dw
    need_hw, need_hs, need_w = needs

    # pass 2: gradient blocks contracted immediately into dH and dW
    dh_w0 = _vary(spec, jnp.zeros(hw.shape, jnp.float32) if need_hw else None)
    dh_s0 = _vary(spec, jnp.zeros(hs.shape, jnp.float32) if need_hs else None)

    def p2(v0, size, c):
        dh_w, dh_s, dw_ = c
        wb, zw, zs_ = get(v0, size)
        g_w, g_s = eng.grad_blocks(zw, zs_, a_ce, fin, zst_w, zst_s)
        g_w = g_w.astype(mdt)
        g_s = g_s.astype(mdt) if g_s is not None else None
        if need_hw:
            dh_w = dh_w + jnp.dot(g_w, wb, preferred_element_type=jnp.float32)
        if need_hs:
            dh_s = dh_s + jnp.dot(g_s, wb, preferred_element_type=jnp.float32)
        if need_w:
            dw_blk = jnp.dot(g_w.T, hw, preferred_element_type=jnp.float32)  # [Vb, D]
            if g_s is not None:
                dw_blk = dw_blk + jnp.dot(g_s.T, hs, preferred_element_type=jnp.float32)
            dw_ = _dw_add(dw_, v0, dw_blk, spec.w_layout)
        return dh_w, dh_s, dw_

    dh_w, dh_s, dw = _loop_vocab(p2, (dh_w0, dh_s0, dw), vocab, spec.vocab_block)
    # The CE's -onehot term of d loss / d logits, as row corrections: -c * W[label] into dH and
    # -c * h into dW[label] (a scatter-add of Tc rows instead of a [Tc, V] one-hot).
    c_ce = (a_ce * spec.w_ce)[:, None]
    if need_hw:
        dh_w = dh_w - c_ce * w_lab.astype(jnp.float32)
    if need_w:
        rows = -c_ce * hw.astype(jnp.float32)  # [Tc, D]
        if spec.w_layout == "vd":
            dw = dw.at[labels].add(rows, mode="drop")
        else:
            dw = dw.at[:, labels].add(rows.T, mode="drop")
    return sums, dh_w, dh_s, dw


def _run(spec: EngineSpec, hw, hs, w, labels, a_ce, a_kl, needs: tuple | None):
    """Loop over token chunks. Returns (sums, dhw [T, D] f32, dhs, dw f32); None where unneeded.

    With spec.skip_inactive the rows with nonzero weight are moved (stably) to the front and
    only the chunks holding them run (a dynamic trip count): SFT batches whose prompts, image
    placeholders and padding carry no loss skip that share of the LM-head FLOPs.
    """
    t = hw.shape[0]
    tc = min(spec.token_block, max(t, 1))
    n_chunks = -(-t // tc)
    pad = n_chunks * tc - t
    mdt = jnp.dtype(spec.matmul_dtype) if spec.matmul_dtype else jnp.result_type(hw, w)
    labels = labels.astype(jnp.int32)
    a_ce, a_kl = a_ce.astype(jnp.float32), a_kl.astype(jnp.float32)
    # the strong side only exists for the alignment objective; plain CE passes hw twice
    rows = [hw.astype(mdt), hs.astype(mdt) if spec.has_kl else None, labels, a_ce, a_kl]
    if spec.skip_inactive:
        active = (a_ce != 0) | (a_kl != 0)
        order = jnp.argsort(jnp.logical_not(active), stable=True)  # active rows first
        rows = [None if x is None else x[order] for x in rows]
        n_run = (jnp.sum(active, dtype=jnp.int32) + tc - 1) // tc
    else:
        n_run = n_chunks

    def chunks(x):
        if x is None:
            return None
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((n_chunks, tc, *x.shape[1:]))  # [n_chunks, Tc, ...]

    xs = [chunks(x) for x in rows]
    need_w = bool(needs and needs[2])
    d = hw.shape[1]
    zeros_rows = jnp.zeros((n_chunks, tc, d), jnp.float32)
    carry0 = {
        "dw": jnp.zeros(w.shape, jnp.float32) if need_w else None,
        "dhw": zeros_rows if needs and needs[0] else None,
        "dhs": zeros_rows if needs and needs[1] else None,
        "sums": {k: jnp.zeros((), jnp.float32) for k in _sum_keys(spec)},
    }

    def body(i, c):
        hw_c, hs_c, lab_c, ace_c, akl_c = (
            None if x is None else jax.lax.dynamic_index_in_dim(x, i, 0, False) for x in xs
        )
        hs_c = hw_c if hs_c is None else hs_c
        sums, dhw, dhs, dw = _run_chunk(spec, w, hw_c, hs_c, lab_c, ace_c, akl_c, c["dw"], needs)
        out = {"dw": dw, "sums": {k: c["sums"][k] + v for k, v in sums.items()}}
        put = jax.lax.dynamic_update_index_in_dim
        for name, blk in (("dhw", dhw), ("dhs", dhs)):
            out[name] = None if blk is None else put(c[name], blk, i, 0)
        return out

    c = jax.lax.fori_loop(0, n_run, body, _vary(spec, carry0))
    # back to the input order: the inverse permutation, applied as a gather
    inverse = jnp.argsort(order) if spec.skip_inactive else None

    def unchunk(x):
        if x is None:
            return None
        x = x.reshape(n_chunks * tc, d)[:t]
        return x if inverse is None else x[inverse]

    return c["sums"], unchunk(c["dhw"]), unchunk(c["dhs"]), c["dw"]


def _sum_keys(spec: EngineSpec) -> tuple[str, ...]:
    return ("ce", "zsq", "fkl", "rkl") if spec.has_kl else ("ce", "zsq")


def _total(spec: EngineSpec, sums: dict) -> jax.Array:
    loss = spec.w_ce * sums["ce"]
    if spec.w_z:
        loss = loss + spec.w_z * sums["zsq"]
    if spec.has_kl:
        loss = loss + spec.w_fkl * sums["fkl"] + spec.w_rkl * sums["rkl"]
    return loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def fused_engine(spec: EngineSpec, hw, hs, w, labels, a_ce, a_kl):
    """(loss, sums) of the fused objective. hw/hs: [T, D]; w: LM head in `spec.w_layout`."""
    sums, _, _, _ = _run(spec, hw, hs, w, labels, a_ce, a_kl, needs=None)
    return _total(spec, sums), sums


def _fwd(spec, hw, hs, w, labels, a_ce, a_kl):
    """Computes the gradients now (Liger-style), only for the inputs being differentiated."""
    needs = (hw.perturbed, spec.has_kl and spec.strong_grad and hs.perturbed, w.perturbed)
    vals = [x.value for x in (hw, hs, w, labels, a_ce, a_kl)]
    sums, dhw, dhs, dw = _run(spec, *vals, needs=needs)
    # zero-size arrays carry the input dtypes (dtypes themselves are not valid residuals)
    dts = tuple(jnp.zeros((0,), x.dtype) for x in vals[:3])
    return (_total(spec, sums), sums), (dhw, dhs, dw, dts)


def _bwd(spec, res, cts):
    dhw, dhs, dw, dts = res
    g = cts[0]  # cotangents of `sums` are ignored: callers stop_gradient them (logging only)
    if isinstance(g, SymbolicZero):
        return None, None, None, None, None, None

    def scale(d, dt):
        return None if d is None else (g * d).astype(dt.dtype)

    g_w = scale(dw, dts[2])
    if spec.vary_axes and g_w is not None:  # the head is replicated over the token shards
        g_w = jax.lax.psum(g_w, spec.vary_axes)
    return scale(dhw, dts[0]), scale(dhs, dts[1]), g_w, None, None, None


fused_engine.defvjp(_fwd, _bwd, symbolic_zeros=True)


def check_labels_concrete(labels, active, vocab: int, what: str) -> None:
    """Eager range check when labels are concrete (outside jit); inside jit the loss turns NaN."""
    if isinstance(labels, jax.core.Tracer) or isinstance(active, jax.core.Tracer):
        return
    lab = np.asarray(labels).reshape(-1)
    act = np.asarray(active).reshape(-1).astype(bool)
    bad = np.nonzero(act & ((lab < 0) | (lab >= vocab)))[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{what}: {bad.size} label(s) at active positions are outside [0, {vocab}); "
            f"first at flat index {i}: label {int(lab[i])}"
        )


def sharded_engine(spec: EngineSpec, mesh, token_axes, hw, hs, w, labels, a_ce, a_kl):
    """fused_engine with the tokens split over `token_axes` of `mesh` (shard_map).

    Each device streams its own token rows against the full LM head (replicated inside; an
    FSDP-sharded head is gathered by XLA as for any matmul) and the partial sums are psum-ed.
    Token weights already carry the global normalisation, so the result equals the single-device
    one; the dW of the replicated head is summed across devices by shard_map's transpose.
    """
    from jax.sharding import PartitionSpec as P

    axes = (token_axes,) if isinstance(token_axes, str) else tuple(token_axes)
    n = int(np.prod([mesh.shape[a] for a in axes]))
    t = hw.shape[0]
    pad = (-t) % n
    if pad:  # zero-weight rows so every device gets the same number of tokens

        def padded(x):
            return jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))

        hw, hs, labels, a_ce, a_kl = (padded(x) for x in (hw, hs, labels, a_ce, a_kl))

    spec = dataclasses.replace(spec, vary_axes=axes)

    def local(hw, hs, w, labels, a_ce, a_kl):
        loss, sums = fused_engine(spec, hw, hs, w, labels, a_ce, a_kl)
        return jax.lax.psum(loss, axes), jax.lax.psum(sums, axes)

    rows, vec = P(axes, None), P(axes)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(rows, rows, P(), vec, vec, vec),
        out_specs=(P(), P()),
    )(hw, hs, w, labels, a_ce, a_kl)
