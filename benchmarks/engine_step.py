"""A serving engine's decode step, built from the kernels vLLM V1 runs for a Llama layer, timed
on the GPU from a CUDA graph (docs/engine-speed.md). vLLM cannot be installed on the device
machine; this is its op list in plain PyTorch:

    per layer: fused residual add + RMSNorm, merged qkv GEMM, rotary on q and k, the new k and v
    written into the cache, flash attention over the cached keys (each grouped KV head read
    once), o GEMM, fused add + RMSNorm, merged gate_up GEMM, SiLU-and-mul, down GEMM;
    then the final norm, lm_head, the logits in fp32 and a greedy argmax.

vLLM V1 compiles the model with inductor and, by default, leaves RMSNorm, SiLU-and-mul and rotary
to inductor rather than its own CUDA ops (vllm/config/compilation.py: custom_ops "none" under
the inductor backend); here each of those elementwise groups is one torch.compile'd function,
so each is one fused triton kernel as there. GEMMs are F.linear (cuBLAS), as vLLM's unquantized
linear method calls it (vllm/model_executor/layers/linear.py). Attention is SDPA's flash kernel
with enable_gqa over a contiguous cache exactly `context` long; vLLM's paged flash kernel reads
the same bytes through a block table. The whole step is captured in one CUDA graph (vLLM V1
captures everything but attention piecewise; launches are hidden either way).

    python benchmarks/engine_step.py --out DIR [--layers 32] [--cases 1:512,8:512,...] [--trace]

Writes DIR/engine-step-LABEL.json: per (batch, context) the median step time of 20 graph replays
(CUDA events), and with --trace the GPU time per kernel kind of one eager step
(torch.profiler), so the op list's parts can be checked one by one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from graph_timing import replay_ms

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--layers", type=int, default=32)
p.add_argument("--cases", default="1:512,1:4096,8:512,8:4096,32:512,32:2048,64:1024,128:512,128:2048,256:512")
p.add_argument("--decode-attention", default="sdpa", choices=["sdpa", "auto"],
               help="auto: FlexAttention's decode kernel from 32 sequences, SDPA's flash below (the faster of the "
                    "two there: benchmarks/engine_attention.py)")
p.add_argument("--prefill", default="", help="prefill cases batch:prompt,... (one forward over the whole prompt)")
p.add_argument("--trace", default="1:512,64:1024", help="cases to break down by kernel ('' for none)")
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--intermediate", type=int, default=14336)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--vocab", type=int, default=128256)
p.add_argument("--head-dim", type=int, default=0, help="default: hidden / heads")
p.add_argument("--label", default="llama-3.1-8b")
p.add_argument("--experts", type=int, default=0, help="routed experts per layer (0: a dense MLP)")
p.add_argument("--qk-norm", action="store_true", help="an RMSNorm over each head of q and k (Qwen3, Gemma 3)")
p.add_argument("--window", type=int, default=0, help="sliding-window layers' window (0: none)")
p.add_argument("--global-every", type=int, default=0, help="with --window: every Nth layer attends globally")
p.add_argument("--norms", type=int, default=2, choices=[2, 4], help="4: Gemma's post-attention and post-MLP norms")
p.add_argument("--act", default="silu", choices=["silu", "gelu"], help="gelu: Gemma's gelu_pytorch_tanh")
p.add_argument("--top-k", type=int, default=8)
p.add_argument("--moe-intermediate", type=int, default=768)
args = p.parse_args()

dev = "cuda" if torch.cuda.is_available() else "cpu"
dt = torch.bfloat16
H, I, NH, KVH, V, L = args.hidden, args.intermediate, args.heads, args.kv_heads, args.vocab, args.layers
D = args.head_dim or H // NH
EPS = 1e-5


def w(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=dev, dtype=dt) * 0.02


E, K, IE = args.experts, args.top_k, args.moe_intermediate


def layer_weights() -> dict:
    lw = dict(n1=torch.ones(H, device=dev, dtype=dt), qkv=w((NH + 2 * KVH) * D, H), o=w(H, NH * D),
              n2=torch.ones(H, device=dev, dtype=dt), nq=torch.ones(D, device=dev, dtype=dt),
              nk=torch.ones(D, device=dev, dtype=dt), n3=torch.ones(H, device=dev, dtype=dt),
              n4=torch.ones(H, device=dev, dtype=dt))
    if E:  # experts stored as nn.Linear weights, (out, in) per expert
        lw.update(router=w(E, H), gate_up=w(E, 2 * IE, H), down=w(E, H, IE))
    else:
        lw.update(gate_up=w(2 * I, H), down=w(H, I))
    return lw


layers = [layer_weights() for _ in range(L)]
embed, lm_head, final_norm = w(V, H), w(V, H), torch.ones(H, device=dev, dtype=dt)
inv_freq = 1.0 / (500000.0 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float32) / D))


def _add_rmsnorm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = x + residual
    rf = r.float()
    y = rf * torch.rsqrt(rf.pow(2).mean(-1, keepdim=True) + EPS)
    return (y.to(x.dtype) * weight), r


def _rms(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    tf = t.float()
    return (tf * torch.rsqrt(tf.pow(2).mean(-1, keepdim=True) + EPS)).to(t.dtype) * weight


def _rotary(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, wq: torch.Tensor,
            wk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = qkv.shape[0]
    q, k, v = qkv.split([NH * D, KVH * D, KVH * D], dim=-1)
    q, k, v = q.view(b, NH, D), k.view(b, KVH, D), v.view(b, KVH, D)
    if args.qk_norm:  # per-head RMSNorm, in the same fused kernel as the rotation
        q, k = _rms(q, wq), _rms(k, wk)

    def rot(t: torch.Tensor) -> torch.Tensor:
        t1, t2 = t[..., : D // 2].float(), t[..., D // 2:].float()
        return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], dim=-1).to(t.dtype)

    return rot(q), rot(k), v


def _silu_mul(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return (F.gelu(a, approximate="tanh") if args.act == "gelu" else F.silu(a)) * b


def moe(h: torch.Tensor, lw: dict) -> torch.Tensor:
    """Routed experts as an engine runs them (vLLM's fused_moe; here PyTorch's grouped GEMM, as
    transformers' integrations/moe.py calls it): softmax top-k routing, the token copies sorted by
    expert, one grouped GEMM for gate_up over the experts that got tokens, SiLU-and-mul, one for
    down, then the weighted sum of each token's k outputs."""
    n = h.shape[0]
    probs = F.linear(h, lw["router"]).float().softmax(-1)
    weights, experts = probs.topk(K, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).to(h.dtype)
    flat = experts.flatten()
    order = flat.argsort()
    # tokens per expert without bincount, whose CUDA kernel reads its size back to the host
    counts = torch.zeros(E, device=h.device, dtype=torch.int32).scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = counts.cumsum(0, dtype=torch.int32)
    x = h[order // K]  # each routed copy, grouped by expert
    gu = torch._grouped_mm(x, lw["gate_up"].transpose(-2, -1), offs=offs)
    y = torch._grouped_mm(silu_mul(gu), lw["down"].transpose(-2, -1), offs=offs)
    out = torch.empty_like(y)
    out[order] = y
    return (out.view(n, K, H) * weights[..., None]).sum(1)


def mlp(h: torch.Tensor, lw: dict) -> torch.Tensor:
    return moe(h, lw) if E else F.linear(silu_mul(F.linear(h, lw["gate_up"])), lw["down"])


def _sample(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _add_rmsnorm(x, residual, weight)[0]


compiled = dev == "cuda"
if args.decode_attention == "auto":
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention, dynamic=False)
add_rmsnorm = torch.compile(_add_rmsnorm, dynamic=True) if compiled else _add_rmsnorm
rotary = torch.compile(_rotary, dynamic=True) if compiled else _rotary
rms = torch.compile(_rms, dynamic=True) if compiled else _rms


def sliding(i: int) -> bool:
    return bool(args.window) and not (args.global_every and (i + 1) % args.global_every == 0)
silu_mul = torch.compile(_silu_mul, dynamic=True) if compiled else _silu_mul


def make_step(batch: int, context: int):
    # a sliding layer keeps (and attends over) only its window
    lengths = [min(context, args.window) if sliding(i) else context for i in range(L)]
    caches = [(torch.zeros(batch, n, KVH, D, device=dev, dtype=dt),
               torch.zeros(batch, n, KVH, D, device=dev, dtype=dt)) for n in lengths]
    tokens = torch.randint(0, V, (batch,), device=dev)
    pos = torch.full((1,), context - 1, device=dev, dtype=torch.long)
    slots = [torch.full((1,), n - 1, device=dev, dtype=torch.long) for n in lengths]
    freqs = pos.float()[:, None] * inv_freq[None, :]
    cos, sin = freqs.cos()[:, None, :], freqs.sin()[:, None, :]  # (1, 1, D/2): one position for all
    use_flex = args.decode_attention == "auto" and batch >= 32

    def step() -> torch.Tensor:
        x = F.embedding(tokens, embed)
        residual = torch.zeros_like(x)
        for lw, (kc, vc), slot in zip(layers, caches, slots):
            h, residual = add_rmsnorm(x, residual, lw["n1"])
            q, k, v = rotary(F.linear(h, lw["qkv"]), cos, sin, lw["nq"], lw["nk"])
            kc.index_copy_(1, slot, k[:, None])  # the cache write (vLLM: reshape_and_cache_flash)
            vc.index_copy_(1, slot, v[:, None])
            if use_flex:
                a = flex(q[:, :, None, :], kc.transpose(1, 2), vc.transpose(1, 2), enable_gqa=True)
            else:
                with sdpa_kernel(BACKENDS[BACKEND]):
                    a = F.scaled_dot_product_attention(q[:, :, None, :], kc.transpose(1, 2), vc.transpose(1, 2),
                                                       enable_gqa=True)
            x = F.linear(a.reshape(batch, NH * D), lw["o"])
            if args.norms == 4:  # Gemma: post-attention norm before the residual add
                x = rms(x, lw["n3"])
            h, residual = add_rmsnorm(x, residual, lw["n2"])
            x = mlp(h, lw)
            if args.norms == 4:  # and post-MLP norm
                x = rms(x, lw["n4"])
        h = add_rmsnorm(x, residual, final_norm)[0]
        return F.linear(h, lm_head).float().argmax(-1)

    return step, caches


from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH}


def make_prefill(batch: int, prompt: int):
    """One prefill forward over `prompt` tokens of `batch` sequences: the same kernels over
    batch x prompt rows, causal flash attention, the prompt's K and V copied into the cache,
    logits for each sequence's last position only (as an engine samples)."""
    caches = [(torch.zeros(batch, prompt, KVH, D, device=dev, dtype=dt),
               torch.zeros(batch, prompt, KVH, D, device=dev, dtype=dt)) for _ in range(L)]
    tokens = torch.randint(0, V, (batch * prompt,), device=dev)
    freqs = torch.arange(prompt, device=dev, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos = freqs.cos()[None, :, None, :].expand(batch, prompt, 1, D // 2).reshape(batch * prompt, 1, D // 2)
    sin = freqs.sin()[None, :, None, :].expand(batch, prompt, 1, D // 2).reshape(batch * prompt, 1, D // 2)
    last = torch.arange(batch, device=dev) * prompt + prompt - 1

    def step() -> torch.Tensor:
        x = F.embedding(tokens, embed)
        residual = torch.zeros_like(x)
        for lw, (kc, vc) in zip(layers, caches):
            h, residual = add_rmsnorm(x, residual, lw["n1"])
            q, k, v = rotary(F.linear(h, lw["qkv"]), cos, sin, lw["nq"], lw["nk"])
            kc.copy_(k.view(batch, prompt, KVH, D))
            vc.copy_(v.view(batch, prompt, KVH, D))
            with sdpa_kernel(BACKENDS[BACKEND]):
                a = F.scaled_dot_product_attention(q.view(batch, prompt, NH, D).transpose(1, 2), kc.transpose(1, 2),
                                                   vc.transpose(1, 2), is_causal=True, enable_gqa=True)
            x = F.linear(a.transpose(1, 2).reshape(batch * prompt, NH * D), lw["o"])
            h, residual = add_rmsnorm(x, residual, lw["n2"])
            x = mlp(h, lw)
        h = add_rmsnorm(x[last], residual[last], final_norm)[0]
        return F.linear(h, lm_head).float().argmax(-1)

    return step, caches


def backend_check() -> str:
    """The SDPA kernel a decode query with grouped KV heads can use: flash, else efficient."""
    q = torch.randn(2, NH, 1, D, device=dev, dtype=dt)
    k = torch.randn(2, KVH, 64, D, device=dev, dtype=dt)
    for name, be in BACKENDS.items():
        try:
            with sdpa_kernel(be):
                F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
            return name
        except RuntimeError:
            continue
    return "math"


def kernel_kind(name: str) -> str:
    n = name.lower()
    for kind, keys in (("attention", ("flash", "fmha", "attention", "flex", "triton_tem")),  # first: FA's names hold "cutlass"
                       ("grouped gemm", ("grouped", "ptr_array", "kernel_with_params")),
                       ("gemm", ("gemm", "gemv", "cutlass", "sm90", "nvjet", "cublas", "splitk")),
                       ("cache_write", ("index_copy",)),
                       ("argmax", ("argmax",)),
                       ("triton", ("triton",))):
        if any(key in n for key in keys):
            return kind
    return "other"


def trace(step) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kinds: dict[str, dict] = {}
    for e in prof.events():
        if e.device_type.name != "CUDA":
            continue
        k = kinds.setdefault(kernel_kind(e.name), {"kernels": 0, "us": 0.0, "names": {}})
        k["kernels"] += 1
        k["us"] += e.device_time
        n = k["names"].setdefault(e.name[:120], [0, 0.0])  # [kernels, us] per kernel name
        n[0] += 1
        n[1] += e.device_time
    for k in kinds.values():
        k["names"] = dict(sorted(k["names"].items(), key=lambda kv: -kv[1][1])[:12])
    return kinds


BACKEND = backend_check()


def main() -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"label": args.label, "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "layers": L, "hidden": H, "intermediate": I, "heads": NH, "kv_heads": KVH,
            "vocab": V, "head_dim": D, "sdpa_backend": BACKEND, "experts": E, "top_k": K if E else 0,
            "qk_norm": args.qk_norm, "window": args.window, "global_every": args.global_every, "norms": args.norms,
            "act": args.act,
            "moe_intermediate": IE if E else 0, "rows": []}
    traced = set(args.trace.split(",")) if args.trace else set()
    cases = [(c, False) for c in args.cases.split(",") if c] + [(c, True) for c in args.prefill.split(",") if c]
    if args.window and args.prefill:
        raise SystemExit("--prefill with --window: a windowed causal prefill is not built here")
    for case, prefill in cases:
        batch, context = (int(x) for x in case.split(":"))
        t0 = time.time()
        step, caches = (make_prefill if prefill else make_step)(batch, context)
        for _ in range(3):  # compile (dynamic shapes) and warm up
            step()
        row: dict = {"batch": batch, "context": context, "phase": "prefill" if prefill else "decode",
                     "attention": "flex" if (args.decode_attention == "auto" and batch >= 32 and not prefill)
                     else f"sdpa {BACKEND}"}
        if dev == "cuda":
            times = replay_ms(step, warmup=0)  # warmed up above
            row.update(step_ms=statistics.median(times), min_ms=min(times),
                       kv_cache_gib=sum(c.numel() * c.element_size() for kv in caches for c in kv) / 2**30)
            if case in traced:
                row["trace"] = trace(step)
        else:
            t = time.perf_counter()
            step()
            row["eager_cpu_ms"] = (time.perf_counter() - t) * 1e3
        row["wall_s"] = round(time.time() - t0, 1)
        meta["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
        del step, caches
        if dev == "cuda":
            torch.cuda.empty_cache()
    (out / f"engine-step-{args.label}.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
