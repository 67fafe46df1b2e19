"""The benchmark suite of jina-connectors: `python -m benchmarks` (see the README).

Every figure is a ratio against something measured in the same run: the machine's GEMM
throughput (MFU), the padded baseline of `benchmarks.baseline`, sentence-transformers, or
another configuration of our own code. Modules:

- `measure`: GEMM ceiling, MFU, wall clocks, peak memory.
- `workloads`: the random full-size checkpoint, exact-length inputs, speech paragraphs.
- `baseline`: jina-embeddings-v3 the common way (padded fixed batches, LoRA merged per call).
- `full_size`, `long_inputs`, `minilm`, `late_chunking`, `ingestion`: one benchmark each.
- `report`: figures, targets, the table and results.json.
"""
