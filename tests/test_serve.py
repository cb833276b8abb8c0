"""`llmcalc serve`: the engines' start-up accounting, by hand."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.errors import InputError
from llmcalc.resolve import load_card
from llmcalc.serving import GiB, ServeConfig, _kv_groups, _vllm_kv, serve, weights_per_rank

RTX_3090 = int(23.58 * GiB)


def test_weights_as_vllms_loader_counts_them():
    # llama-3.1-8b: 8,030,261,248 parameters in bf16 (the vocabulary, 128,256, is a multiple of 64)
    # + one rotary cache of 131,072 positions x 128 x 2 B = 33,554,432 B. The public log of vLLM
    # issue 10517 says "Loading model weights took 14.9888 GB" (GiB).
    weights, _ = weights_per_rank(load_card("llama-3.1-8b"), "bf16", "bf16", 1, 1)
    assert weights == 8_030_261_248 * 2 + 33_554_432
    assert round(weights / GiB, 4) == 14.9888


def test_tp_splits_and_replicates_kv_heads():
    # qwen2.5-14b at TP 2: 8 kv heads -> 4 per rank, so every projection, its bias, the 152,064-row
    # vocabulary (a multiple of 64) and the MLP halve; the norms, o_proj's (absent) bias and the
    # rotary cache (131,072 x 128 x 2 B) stay whole.
    card = load_card("qwen2.5-14b")
    one, _ = weights_per_rank(card, "bf16", "bf16", 1, 1)
    two, _ = weights_per_rank(card, "bf16", "bf16", 2, 1)
    whole = sum(p.numel for p in card.parameters() if p.kind == "norm") * 2 + 131_072 * 128 * 2
    assert two == (one - whole) // 2 + whole
    # at TP 16 each rank keeps one of the 8 kv heads: k and v are replicated twice over
    k = sum(p.numel for p in card.parameters() if p.name.endswith(("k_proj", "v_proj")))
    sixteen, _ = weights_per_rank(card, "bf16", "bf16", 16, 1)
    assert sixteen - (one - whole - k * 2) / 16 - whole == pytest.approx(k * 2 / 8, rel=1e-3)


def test_block_arithmetic_from_the_available_memory():
    # Llama-3-8B bf16, TP 1, block 16: a page is 2 x 8 heads x 128 x 2 B x 16 = 65,536 B per layer,
    # 2 MiB over 32 layers; 10 GiB -> 5,120 blocks, 81,920 tokens; 8,192-token requests need 512
    # blocks: concurrency 10.0 (docs/serve-accounting.md 4.6).
    card = load_card("llama-3-8b")
    config = ServeConfig(gpu_total_bytes=80 * GiB, max_model_len=8192)
    kv, tokens, concurrency, error = _vllm_kv(card, config, _kv_groups(card, config, 2, 1), 10 * GiB, 16, 8192, 8192)
    assert (kv, tokens, concurrency, error) == (10 * GiB, 81_920, 10.0, None)


def test_mla_caches_one_latent_on_every_rank():
    # deepseek-v3: (512 + 64) x 2 B per token and layer, the same at TP 8 as at TP 1
    card = load_card("deepseek-v3")
    for tp in (1, 8):
        groups = _kv_groups(card, ServeConfig(gpu_total_bytes=GiB, tp=tp), 2, 1)
        assert [(g.layers, g.bytes_per_token) for g in groups] == [(3, 1152), (58, 1152)]


def test_a_request_too_long_is_vllms_message():
    est = serve(load_card("llama-3.1-8b"), ServeConfig(gpu_total_bytes=RTX_3090, max_model_len=131072), "bf16", "bf16")
    assert not est.starts
    assert est.error.startswith("To serve at least one request with the models's max seq len (131072), (16.00 GiB "
                                "KV cache is needed, which is larger than the available KV cache memory (")
    # the longest length that fits is the cache's own token count (one request, full attention)
    fits = serve(load_card("llama-3.1-8b"), ServeConfig(gpu_total_bytes=RTX_3090, max_model_len=20000), "bf16", "bf16")
    assert f"the estimated maximum model length is {fits.kv_cache_tokens}." in est.error


def test_the_worked_example_of_docs_serve():
    card = load_card("llama-3.1-8b")
    est = serve(card, ServeConfig(gpu_total_bytes=RTX_3090, gpu_name="NVIDIA GeForce RTX 3090", max_model_len=20000),
                "bf16", "bf16")
    assert est.version == "0.33" and (est.max_num_batched_tokens, est.max_num_seqs) == (2048, 256)  # under 70 GiB
    # the profile run's peak: the sampler phase (256 rows x 128,256 entries x (2 B bf16 logits +
    # 12 B), the returned and gathered hidden states (2,048 + 2 x 256) x 4,096 x 2 B, the Triton
    # top-k/top-p kernel's 132 fp32 rows) beats the forward's 2,048 x 2 x 55,296 B; plus the 32 MiB
    # cuBLAS workspace
    assert est.activation_peak_bytes == 33_554_432 + 256 * 128_256 * 14 + 2_560 * 4_096 * 2 + 132 * 128_256 * 4
    assert est.activation_peak_bytes == 581_914_624
    # the CUDA-graph estimate 0.33 subtracts (V2 runner: every PIECEWISE graph, FULL extrapolated).
    # Sizes 1, 2, 4, 8-248 by 8, 256-512 by 16: 51 PIECEWISE, 35 of them <= 256 sequences FULL.
    # 358 kernels a forward at 512 tokens, 64 of them attention (outside the PIECEWISE graphs):
    # PIECEWISE 33 graphs x 112 KiB + 294 x 11 KiB = 6,930 KiB a size; FULL 112 + 358 x 11 = 4,050 KiB;
    # the first PIECEWISE capture adds the pool, 512 x 2 B x (4,096 + 2 x 4,096 + 3 x 14,336) =
    # 55,296 KiB; no FlashAttention-3 split buffers off Hopper:
    # 55,296 + 6,930 + 4,050 + 50 x 6,930 + 34 x 4,050 = 550,476 KiB
    assert est.cuda_graph_bytes == 550_476 * 1024
    # budget 0.92 x 23.58 GiB = 23,293,325,632 B, less 16,094,076,928 B of weights, 0.25 GiB
    # non-torch, the peak and the graphs: 5,785,211,200 B, 2,758 blocks of 2 MiB (16 tokens x 32
    # layers x 2 x 8 heads x 128 x 2 B)
    assert est.budget_bytes == 23_293_325_632 and est.kv_available_bytes == 5_785_211_200
    assert est.kv_available_bytes // est.kv_block_bytes == 2_758 and est.kv_block_bytes == 2_097_152
    assert (est.kv_cache_tokens, round(est.max_concurrency, 2)) == (44_128, 2.21)  # 2,758 blocks / 1,250
    # vLLM 0.19: utilization 0.9 and the graphs outside the budget: 2,785 blocks
    old = serve(card, ServeConfig(gpu_total_bytes=RTX_3090, max_model_len=20000, version="0.19"), "bf16", "bf16")
    assert (old.cuda_graph_bytes, old.kv_cache_tokens) == (0, 44_560)


def test_too_little_free_memory_for_the_budget():
    # at 0.99 of a 24 GiB card the CUDA context leaves less free than the budget: vLLM V1 refuses
    est = serve(load_card("llama-3.2-1b"), ServeConfig(gpu_total_bytes=RTX_3090, memory_fraction=0.99,
                                                       max_model_len=4096), "bf16", "bf16")
    assert not est.starts and est.error.startswith("Free memory on device (")


def test_sglang_token_pool_by_hand():
    # mem_fraction_static 0.8 of what is free before the weights (total - CUDA context); the cell of
    # llama-3-8b is 32 layers x 2 x 8 x 128 x 2 B = 131,072 B per token.
    from llmcalc import calibration

    card = load_card("llama-3-8b")
    est = serve(card, ServeConfig(engine="sglang", gpu_total_bytes=80 * GiB, memory_fraction=0.8), "bf16", "bf16")
    free = 80 * GiB - calibration.CUDA_CONTEXT_BYTES
    assert est.kv_cache_tokens == int((free - est.weights_bytes - free * 0.2) // 131_072)


def test_unmodelled_versions_are_refused():
    # 0.3 predates every release llmcalc read (0.4.0-0.8.5, benchmarks/serve/vllm-v0-accounting.md)
    with pytest.raises(InputError, match=r"^--engine-version 0.3: llmcalc models vllm 0.4, 0.5, 0.6.4, 0.6, 0.7, 0.8, 0.9, "
                                         r"0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.20, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, "
                                         r"0.27, 0.28, 0.29, 0.30, 0.31, 0.32, 0.33 \(docs/serve.md"):
        serve(load_card("llama-3-8b"), ServeConfig(version="0.3", gpu_total_bytes=GiB), "bf16", "bf16")


def test_vllm_04_to_064_budgets():
    """vLLM V0 before memory_profiling (vllm-v0-accounting.md 1.1-1.2): 0.4.0-0.6.3 subtract the
    device's free-memory drop since start-up (weights, the profile's activations, non-torch growth;
    the CUDA context outside), 0.6.4 the allocated peak plus every non-torch byte on the device (the
    context inside)."""
    from llmcalc import calibration
    from llmcalc.serving import NON_TORCH_BYTES

    card = load_card("llama-3-8b")
    kw = dict(gpu_total_bytes=int(79.22 * GiB), gpu_name="NVIDIA H100 80GB HBM3", max_model_len=8192)
    old, v064, v065 = (serve(card, ServeConfig(version=v, **kw), "bf16", "bf16") for v in ("0.5", "0.6.4", "0.6"))
    # same profile run (8,192 tokens over 256 sequences) and weights in all three
    assert old.activation_peak_bytes == v064.activation_peak_bytes == v065.activation_peak_bytes == 1_350_434_816
    assert old.non_torch_bytes == v065.non_torch_bytes == NON_TORCH_BYTES
    assert v064.non_torch_bytes == NON_TORCH_BYTES + calibration.CUDA_CONTEXT_BYTES
    # the context inside the budget: 676 MiB fewer for the cache, 338 blocks of 2 MiB
    assert old.kv_available_bytes - v064.kv_available_bytes == calibration.CUDA_CONTEXT_BYTES
    assert old.kv_cache_tokens - v064.kv_cache_tokens == 338 * 16
    # chunked prefill by default above 32K tokens from 0.5.3 ("0.5"): 512 tokens in the profile;
    # 0.4.0-0.5.2 ("0.4") prefill the whole context
    long = {**kw, "max_model_len": 65536}
    assert serve(card, ServeConfig(version="0.5", **long), "bf16", "bf16").max_num_batched_tokens == 512
    assert serve(card, ServeConfig(version="0.4", **long), "bf16", "bf16").max_num_batched_tokens == 65536


def test_vllm_08_v1_counts_the_context_and_sizes_by_memory():
    """V1 as 0.8.x's default engine: 0.9's profile run and blocks, but the budget charges the CUDA
    context (the 0.6.4 formula), and 0.8.5 picks its defaults by memory (an A100 80GB is big)."""
    from llmcalc import calibration

    card = load_card("llama-3-8b")
    kw = dict(gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA A100-SXM4-80GB", max_model_len=8192)
    v08, v09 = (serve(card, ServeConfig(version=v, **kw), "bf16", "bf16") for v in ("0.8", "0.9"))
    assert (v08.max_num_batched_tokens, v08.max_num_seqs) == (8192, 1024)
    assert (v09.max_num_batched_tokens, v09.max_num_seqs) == (2048, 256)  # 0.9 leaves A100s out
    assert v08.non_torch_bytes - v09.non_torch_bytes == calibration.CUDA_CONTEXT_BYTES


def test_cli_json_contract_and_exit_code():
    runner = CliRunner()
    ok = runner.invoke(app, ["serve", "llama-3.1-8b", "--gpu", "rtx-3090", "--max-model-len", "20000", "--json"])
    assert ok.exit_code == 0
    doc = json.loads(ok.output)["serve"]
    assert set(doc) >= {"weights_bytes", "non_torch_bytes", "activation_peak_bytes", "cuda_graph_bytes",
                        "kv_cache_bytes", "kv_cache_tokens", "kv_block_size", "max_concurrency", "starts", "error"}
    assert doc["kv_cache_tokens"] == 44_128 and doc["cuda_graph_bytes"] == 550_476 * 1024  # the worked example
    failed = runner.invoke(app, ["serve", "llama-3.1-8b", "--gpu", "rtx-3090", "--max-model-len", "131072"])
    assert failed.exit_code == 1
    missing = runner.invoke(app, ["serve", "llama-3.1-8b"])
    assert missing.exit_code == 2 and "give --gpu ID or --gpu-memory GiB" in missing.output


def test_sliding_window_layers_share_the_hybrid_allocators_pool():
    # gemma-3-1b: 22 sliding (window 512) and 4 global layers, 1 kv head x 256 in bf16: a page is
    # 2 x 256 x 2 B x 16 = 16 KiB. Chunks of the smaller kind's 4 layers: 6 sliding chunks (the last
    # padded) and 1 global: 7. 1 GiB -> 1 GiB // 16 KiB // 4 = 16,384 blocks, 16,384 // 7 x 16 =
    # 37,440 tokens. A 32,768-token request: the global chunk 2,048 blocks, each sliding chunk
    # cdiv(min(511 + 2,048, 32,768), 16) + 1 = 161: 2,048 + 6 x 161 = 3,014 blocks -> 5.44x.
    card = load_card("gemma-3-1b")
    config = ServeConfig(gpu_total_bytes=24 * GiB, max_model_len=32768)
    kv, tokens, concurrency, _ = _vllm_kv(card, config, _kv_groups(card, config, 2, 1), GiB, 16, 32768, 2048)
    assert (kv, tokens, round(concurrency, 2)) == (GiB, 37_440, round(16_384 / 3_014, 2))


def test_mxfp4_experts_as_vllms_marlin_backend_pads_them():
    # gpt-oss-20b on vLLM's Marlin MXFP4 path: hidden 2,880 -> 3,072 (multiple of 256), intermediate
    # 2,880 -> 2,944 (multiple of 128). Per expert: 3 x 2,944 x 3,072 = 27,131,904 weights x 17/32 B
    # = 14,413,824 B, biases (2 x 2,944 + 3,072) x 2 B = 17,920 B; 32 experts x 24 layers =
    # 11,083,579,392 B. Everything else in bf16 (the experts' 19,110,297,600 weights and 215,040
    # bias elements excepted), and the rotary cache 131,072 x 64 x 2 B.
    card = load_card("gpt-oss-20b")
    experts = 24 * 32 * (14_413_824 + 17_920)
    rest = (card.num_params - 19_110_297_600 - 24 * 32 * (2 * 2880 + 2880)) * 2 + 131_072 * 64 * 2
    weights, _ = weights_per_rank(card, "mxfp4", "bf16", 1, 1)
    assert experts == 11_083_579_392
    assert weights == experts + rest
    assert round(weights / GiB, 2) == 13.69  # a public vLLM log on an A100: "Model loading took 13.72 GiB"


def test_the_inverse_finds_the_least_fraction_then_the_fewest_gpus():
    from llmcalc.serving import size_for

    h100 = ServeConfig(gpu_total_bytes=int(79.22 * GiB), gpu_name="NVIDIA H100 80GB HBM3", max_model_len=8192)
    card = load_card("llama-3.1-8b")
    one = size_for(card, h100, "bf16", "bf16", 16)
    # 16 x 8,192 tokens x 128 KiB = 16 GiB of cache, 14.99 GiB of weights, 0.25 non-torch, the
    # profile run's 1.88 GiB and the CUDA-graph estimate's 0.84: 33.96 GiB of 79.22 = 0.429, so 0.43
    assert (one.tp, one.memory_fraction) == (1, 0.43)
    # the answer holds the requests, and one hundredth less does not
    assert serve(card, ServeConfig(**{**h100.__dict__, "memory_fraction": 0.43}), "bf16", "bf16").max_concurrency >= 16
    assert serve(card, ServeConfig(**{**h100.__dict__, "memory_fraction": 0.42}), "bf16", "bf16").max_concurrency < 16
    # 64 requests need 64 x 8,192 x 128 KiB = 64 GiB of cache besides 15 GiB of weights: two GPUs
    assert size_for(card, h100, "bf16", "bf16", 64).tp == 2
    assert size_for(load_card("llama-3.1-405b"), ServeConfig(gpu_total_bytes=RTX_3090), "bf16", "bf16", 2).tp is None


def test_a_multimodal_checkpoint_loads_its_vision_encoder_and_both_rotary_caches():
    # gemma-3-4b-it in vLLM: the text model, plus the SigLIP encoder and projector in bf16
    # (419,816,304 x 2 B), plus the full-attention layers' rotary cache, whose linear scaling by 8
    # makes 131,072 x 8 rows of head_dim 256 in bf16 (536,870,912 B) beside the sliding layers' one.
    from dataclasses import replace as dc_replace

    card = load_card("gemma-3-4b")
    text_only = dc_replace(card, vision_params=0, vision_replicated_params=0, rope_cache_rows=())
    h100 = ServeConfig(gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA H100 80GB HBM3", max_model_len=8192)
    full, text = serve(card, h100, "bf16", "bf16").weights_bytes, serve(text_only, h100, "bf16", "bf16").weights_bytes
    assert full - text == 419_816_304 * 2 + 131_072 * 8 * 256 * 2
    # at TP 4 every rank holds the replicated 8,536,320 whole and a quarter of the rest
    tp4 = ServeConfig(**{**h100.__dict__, "tp": 4})
    text4 = serve(text_only, tp4, "bf16", "bf16").weights_bytes
    assert serve(card, tp4, "bf16", "bf16").weights_bytes - text4 == (
        2 * (8_536_320 + (419_816_304 - 8_536_320) // 4) + 131_072 * 8 * 256 * 2)


def test_vllm_v0_profile_run_and_budget():
    # vLLM V0 0.6.5-0.7.3 (--engine-version 0.6/0.7), Llama-3-8B at max_model_len 8192: the profile
    # prefills max(8192, 2048) tokens over 256 sequences; its sampler (one row of 128,256 logits per
    # sequence, sorted: 38 B per entry) beats the forward (8,192 x 2 x 55,296 B): 256 x 128,256 x 38
    # + (8,192 + 256) x 4,096 x 2 B, plus Hopper's 32 MiB cuBLAS workspace = 1.26 GiB, as PR
    # #10511's log prints ("PyTorch activation peak memory takes 1.26GiB")
    card = load_card("llama-3-8b")
    config = ServeConfig(version="0.6", gpu_total_bytes=int(79.22 * GiB), gpu_name="NVIDIA H100 80GB HBM3",
                         max_model_len=8192)
    est = serve(card, config, "bf16", "bf16")
    assert est.max_num_batched_tokens == 8192 and est.max_num_seqs == 256
    assert est.activation_peak_bytes == 256 * 128_256 * 38 + (8192 + 256) * 4096 * 2 + 32 * 2**20 == 1_350_434_816
    # one block table over every layer: 16 tokens x 32 layers x 2 x 8 heads x 128 x 2 B = 2 MiB a block
    assert est.kv_block_bytes == 2 * 2**20
    assert est.kv_cache_tokens == est.kv_available_bytes // est.kv_block_bytes * 16
    # above 32,768 tokens of context V0 turns chunked prefill on: the profile prefills 2,048 tokens
    long = serve(card, ServeConfig(**{**config.__dict__, "max_model_len": 65536}), "bf16", "bf16")
    assert long.max_num_batched_tokens == 2048
    # V0's own messages when it cannot start
    small = serve(card, ServeConfig(version="0.7", gpu_total_bytes=16 * GiB, max_model_len=8192), "bf16", "bf16")
    assert not small.starts and small.error.startswith("No available memory for the cache blocks.")
    tight = serve(card, ServeConfig(version="0.7", gpu_total_bytes=18 * GiB, max_model_len=8192,
                                    memory_fraction=0.95), "bf16", "bf16")
    assert not tight.starts and tight.error == ("The model's max seq len (8192) is larger than the maximum number of "
                                                 "tokens that can be stored in KV cache (5360). Try increasing "
                                                 "`gpu_memory_utilization` or decreasing `max_model_len` when "
                                                 "initializing the engine.")


def test_nccl_nvls_buffers_only_on_nvswitch_boards():
    # the 1.84 GiB more per rank under TP that vLLM logs on H100 SXM boards (NCCL's NVLink SHARP
    # buffers) is absent from every TP log without an NVSwitch of Hopper or later: GeForce cards
    # (RTX 4090 at TP 2: 0.25 GiB), 4 A10s, 8 L4s
    from llmcalc.serving import NON_TORCH_BYTES, NON_TORCH_TP_BYTES, non_torch_bytes

    for name in ("NVIDIA GeForce RTX 4090", "NVIDIA A10", "NVIDIA L4", "NVIDIA A100 80GB SXM", "NVIDIA H100 80GB PCIe",
                 "NVIDIA H100 NVL"):
        assert non_torch_bytes(2, 1, name) == NON_TORCH_BYTES == int(0.25 * GiB), name
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA H200 (SXM)", "NVIDIA B200", ""):
        assert non_torch_bytes(2, 1, name) == NON_TORCH_TP_BYTES == int(2.09 * GiB), name
    assert non_torch_bytes(1, 1, "NVIDIA H200 (SXM)") == NON_TORCH_BYTES


def test_engine_options_quantization_dp_eager_prefix_caching():
    runner = CliRunner()
    args = ["serve", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--max-model-len", "8192", "--json"]
    plain = json.loads(runner.invoke(app, args).output)
    fp8 = json.loads(runner.invoke(app, [*args, "--quantization", "fp8", "--dp", "2", "--enforce-eager",
                                         "--enable-prefix-caching"]).output)
    # vLLM's runtime fp8: per-channel fp8 linears, bf16 embedding and lm_head (8.49 GiB in vLLM 0.19's log)
    assert fp8["weights_dtype"] == "fp8-channel" and round(fp8["serve"]["weights_bytes"] / GiB, 2) == 8.49
    # two replicas, each an engine with this budget: twice the concurrency in all
    assert fp8["serve"]["data_parallel"] == 2
    assert fp8["serve"]["max_concurrency_all_replicas"] == pytest.approx(2 * fp8["serve"]["max_concurrency"], abs=0.01)
    assert plain["serve"]["kv_cache_tokens"] < fp8["serve"]["kv_cache_tokens"]  # smaller weights, no graphs
    # prefix caching changes nothing at start-up; eager mode captures no graphs, so from 0.20 the
    # budget keeps what their estimate took (0.84 GiB here, 6,880 tokens of 128 KiB), and in 0.19 it
    # changes nothing (the graphs were outside the budget)
    eager = json.loads(runner.invoke(app, [*args, "--enforce-eager", "--enable-prefix-caching"]).output)
    assert plain["serve"]["cuda_graph_bytes"] > 0 == eager["serve"]["cuda_graph_bytes"]
    gained = (eager["serve"]["kv_cache_tokens"] - plain["serve"]["kv_cache_tokens"]) * 131_072
    assert abs(plain["serve"]["cuda_graph_bytes"] - gained) < 16 * 131_072  # within one block of 16 tokens
    old = [*args, "--engine-version", "0.19"]
    same = json.loads(runner.invoke(app, [*old, "--enforce-eager", "--enable-prefix-caching"]).output)
    assert same["serve"]["kv_cache_tokens"] == json.loads(runner.invoke(app, old).output)["serve"]["kv_cache_tokens"]
    awq = runner.invoke(app, [*args, "--quantization", "awq"])
    assert awq.exit_code == 2 and awq.stderr.strip() == (
        "error: --quantization awq reads a quantized checkpoint's config, and llama-3.1-8b has none: name the "
        "checkpoint (its config.json or Hub ID) or give --dtype (docs/models.md)")


def test_the_profile_run_by_release():
    # vLLM's sampler sorts in PyTorch up to 0.16 (~40 B per vocabulary entry beside the bf16 logits)
    # and runs the in-place Triton kernel from 0.17 (12 B, plus 132 fp32 rows of the vocabulary);
    # the MoE workspace is persistent from 0.14 (benchmarks/serve/vllm-0.12-0.18.md). Qwen3-30B-A3B
    # on an H100 at the defaults (8,192 tokens, 1,024 requests, vocabulary 151,936):
    card = load_card("qwen3-30b-a3b")
    h100 = dict(gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA H100 80GB HBM3", max_model_len=8192)
    peak = {v: serve(card, ServeConfig(version=v, **h100), "bf16", "bf16").activation_peak_bytes
            for v in ("0.13", "0.14", "0.16", "0.17")}
    held = (8192 + 2 * 1024) * 2048 * 2 + 32 * 2**20  # hidden states and the cuBLAS workspace
    sort = 1024 * 151_936 * (2 + 40)
    workspace = 8192 * 8 * (max(768, 2048) + max(2 * 768, 2048)) * 2  # k = 8, I_e = 768, H = 2,048
    assert peak["0.13"] == held + sort
    assert peak["0.14"] == peak["0.16"] == held + sort + workspace
    assert peak["0.17"] == held + workspace + 1024 * 151_936 * (2 + 12) + 132 * 151_936 * 4


def test_tp_over_pcie_charges_no_nvls_buffers():
    runner = CliRunner()

    def non_torch(gpu: str) -> float:
        doc = json.loads(runner.invoke(app, ["serve", "llama-3.1-8b", "--gpu", gpu, "--tp", "2", "--json"]).output)
        return doc["serve"]["non_torch_bytes"] / GiB

    assert non_torch("l40s") == pytest.approx(0.25, abs=1e-9)
    assert non_torch("h100-sxm-80gb") == pytest.approx(2.09, abs=1e-9)


def test_sglang_0_4_default_fraction_and_multimodal_cut():
    # SGLang 0.4.1-0.4.5 (server_args.py:187-197 in 0.4.1.post7): the default fraction by TP alone,
    # and ModelRunner's 5% cut for a multimodal model, a user-set fraction included. gemma-3-4b-it on
    # a 139.8 GiB card at 0.88 (sglang PR #4826): 0.88 x 0.95 = 0.836 of the memory free before the
    # weights, which gives the logged pool within 0.5% (834,615 tokens).
    from llmcalc import api

    def fraction(model: str, **kw: object) -> float:
        d = api.serve(model, engine="sglang", engine_version="0.4", gpu_memory=79.19, **kw).to_dict()["serve"]
        free_before = 79.19 * 2**30 - d["non_torch_bytes"]
        return round(d["budget_bytes"] / free_before, 4)

    assert [fraction("llama-3.1-8b", tp=t) for t in (1, 2, 4, 8)] == [0.88, 0.87, 0.85, 0.81]
    assert fraction("gemma-3-4b", mem_fraction_static=0.88) == round(0.88 * 0.95, 4)
    d = api.serve("gemma-3-4b", engine="sglang", engine_version="0.4", gpu_memory=139.8,
                  mem_fraction_static=0.88).to_dict()["serve"]
    assert abs(d["kv_cache_tokens"] - 834_615) / 834_615 < 0.01


def test_sglang_0_4_8_default_fraction_by_memory_tier():
    # SGLang 0.4.8-0.5.2 (PR #7054): round((gpu_mem - reserved) / gpu_mem, 3), reserved by tier:
    # a 23.58 GiB card (24,146 MiB) at TP 1 reserves 2.8 + 0.1 = 2.9 GiB: (24,146 - 2,969.6) /
    # 24,146 = 0.877; an H100 (79.19 GiB, 81,090 MiB) at TP 2 reserves 9.5 + 1.0 = 10.5 GiB:
    # (81,090 - 10,752) / 81,090 = 0.867.
    from llmcalc.serving import ServeConfig, _sglang_fraction

    small = ServeConfig(engine="sglang", gpu_total_bytes=int(23.58 * 2**30))
    h100 = ServeConfig(engine="sglang", gpu_total_bytes=int(79.19 * 2**30), tp=2)
    assert _sglang_fraction(small, 8192, "0.4.8") == 0.877
    assert _sglang_fraction(h100, 8192, "0.4.8") == 0.867


def test_sglang_0_4_6_and_0_4_7_default_fraction():
    # server_args.py in 0.4.6.post5 / 0.4.7: the TP tiers up to 81,920 MiB, else 0.88; above 96 GiB
    # min(m + 48 GiB x (1 - m) / gpu_mem, (gpu_mem - 18 GiB) / gpu_mem); 0.4.7: 0.79 above 180,000 MiB
    from llmcalc import api
    from llmcalc.serving import _sglang_fraction

    def f(gib: float, version: str, tp: int = 1) -> float:
        return _sglang_fraction(ServeConfig(engine="sglang", gpu_total_bytes=int(gib * GiB), tp=tp), 8192, version)

    assert f(79.19, "0.4.6") == 0.88 and f(79.19, "0.4.6", tp=4) == 0.85  # 81,090 MiB: the tiers
    # an H200 (139.8 GiB = 143,155 MiB): min(0.88 + 49,152 x 0.12 / 143,155, (143,155 - 18,432) / 143,155)
    # = min(0.9212, 0.8712)
    assert f(139.8, "0.4.6") == pytest.approx((143155.2 - 18432) / 143155.2)
    # 180 GiB (184,320 MiB): 0.4.7 takes 0.79, 0.4.6 min(0.88 + 0.032, 0.9)
    assert f(180, "0.4.7") == 0.79
    assert f(180, "0.4.6") == pytest.approx(min(0.88 + 49152 * 0.12 / 184320, (184320 - 18432) / 184320))
    # a multimodal model: x 0.90 in ModelRunner, a fraction the user set included
    d = api.serve("gemma-3-4b", engine="sglang", engine_version="0.4.6", gpu_memory=79.19,
                  mem_fraction_static=0.8).to_dict()["serve"]
    assert d["explain"]["budget"].startswith("mem_fraction_static 0.720 ")


def test_multimodal_profile_keeps_its_images_and_embeddings():
    """vLLM 0.19's profile run keeps its dummy images (pixel values in bf16) and their embeddings
    in the encoder cache until it ends (benchmarks/serve/vllm-multimodal-profile.md)."""
    from llmcalc.serving import multimodal_profile_bytes, profile_peak

    # Gemma 3 at 8,192 batched tokens: 8,192 // 256 = 32 images of 3 x 896 x 896 pixel values,
    # 32 x 2,408,448 x 2 B = 154,140,672, and 32 x 256 embeddings x 2,560 x 2 B = 41,943,040
    gemma = load_card("gemma-3-4b")
    assert multimodal_profile_bytes(gemma, 8192, 2) == 154_140_672 + 41_943_040
    # Llama 4 Scout: 8,192 // 2,448 = 3 images of 17 tiles: 3 x 5,757,696 x 2 + 3 x 2,448 x 5,120 x 2
    assert multimodal_profile_bytes(load_card("llama-4-scout"), 8192, 2) == 34_546_176 + 75_202_560
    # a budget below one image still profiles one: max(T, E) // E
    assert multimodal_profile_bytes(load_card("llama-4-scout"), 2048, 2) == 5_757_696 * 2 + 2448 * 5120 * 2
    assert multimodal_profile_bytes(load_card("llama-3.1-8b"), 8192, 2) == 0  # no vision tower
    text_only = replace(gemma, mm_tokens_per_image=None, mm_image_pixels=None)
    assert (profile_peak(gemma, 8192, 1024, 2, 1, "0.19") - profile_peak(text_only, 8192, 1024, 2, 1, "0.19")
            == 196_083_712)


def test_capture_sizes_by_version_gpu_and_model():
    from llmcalc.serving import capture_sizes

    llama, oss = load_card("llama-3.1-8b"), load_card("gpt-oss-20b")
    # [1, 2, 4] + 8..248 by 8 (31) + 256..512 by 16 (17) = 51 sizes up to min(2 x 1,024, 512, 8,192)
    assert len(capture_sizes(llama, "0.19", 1024, 8192)) == 51 and capture_sizes(llama, "0.19", 1024, 8192)[-1] == 512
    # gpt-oss raises the cap to 1,024 (GptOssForCausalLMConfig): 256..1,024 by 16 is 49, 83 in all,
    # as the 0.19 logs' "PIECEWISE=83 (largest=1024)"
    assert len(capture_sizes(oss, "0.19", 1024, 8192)) == 83
    # from 0.28 the cap is 1,024 on data-center Blackwell, 512 elsewhere
    assert len(capture_sizes(llama, "0.28", 1024, 16384, "NVIDIA B200")) == 83
    assert len(capture_sizes(llama, "0.27", 1024, 16384, "NVIDIA B200")) == 51
    # max_num_batched_tokens joins the list from 0.20(.1), max_num_seqs from 0.31, when <= the top
    assert 100 not in capture_sizes(llama, "0.30", 100, 8192) and 100 in capture_sizes(llama, "0.31", 100, 8192)
    assert capture_sizes(llama, "0.19", 256, 300)[-1] == 288 and capture_sizes(llama, "0.20", 256, 300)[-1] == 300


def test_which_model_runner_and_its_graph_estimate():
    from llmcalc.serving import default_utilization, model_runner

    llama, moe, gemma = load_card("llama-3.1-8b"), load_card("qwen3-30b-a3b"), load_card("gemma-2-9b")
    assert [model_runner(llama, v, False) for v in ("0.21", "0.22", "0.23", "0.25", "0.29")] == \
        ["v1", "v1", "v2", "v2", "v2"]
    assert model_runner(llama, "0.23", True) == "v1"  # 0.23 keeps quantized models on V1
    # 0.25-0.28: V2 for models neither MoE nor hybrid (Gemma 2's sliding layers make it hybrid)
    assert (model_runner(moe, "0.28", False), model_runner(gemma, "0.28", False)) == ("v1", "v1")
    assert (model_runner(moe, "0.29", False), model_runner(gemma, "0.29", False)) == ("v2", "v2")
    assert (default_utilization("0.19"), default_utilization("0.20"), default_utilization("0.33")) == (0.9, 0.92, 0.92)
    h100 = ServeConfig(gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA H100 80GB HBM3", max_model_len=8192,
                       memory_fraction=0.9)

    def graphs(card, version, **kw):
        return serve(card, replace(h100, version=version, **kw), "bf16", "bf16").cuda_graph_bytes

    # 0.19 keeps the graphs out of the budget; V2 in 0.22-0.28 estimates 0; V1 there and V2 from
    # 0.29 subtract an estimate; --enforce-eager captures none
    assert graphs(llama, "0.19") == 0 == graphs(llama, "0.25") == graphs(llama, "0.33", enforce_eager=True)
    assert graphs(moe, "0.25") > 0 and graphs(llama, "0.21") > 0
    # V2 from 0.29 captures every PIECEWISE graph and adds the FULL graphs' first capture to it
    # instead of taking the larger of the two: more than V1's extrapolation
    assert graphs(llama, "0.29") > graphs(llama, "0.21")
    # fewer sequences, fewer FULL graphs (sizes up to max_num_seqs) and a smaller estimate
    assert graphs(llama, "0.33", max_num_seqs=64) < graphs(llama, "0.33")


def test_sglang_0_5_default_fraction_tiers_and_prefill_graphs():
    """SGLang 0.5.3-0.5.23 (benchmarks/serve/sglang-latest.md): round((gpu_mem - reserved) /
    gpu_mem, 3) of nvidia-smi's total, reserved = 512 + 1.5 max(chunk, 2,048) + 2 x decode max
    batch + TP x PP / 8 x 1,024 MiB (+ 8 MiB per prefill graph size from 0.5.10), >= 10 GiB above
    60 GiB."""
    from llmcalc.serving import _prefill_buckets, _sglang_fraction, _sglang_tier

    def f(smi_mib: int, version: str, tp: int = 1, **kw) -> float:
        c = ServeConfig(engine="sglang", gpu_total_bytes=smi_mib * 2**20, gpu_smi_bytes=smi_mib * 2**20, tp=tp)
        return _sglang_fraction(c, _sglang_tier(c, version)[0], version, **kw)

    assert [_prefill_buckets(n) for n in (2048, 4096, 8192, 16384)] == [42, 50, 58, 74]
    # H100 (81,559 MiB): 512 + 1.5 x 8,192 + 2 x 256 + 128 + 8 x 58 = 13,904 -> 0.830 (a 0.5.10+ log's default)
    assert f(81559, "0.5.20") == 0.830
    assert f(81559, "0.5") == round((81559 - 13440) / 81559, 3) == 0.835  # no prefill graphs before 0.5.10
    # B200 (183,359 MiB): 512 + 1.5 x 16,384 + 2 x 512 + 128 + 8 x 74 = 26,832 -> 0.854
    assert f(183359, "0.5.20") == 0.854
    # an RTX 4090 (24,564 MiB): 0.5.20 chunks 4,096 with decode graphs to 48: 512 + 6,144 + 96 + 128
    # + 8 x 50 = 7,280 -> 0.704; 0.5.10-0.5.19 chunked 2,048 to 24: 512 + 3,072 + 48 + 128 + 336 -> 0.833
    assert (f(24564, "0.5.20"), f(24564, "0.5.10")) == (0.704, 0.833)
    # MLA's prefill graphs reserve a flat 1,536 MiB; a multimodal model captures none
    assert f(81559, "0.5.20", mla=True) == round((81559 - 13440 - 1536) / 81559, 3)
    assert f(81559, "0.5.20", multimodal=True) == 0.835


def test_sglang_hybrid_sliding_pool_and_the_weights_error():
    # 0.5.10 on, GPT-OSS's 12 full and 12 sliding layers: a cell of full + 0.8 x sliding, so
    # 24 / (12 + 9.6) = 1.11x the tokens of the all-full cell "0.5" gives
    card = load_card("gpt-oss-20b")
    c = ServeConfig(engine="sglang", gpu_total_bytes=int(79.19 * GiB), memory_fraction=0.85)
    old = serve(card, replace(c, version="0.5"), "mxfp4", "bf16").kv_cache_tokens
    new = serve(card, replace(c, version="0.5.20"), "mxfp4", "bf16").kv_cache_tokens
    assert new / old == pytest.approx(24 / 21.6, rel=1e-4)
    # weights beyond the fraction: 0.5.14 on names the least fraction that leaves any pool
    est = serve(load_card("llama-3.1-70b"), replace(c, version="0.5.20", memory_fraction=0.5), "bf16", "bf16")
    assert not est.starts and est.error.startswith(
        "Loaded weights leave no GPU memory for the KV cache under --mem-fraction-static=0.5. Raise "
        "--mem-fraction-static above ")


def test_the_table_shows_the_graph_estimate_where_the_budget_holds_it():
    runner = CliRunner()
    args = ["serve", "llama-3.1-8b", "--gpu", "rtx-3090", "--max-model-len", "20000"]
    now = " ".join(runner.invoke(app, args).output.split())
    old = " ".join(runner.invoke(app, [*args, "--engine-version", "0.19"]).output.split())
    # 550,476 KiB = 0.52 GiB (the worked example); 0.19 leaves the graphs out of its budget
    assert "CUDA graphs (estimate) │ 0.52 │" in now and "CUDA graphs" not in old


def test_gated_delta_net_hybrid_by_hand():
    # club-3090 #652 (vLLM 0.24.0, RTX 5090): Qwen3.6-35B-A3B, TP 1, fp8 KV, prefix caching, 131,072 tokens,
    # "Available KV cache memory: 6.01 GiB". A GDN layer's state per request: conv 8,192 channels x (4 - 1)
    # x 2 B = 49,152 and the fp32 recurrent state 32 x 128 x 128 x 4 = 2,097,152 -> 2,146,304 B. Attention
    # per token and layer 2 x 2 heads x 256 x 1 B = 1,024 -> block 16 x cdiv(2,146,304, 16 x 1,024) = 2,096
    # tokens, page 2,146,304 B. 10 attention and 30 GDN layers: groups of 10 (1 + 3 groups); the pool
    # int(6.01 GiB / (10 x 2,146,304)) = 300 blocks; a request cdiv(131,072, 2,096) = 63 attention blocks
    # + 3 GDN groups x 2 ("align") = 69: concurrency 300 / 69 = 4.35, tokens int(4.3478 x 131,072) = 569,878,
    # as logged.
    from llmcalc.serving import _vllm_gdn_kv, gdn_layout
    card = load_card("qwen3.6-35b-a3b")
    c = ServeConfig(gpu_total_bytes=32 * GiB, kv_cache_dtype="fp8", prefix_caching=True)
    g = gdn_layout(card, c, "0.24", 131_072, 1, 2)
    assert (g.state, g.block, g.page, g.group, g.per_request) == (2_146_304, 2_096, 2_146_304, 10, 69)
    kv, tokens, conc, error, block, _, _ = _vllm_gdn_kv(card, c, "0.24", int(6.01 * GiB), 131_072, 1, 2)
    assert (kv, tokens, round(conc, 2), error, block) == (300 * 10 * 2_146_304, 569_878, 4.35, None, 2_096)
    # from 0.28 prefix caching is the default for hybrids; before it, off: one GDN block per group fewer
    assert gdn_layout(card, replace(c, prefix_caching=None), "0.27", 131_072, 1, 2).per_request == 66
    assert gdn_layout(card, replace(c, prefix_caching=None), "0.28", 131_072, 1, 2).per_request == 69
    # 0.33 on Hopper keeps a FlashInfer prefill checkpoint: blocks of a multiple of 64 (2,112) and 3 a group
    hopper = gdn_layout(card, replace(c, gpu_name="NVIDIA H100 80GB HBM3"), "0.33", 131_072, 1, 2)
    assert (hopper.block, hopper.gdn_blocks) == (2_112, 3)


def test_mtp_drafting_joins_the_attention_layers():
    # club-3090 #594 (vLLM 0.24.0): Qwen3.6-27B TP 2, fp8 KV, MTP 3, prefix caching, 262,144 tokens, 5.33 GiB.
    # conv 10,240 / 2 x (3 + 3) x 2 = 61,440 + recurrent 24 x 128 x 128 x 4 = 1,572,864 -> 1,634,304 B;
    # attention 2 x 2 x 256 x 1 = 1,024 B a token -> block 1,600; 16 + 1 MTP attention layers against 48 GDN:
    # groups of 17 (1 + 3); a request 164 + 3 x (2 + 3) = 179 blocks; int(5.33 GiB / (17 x 1,638,400)) = 205
    # blocks: 1.15x, 300,220 tokens, as logged.
    from llmcalc.serving import _vllm_gdn_kv
    card = load_card("qwen3.6-27b")
    c = ServeConfig(gpu_total_bytes=24 * GiB, tp=2, kv_cache_dtype="fp8", prefix_caching=True, num_speculative_tokens=3)
    _, tokens, conc, _, block, _, _ = _vllm_gdn_kv(card, c, "0.24", int(5.33 * GiB), 262_144, 1, 2)
    assert (tokens, round(conc, 2), block) == (300_220, 1.15, 1_600)


def test_gated_delta_net_serving_limits_are_said():
    runner = CliRunner()
    base = ["serve", "qwen3.6-27b", "--gpu-memory", "79", "--json"]
    out = runner.invoke(app, [*base, "--engine", "sglang", "--engine-version", "0.4.8"])
    assert out.exit_code == 2
    assert "qwen3.6-27b: Gated DeltaNet layers are modelled for vLLM from 0.20 and SGLang from 0.5" in out.output
    out = runner.invoke(app, [*base, "--engine-version", "0.19"])
    assert out.exit_code == 2
    out = runner.invoke(app, [*base, "--tp", "32"])
    assert out.exit_code == 2 and "--tp 32 does not divide" in out.output
    out = runner.invoke(app, ["serve", "llama-3.1-8b", "--gpu-memory", "79", "--num-speculative-tokens", "2"])
    assert out.exit_code == 2
    assert "--num-speculative-tokens: llama-3.1-8b has no MTP layers to draft with (card key mtp_layers)" in out.output
    # a start: the enlarged block and the cache as JSON
    doc = json.loads(runner.invoke(app, [*base, "--dtype", "fp8", "--max-model-len", "32768"]).output)
    assert doc["serve"]["kv_block_size"] == 784 and doc["serve"]["starts"] is True


def test_sglang_mamba_pool_by_hand():
    # ktransformers #1870 (SGLang 0.5.9, two RTX 4090s): Qwen3.5-397B-A17B at TP 2, 22.84 GiB free before the
    # weights, 19.08 after, --mem-fraction-static 0.85: rest = 19.08 - 22.84 x 0.15 = 15.654 GiB. A slot: 45 GDN
    # layers x (12,288 conv channels (2 x 16 x 128 + 64 x 128) / 2 x 3 x 2 B + 64 / 2 value heads x 128 x 128 x 4 B)
    # = 45 x 2,134,016 = 96,030,720 B (91.58 MiB, as logged); the pool int(rest x 0.9 / 1.9 / slot) = 82 slots (as
    # logged), 7.33 GiB; the full-attention
    # KV, 15 layers x 2 x 1 head x 256 x 2 B = 15,360 B a token, gets the rest: 581,629 tokens (logged 580,364)
    from llmcalc.serving import _sglang_mamba
    card = load_card("qwen3.5-397b-a17b")
    c = ServeConfig(engine="sglang", version="0.5", tp=2, gpu_total_bytes=int(22.84 * GiB))
    rest = (19.08 - 22.84 * 0.15) * GiB
    mamba, slots, requests, _, error = _sglang_mamba(card, c, "0.5", rest, 2)
    assert (mamba, slots, requests, error) == (82 * 96_030_720, 82, 82 // 3, None)
    assert int((rest - mamba) // 15_360) == 581_629
    # 0.5.17 on logs one slot fewer; too little memory is SGLang's own message
    assert _sglang_mamba(card, c, "0.5.20", rest, 2)[1:3] == (81, 81 // 5)
    error = _sglang_mamba(card, c, "0.5.20", 0.1 * GiB, 2)[4]
    assert error.startswith("Not enough GPU memory for hybrid (mamba/linear-attention) state cache. "
                            "Computed max_mamba_cache_size=-1 (total_rest_memory=0.10 GB, mamba_cache_per_req=91.58 MB)")
    # through serve: the running requests are capped at the slots / 5
    est = serve(card, ServeConfig(engine="sglang", tp=8, gpu_total_bytes=int(139 * GiB), gpu_smi_bytes=143_771 * 2**20,
                                  max_model_len=262_144), "fp8-block", "bf16")
    assert est.starts and est.max_num_seqs <= int(est.explain["gdn"].split(" slots")[0].split()[-1]) // 5


def test_sglang_default_fraction_for_qwen3_6():
    # SGLang 0.5.20 (benchmarks/serve/sglang-hybrid-gdn.md section 6): the vision factor reads the vision
    # config's num_hidden_layers, which Qwen3.5/3.6's lacks, so 24 layers of width 1,152: 0.95 x (1.1 - 0.1 x
    # 1,152^2 / 1,024^2) = 0.92477; and from 0.5.16 the prefill graphs are captured for these multimodal
    # architectures too. On an H100 (81,559 MiB) at TP 1 and an RTX 5090 at TP 2: 0.768 and 0.715.
    from llmcalc.hardware import get_gpu
    from llmcalc.serving import _sglang_vlm_factor
    card = load_card("qwen3.6-27b")
    assert round(_sglang_vlm_factor(card), 5) == 0.92477
    for gpu, tp, fraction in (("h100-sxm-80gb", 1, "0.768"), ("rtx-5090", 2, "0.715")):
        g = get_gpu(gpu)
        c = ServeConfig(engine="sglang", tp=tp, gpu_total_bytes=g.cuda_total_bytes or g.memory_bytes,
                        gpu_smi_bytes=g.memory_bytes, gpu_name=g.name)
        assert serve(card, c, "fp8-block", "bf16").explain["budget"].startswith(f"mem_fraction_static {fraction} ")
