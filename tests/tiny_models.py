"""Tiny random-weight models built with the libraries' own save code, for the test hub to serve."""

from __future__ import annotations

from pathlib import Path


def build_tiny_sentence_encoder(out_dir: Path, tokenizer_source: Path, hidden: int = 32) -> Path:
    """A 2-layer BERT with CLS pooling and normalization, saved in sentence-transformers' layout
    (the layout of BAAI/bge-small-en-v1.5); its tokenizer is the real one from `tokenizer_source`."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    raw = out_dir.with_name(out_dir.name + "-transformer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    encoder = SentenceTransformer(modules=[
        models.Transformer(str(raw), max_seq_length=512),
        models.Pooling(hidden, pooling_mode="cls"),
        models.Normalize(),
    ], device="cpu")
    encoder.save(str(out_dir))
    return out_dir
