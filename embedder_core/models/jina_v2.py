"""Native torch implementation of jina-embeddings-v2 (JinaBERT), written from the published
architecture: BERT with post-LayerNorm, no position table, symmetric ALiBi attention
biases, and a gated feed-forward (GEGLU or ReGLU).

Packed batches, as for jina-v3: the sequences of a batch are concatenated without padding
and every Linear runs once over all tokens. Attention runs per sequence, so a bias is only
ever built from one sequence's own positions and never spans two sequences.

Memory: the ALiBi bias ``-slope[h] * |i - j|`` is (heads, n, n); for one 8192-token input
at base size that is 3 GiB in float32. It is never built. With the queries taken in reversed
order the bias of every (query, key) pair is one entry of a (heads, 2n - 1) table, and
the (heads, n, n) matrix is a strided view of it (see ``_reversed_query_bias``):

- CPU: SDPA's fused kernel reads the view as it is, so the bias costs 2n floats per head
  (measured: one 8192-token attention at base size peaks 80 MiB above its inputs);
- CUDA (the memory-efficient SDPA kernel takes an additive bias in fp16/bf16/fp32, but a
  dense one): the view is copied one block of query rows at a time, at most
  ``_BIAS_BLOCK_ELEMENTS`` elements, in the model's dtype. Distances are computed in
  float32 and exact; only the product is rounded to the dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..loading import check_tensor_accounting, iter_safetensors
from ..model_info import V2_BASE_CODE_REFUSAL, JinaV2Config
from .base import NativeEncoder, PackedBatch
from .quantization import Int8Linear, check_int8_ready, quantize_linear_layers

__all__ = ["JinaV2Model", "alibi_slopes", "expected_v2_tensors"]

#: The most bias elements built at once (32 MiB in float32): a query block of a long
#: sequence has at most this many (heads x rows x n). For base size (12 heads) a sequence
#: of up to 836 tokens gets its whole bias at once; 8192 tokens run in blocks of 85 rows.
_BIAS_BLOCK_ELEMENTS = 1 << 23

#: Checkpoint tensors the model never reads, by name prefix, and why.
UNUSED_V2_TENSORS = {
    "pooler.": "the CLS pooler (pooler.dense): embeddings pool by mean, never through it",
}
#: Tensor names of the qk-post-norm variant (jina-embeddings-v2-base-code).
_QK_POST_NORM_MARKERS = ("layer_norm_q", "layer_norm_k", "up_gated_layer", "down_layer")


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi slopes (float32): a geometric sequence for a power-of-two head count; otherwise
    the p slopes of the largest power of two p below, then every other slope of 2p heads
    for the remaining heads (6 heads: 1/4, 1/16, 1/64, 1/256, 1/2, 1/8)."""

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start ** (k + 1) for k in range(n)]

    if heads < 1:
        raise ValueError(f"heads must be positive, got {heads}")
    power = 2 ** math.floor(math.log2(heads))
    slopes = geometric(power)
    if power != heads:
        slopes += geometric(2 * power)[0::2][: heads - power]
    return torch.tensor(slopes, dtype=torch.float32)


def expected_v2_tensors(config: JinaV2Config) -> dict[str, tuple[int, ...] | None]:
    """Every tensor the model reads, with its shape, named as released (no ``bert.``)."""
    h, inner = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...] | None] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(config.num_hidden_layers):
        layer = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            shapes[f"{layer}.attention.self.{name}.weight"] = (h, h)
            shapes[f"{layer}.attention.self.{name}.bias"] = (h,)
        shapes[f"{layer}.attention.output.dense.weight"] = (h, h)
        shapes[f"{layer}.attention.output.dense.bias"] = (h,)
        shapes[f"{layer}.attention.output.LayerNorm.weight"] = (h,)
        shapes[f"{layer}.attention.output.LayerNorm.bias"] = (h,)
        shapes[f"{layer}.mlp.gated_layers.weight"] = (2 * inner, h)
        shapes[f"{layer}.mlp.wo.weight"] = (h, inner)
        shapes[f"{layer}.mlp.wo.bias"] = (h,)
        shapes[f"{layer}.mlp.layernorm.weight"] = (h,)
        shapes[f"{layer}.mlp.layernorm.bias"] = (h,)
    return shapes


def _frozen_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding the given tensors (so int8 quantization finds it)."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=False)
    return linear


@dataclass(frozen=True)
class AlibiLayout:
    """Per-batch attention plan: each sequence's (start, length) in the packed tokens, and
    whether SDPA gets the bias as dense blocks (CUDA) or as the strided view (CPU)."""

    spans: list[tuple[int, int]]
    dense_bias: bool
    #: Token index of the packed batch with each sequence's tokens in reversed order.
    reverse_index: torch.Tensor


class JinaV2Layer(nn.Module):
    def __init__(self, config: JinaV2Config, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.inner = config.intermediate_size
        self.eps = config.layer_norm_eps
        self.reglu = config.feed_forward_type == "reglu"
        self.approximate = config.gelu_approximate
        attn = f"{prefix}.attention"
        # q, k and v as one (3h x h) GEMM: one pass over the input instead of three.
        self.qkv = _frozen_linear(
            torch.cat([tensors.pop(f"{attn}.self.{n}.weight") for n in ("query", "key", "value")]),
            torch.cat([tensors.pop(f"{attn}.self.{n}.bias") for n in ("query", "key", "value")]),
        )
        self.out = _frozen_linear(
            tensors.pop(f"{attn}.output.dense.weight"), tensors.pop(f"{attn}.output.dense.bias")
        )
        self.register_buffer("ln1_weight", tensors.pop(f"{attn}.output.LayerNorm.weight"))
        self.register_buffer("ln1_bias", tensors.pop(f"{attn}.output.LayerNorm.bias"))
        self.gated_layers = _frozen_linear(tensors.pop(f"{prefix}.mlp.gated_layers.weight"), None)
        self.wo = _frozen_linear(
            tensors.pop(f"{prefix}.mlp.wo.weight"), tensors.pop(f"{prefix}.mlp.wo.bias")
        )
        self.register_buffer("ln2_weight", tensors.pop(f"{prefix}.mlp.layernorm.weight"))
        self.register_buffer("ln2_bias", tensors.pop(f"{prefix}.mlp.layernorm.bias"))

    def forward(self, x: torch.Tensor, layout: AlibiLayout, slopes: torch.Tensor) -> torch.Tensor:
        tokens, width = x.shape
        qkv = self.qkv(x).view(tokens, 3, self.heads, self.head_dim)
        attn = _packed_alibi_attention(qkv, layout, slopes)
        x = F.layer_norm(
            x + self.out(attn.view(tokens, width)),
            (width,),
            self.ln1_weight,
            self.ln1_bias,
            self.eps,
        )
        u = self.gated_layers(x)
        # The first half is gated (through the activation), the second half multiplies it.
        gated, rest = u[:, : self.inner], u[:, self.inner :]
        act = F.relu(gated) if self.reglu else F.gelu(gated, approximate=self.approximate)
        y = self.wo(act.mul_(rest))
        return F.layer_norm(y + x, (width,), self.ln2_weight, self.ln2_bias, self.eps)


def _alibi_table(slopes: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """(heads, 2 * length - 1): entry m of head h is ``-slope[h] * |m - (length - 1)|``,
    computed in float32 (exact distances), then cast."""
    offsets = torch.arange(2 * length - 1, device=slopes.device, dtype=torch.float32)
    return (offsets.sub_(length - 1).abs_()[None] * slopes.neg()[:, None]).to(dtype)


def _reversed_query_bias(table: torch.Tensor, first: int, rows: int, length: int) -> torch.Tensor:
    """The bias of reversed-order query rows ``first .. first + rows - 1`` against the keys,
    as a (heads, rows, length) view of ``table`` (no copy).

    Row ``r`` holds query ``i = length - 1 - r``, and ``|i - j| = |(r + j) - (length - 1)|``
    depends on ``r + j`` alone, so the matrix reads ``table[h, r + j]``: strides (1, 1)."""
    heads = table.shape[0]
    return table.as_strided((heads, rows, length), (table.stride(0), 1, 1), first)


def _packed_alibi_attention(
    qkv: torch.Tensor, layout: AlibiLayout, slopes: torch.Tensor
) -> torch.Tensor:
    """Attention of each sequence over its own tokens; qkv is (tokens, 3, heads, head_dim),
    the result (tokens, heads, head_dim).

    Each sequence's queries run in reversed order (one gather for the whole batch, and one
    to put the results back), so that the bias is a strided view of a (heads, 2n - 1)
    table. The CPU kernel reads the view as it is: the bias costs 2n values per head,
    whatever n. CUDA kernels want a dense mask, so there the view is copied one block of
    query rows at a time (at most ``_BIAS_BLOCK_ELEMENTS`` elements)."""
    tokens, _, heads, head_dim = qkv.shape
    queries = qkv[:, 0].index_select(0, layout.reverse_index)  # (tokens, heads, head_dim)
    out = torch.empty((tokens, heads, head_dim), dtype=qkv.dtype, device=qkv.device)
    dense_mask = layout.dense_bias
    for start, length in layout.spans:
        # (1, heads, n, head_dim) views: on CPU only 4-D SDPA reaches the fused kernel.
        q = queries[start : start + length].transpose(0, 1)[None]
        k, v = (qkv[start : start + length, i].transpose(0, 1)[None] for i in (1, 2))
        target = out[start : start + length].transpose(0, 1)  # (heads, n, head_dim) view
        table = _alibi_table(slopes, length, qkv.dtype)
        step = _rows_per_block(heads, length) if dense_mask else length
        for first in range(0, length, step):
            rows = min(step, length - first)
            bias = _reversed_query_bias(table, first, rows, length)
            if dense_mask:
                bias = bias.contiguous()
            target[:, first : first + rows].copy_(
                F.scaled_dot_product_attention(
                    q[:, :, first : first + rows], k, v, attn_mask=bias[None]
                )[0]
            )
    return out.index_select(0, layout.reverse_index)  # reversing twice is the identity


def _rows_per_block(heads: int, length: int) -> int:
    return max(1, _BIAS_BLOCK_ELEMENTS // (heads * length))


class JinaV2Model(NativeEncoder):
    """The JinaBERT encoder stack; ``token_states`` runs one packed batch."""

    packed = True  # no padding: a batch costs the sum of its sequences' lengths
    #: None: dense bias blocks on CUDA, the strided view on CPU; True/False forces one
    #: (tests run the CUDA path's blocks on CPU).
    dense_bias: bool | None = None

    def __init__(self, config: JinaV2Config, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.register_buffer("word_embeddings", tensors.pop("embeddings.word_embeddings.weight"))
        # Token type is always 0 for a single text: one row added to every token.
        types = tensors.pop("embeddings.token_type_embeddings.weight")
        self.register_buffer("type_row", types[0].clone())
        self.register_buffer("emb_ln_weight", tensors.pop("embeddings.LayerNorm.weight"))
        self.register_buffer("emb_ln_bias", tensors.pop("embeddings.LayerNorm.bias"))
        self.layers = nn.ModuleList(
            JinaV2Layer(config, tensors, f"encoder.layer.{i}")
            for i in range(config.num_hidden_layers)
        )
        self.register_buffer("slopes", alibi_slopes(config.num_attention_heads))
        if tensors:  # accounted for before construction; a leftover is a bug here
            raise AssertionError(f"tensors left unread: {sorted(tensors)}")

    @classmethod
    def from_dir(
        cls, model_dir: Path, config: JinaV2Config, device: torch.device, dtype: torch.dtype
    ) -> JinaV2Model:
        tensors = load_v2_tensors(model_dir, config, dtype)
        return cls(config, tensors).to(device).eval()

    def quantize_int8(self, *, reduce_range: bool = False) -> None:
        """Run every encoder Linear with int8 weights (CPU); attention, norms stay float32."""
        check_int8_ready(self.device, self.dtype)
        quantize_linear_layers(self.layers, reduce_range=reduce_range)

    @property
    def quantized(self) -> bool:
        return any(isinstance(m, Int8Linear) for m in self.layers.modules())

    def _layout(self, batch: PackedBatch) -> AlibiLayout:
        starts = [0]
        for length in batch.seq_lens[:-1]:
            starts.append(starts[-1] + length)
        dense = self.device.type != "cpu" if self.dense_bias is None else self.dense_bias
        reverse = torch.cat(
            [torch.arange(s + n - 1, s - 1, -1) for s, n in zip(starts, batch.seq_lens)]
        )
        reverse = reverse.to(self.device, non_blocking=True)
        return AlibiLayout(list(zip(starts, batch.seq_lens)), dense, reverse)

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        layout = self._layout(batch)
        x = F.embedding(batch.input_ids, self.word_embeddings) + self.type_row
        x = F.layer_norm(
            x, (self.hidden_size,), self.emb_ln_weight, self.emb_ln_bias, self.config.layer_norm_eps
        )
        for layer in self.layers:
            x = layer(x, layout, self.slopes)
        return x


def load_v2_tensors(
    model_dir: Path, config: JinaV2Config, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by released name (a ``bert.`` prefix is dropped), in
    ``dtype``, after checking that they are exactly what the model reads (see
    :data:`UNUSED_V2_TENSORS` for the one justified exception)."""
    where = f"{model_dir} (jina-embeddings-v2)"
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    for name, tensor in iter_safetensors(model_dir):
        key = name.removeprefix("bert.")
        if any(marker in key for marker in _QK_POST_NORM_MARKERS):
            raise UnsupportedModelError(f"{where}: {V2_BASE_CODE_REFUSAL}")
        if key in shapes:
            raise UnsupportedModelError(f"{where}: tensor {key} is stored twice (with bert.)")
        shapes[key] = tuple(tensor.shape)
        if not any(key.startswith(p) for p in UNUSED_V2_TENSORS):
            tensors[key] = tensor.to(dtype)
    check_tensor_accounting(
        where, expected=expected_v2_tensors(config), present=shapes, unused_ok=UNUSED_V2_TENSORS
    )
    return tensors
