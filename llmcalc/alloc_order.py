"""The order in which the reference stack allocates and frees its tensors, generated from the
workload and fed to the caching-allocator model (llmcalc.allocator) to predict its reserve.

Transcribed from PyTorch memory traces of transformers 5.17 on torch 2.11 (benchmarks/
allocator_trace.py; the stored traces are the reference to diff against). Covered so far:
inference (prefill, then greedy decode on a DynamicCache) with SDPA attention of the Llama and
Qwen2 families without a sliding window in 16 bits, and in fp32 with grouped-query heads (SDPA's
math path), and of GPT-2 in 16 or 32 bits. Everything of 1 MiB or more is emitted; smaller
tensors live in the allocator's small pool and barely move the reserve (docs/allocator.md). On
the H100 the 19 covered validation rows' reserves (0.3% to 24.1% of peak allocated) came out
within 2.3% of peak allocated, their device totals within 2.1%.
"""

from __future__ import annotations

from llmcalc.allocator import SMALL_SIZE, CachingAllocator
from llmcalc.cards import ModelCard
from llmcalc.memory import Workload, _math_sdpa
from llmcalc.precision import PRECISIONS

CUBLAS_WORKSPACE = 32 << 20  # allocated by the first matmul, before the model (Hopper)


def covers(card: ModelCard, w: Workload) -> bool:
    """Whether an allocation order is transcribed for this workload."""
    if not (w.mode == "infer" and w.attention == "sdpa" and not w.autocast and w.kv_dtype in (None, w.dtype)
            and w.allocator == "default" and w.dtype in ("bf16", "fp16", "fp32")):
        return False
    if card.family == "gpt2":
        return True
    return (card.family in ("llama", "qwen2") and not card.sliding_window and not card.fused_qkv
            and card.mlp == "gated" and card.norm == "rmsnorm" and not card.is_moe
            and (w.dtype != "fp32" or _math_sdpa(card, w)))  # fp32: grouped-query heads, SDPA's math path


# Replaying runs at roughly 3 us per event; beyond this many (as events() counts them) the
# estimate keeps the median reserve fraction rather than take seconds: a 70B at batch 64 x 512
# new tokens counts 1.6 million and took 1.7 s.
MAX_EVENTS = 400_000


def _small_steps(card: ModelCard, w: Workload) -> bool:
    """Whether a decode step's tensors other than the cache (one row per sequence) all stay in the
    small pool, even the widest (MLP, fused qkv or fp32 norm rows): then a step is only its cache
    updates (and the math path's repeated keys and values) and its logits."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h = card.hidden_size
    return w.batch * w.beams * max(card.intermediate_size * a, 3 * h * a, h * 4, card.q_dim * a) <= SMALL_SIZE


def events(card: ModelCard, w: Workload) -> int:
    """About how many allocator events simulate_inference would replay: ~40 per layer per forward
    that carries row-sized tensors of 1 MiB or more, else the cache's (and the math path's) few."""
    per_step = 40 if not _small_steps(card, w) else (10 if _math_sdpa(card, w) else 4)
    return card.num_layers * (40 + max(w.gen - 1, 0) * per_step)


class _Run:
    """Allocation handles by name, over one CachingAllocator."""

    def __init__(self, alloc: CachingAllocator) -> None:
        self.alloc = alloc
        self.live: dict[str, int | None] = {}

    def a(self, name: str, nbytes: int) -> None:
        # the small pool's 2 MiB segments hold what is not emitted
        self.live[name] = self.alloc.malloc(int(nbytes)) if nbytes > SMALL_SIZE else None

    def f(self, *names: str) -> None:
        for name in names:
            handle = self.live.pop(name)
            if handle is not None:
                self.alloc.free(handle)

    def rename(self, old: str, new: str) -> None:
        self.live[new] = self.live.pop(old)


def simulate_inference(card: ModelCard, w: Workload) -> CachingAllocator:
    """Replay the load, the prefill and every decode step of `w` through the allocator model."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h, i, q, kv = card.hidden_size, card.intermediate_size, card.q_dim, card.kv_dim
    seqs = w.batch * w.beams
    run = _Run(CachingAllocator())
    run.a("workspace", CUBLAS_WORKSPACE)
    # Load: every parameter tensor in module order; a tied lm_head is built, then replaced by the
    # embedding.
    for param in card.parameters():
        run.a(param.name, param.numel * a)
    if card.tie_word_embeddings:
        run.a("lm_head (tied)", card.vocab_size * h * a)
        run.f("lm_head (tied)")
    run.a("ids", seqs * w.seq * 8)

    def norm(x: str, out: str, p: int) -> None:
        """transformers' LlamaRMSNorm: x.to(fp32), pow, (mean), x32 * rsqrt, .to(dtype), weight *
        (in fp32 both casts are the tensor itself)."""
        if a == 4:
            run.a("pow", p * h * 4)
            run.f("pow")
            run.a("y32", p * h * 4)
            run.a(out, p * h * 4)
            run.f("y32")
            return
        run.a("x32", p * h * 4)
        run.a("pow", p * h * 4)
        run.f("pow")
        run.a("y32", p * h * 4)
        run.f("x32")
        run.a("y", p * h * a)
        run.a(out, p * h * a)
        run.f("y", "y32")

    def rope(t: str, width: int, p: int) -> None:
        """apply_rotary_pos_emb for one tensor: t*cos, -x2, cat (rotate_half), *sin, sum."""
        run.a(t + ".cos", p * width * a)
        run.a(t + ".neg", p * width // 2 * a)
        run.a(t + ".rot", p * width * a)
        run.f(t + ".neg")
        run.a(t + ".sin", p * width * a)
        run.f(t + ".rot")
        run.a(t + ".emb", p * width * a)
        run.f(t + ".cos", t + ".sin")

    def cache_cat(layer: int, context: int, width: int) -> None:
        """keys = torch.cat(keys, new): the grown cache, then the old one goes; then values."""
        for c in (f"K{layer}", f"V{layer}"):
            run.a(c + "'", seqs * context * width * a)
            run.f(c)
            run.rename(c + "'", c)

    math = _math_sdpa(card, w)
    heads = card.num_heads

    def math_attention(p: int, prefill: bool, context: int) -> None:
        """SDPA's math path with enable_gqa (fp32): q scaled, the causal mask built ([S, S] bools,
        then fp32), k and v repeated to every head and k scaled (q-sized in a prefill, cache-sized
        in a decode step), the scores, the probabilities and their isneginf mask, P V, and the
        output made contiguous for o_proj."""
        if prefill:
            n = w.seq
            scores = seqs * heads * n * n
            run.a("qs", p * q * 4)
            run.a("m1", n * n)
            run.a("m2", n * n)
            run.f("m1")
            run.a("mask", n * n * 4)
            run.f("m2")
            for e in ("e1", "e2", "e3", "e4"):
                run.a(e, p * q * 4)
            run.a("scores", scores * 4)
            run.f("e4", "e3")
            run.a("probs", scores * 4)
            run.a("isneginf", scores)
            run.f("isneginf", "scores")
            run.a("pv", p * q * 4)
            run.f("e1", "e2", "qs", "mask", "probs")
        else:
            repeated_kv(context)
            run.a("pv", p * q * 4)
        run.a("attn", p * q * 4)
        run.f("pv")

    def repeated_kv(context: int) -> None:
        """A decode step's repeated (and scaled) keys and values: one copy of the cache per head."""
        r = seqs * context * q * 4
        run.a("e1", r)
        run.a("e2", r)
        run.a("e3", r)
        run.f("e3", "e1", "e2")

    def logits() -> None:
        """lm_head on the last position only (logits_to_keep=1) and its .float()."""
        run.a("logits", seqs * card.vocab_size * a)
        run.a("logits32", seqs * card.vocab_size * 4)
        run.f("logits32", "logits")

    def small_step(context: int) -> None:
        for layer in range(card.num_layers):
            cache_cat(layer, context, kv)
            if math:
                repeated_kv(context)
        logits()

    def layer_forward(layer: int, p: int, x: str, prefill: bool, context: int) -> str:
        norm(x, "n1", p)
        run.a("q", p * q * a)
        run.a("k", p * kv * a)
        run.a("v", p * kv * a)
        rope("q", q, p)
        rope("k", kv, p)
        run.f("q", "k")
        cache_k, cache_v = f"K{layer}", f"V{layer}"
        if prefill:  # DynamicCache stores copies of the first keys and values
            run.a(cache_k, p * kv * a)
            run.a(cache_v, p * kv * a)
        else:
            cache_cat(layer, context, kv)
        run.f("k.emb", "v")
        if math:
            math_attention(p, prefill, context)
        else:
            run.a("attn", p * q * a)
        run.a("o", p * h * a)
        run.f("attn", "q.emb", "n1")
        run.a("r1", p * h * a)
        run.f("o")
        norm("r1", "n2", p)
        run.a("gate", p * i * a)
        run.a("act", p * i * a)
        run.f("gate")
        run.a("up", p * i * a)
        run.a("prod", p * i * a)
        run.f("act", "up")
        run.a("down", p * h * a)
        run.f("prod", "n2")
        out = f"h{layer}"
        run.a(out, p * h * a)
        run.f("down", "r1")
        if x != "embeds":
            run.f(x)
        return out

    def forward(p: int, prefill: bool, context: int) -> None:
        run.a("embeds", p * h * a)
        x = "embeds"
        for layer in range(card.num_layers):
            x = layer_forward(layer, p, x, prefill, context)
        norm(x, "final", p)
        logits()
        run.f("final", x, "embeds")

    def gpt2_forward(p: int, prefill: bool, context: int) -> None:
        """GPT2LMHeadModel: token + position embeddings, then per block ln_1, c_attn (fused qkv),
        the cache, SDPA, c_proj, residual, ln_2, c_fc, gelu_new's chain, c_proj, residual (multi-head:
        kv = h)."""
        run.a("embeds", p * h * a)
        run.a("x0", p * h * a)  # inputs_embeds + position_embeds: the first block's input
        x = "x0"
        for layer in range(card.num_layers):
            run.a("n1", p * h * a)
            run.a("qkv", p * 3 * h * a)
            if prefill:
                run.a(f"K{layer}", p * kv * a)
                run.a(f"V{layer}", p * kv * a)
            else:
                cache_cat(layer, context, kv)
            run.a("attn", p * h * a)
            run.a("o", p * h * a)
            run.f("attn", "qkv")
            run.a("r1", p * h * a)
            run.f("n1")
            run.a("n2", p * h * a)
            run.a("fc", p * i * a)
            # gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one tensor per op
            run.a("g0", p * i * a)
            run.a("g1", p * i * a)
            for k in range(2, 7):
                run.a(f"g{k}", p * i * a)
                run.f(f"g{k - 1}")
            run.a("g7", p * i * a)
            run.f("g0", "g6", "fc")
            run.a("down", p * h * a)
            run.f("g7")
            out = f"h{layer}"
            run.a(out, p * h * a)
            run.f("n2", "r1", "o", "down", x)  # the block's attention output is held to its end
            x = out
        run.a("final", p * h * a)
        logits()
        run.f("final", x, "embeds")

    step_forward = gpt2_forward if card.family == "gpt2" else forward
    small_steps = _small_steps(card, w)
    step_forward(seqs * w.seq, True, w.seq)
    for step in range(max(w.gen - 1, 0)):
        if small_steps:
            small_step(w.seq + step + 1)
        else:
            step_forward(seqs, False, w.seq + step + 1)
    return run.alloc
