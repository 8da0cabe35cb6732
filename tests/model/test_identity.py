"""Arc2Face identity encoder on transformers 5.x CLIPTextModel."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.model.identity import IdentityEncoder


def test_same_path_as_stock_clip_for_plain_tokens(tiny_pipe):
    enc = tiny_pipe.identity_encoder
    with torch.no_grad():
        ours = enc.encode_token_ids(enc.prompt_ids)
        stock = enc.text_encoder(input_ids=enc.prompt_ids).last_hidden_state
    assert torch.allclose(ours, stock, atol=1e-5, rtol=0)


def test_uncond_is_the_empty_prompt(tiny_pipe):
    enc = tiny_pipe.identity_encoder
    tokenizer = tiny_pipe.tokenizer
    ids = tokenizer("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        stock = enc.text_encoder(input_ids=ids).last_hidden_state
        uncond = enc.encode_uncond(3)
    assert uncond.shape == (3, 77, enc.width)
    assert torch.allclose(uncond, stock.expand(3, -1, -1), atol=1e-5, rtol=0)


def test_id_token_position_carries_the_embedding(tiny_pipe):
    enc = tiny_pipe.identity_encoder
    tokenizer = tiny_pipe.tokenizer
    assert tokenizer.convert_ids_to_tokens(int(enc.prompt_ids[0, enc.id_position])) == "id</w>"
    ids = torch.nn.functional.normalize(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    with torch.no_grad():
        out = enc(ids)
    p = enc.id_position
    # causal: tokens before "id" do not see the identity; "id" and everything after does
    assert torch.equal(out[0, :p], out[1, :p])
    assert ((out[0, p:] - out[1, p:]).abs().amax(dim=-1) > 1e-4).all()
    assert out.shape == (2, 77, enc.width)


def test_embedding_is_zero_padded_into_a_wider_text_model(tiny_pipe):
    tokenizer: CLIPTokenizer = tiny_pipe.tokenizer
    vocab = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=544, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
    )
    torch.manual_seed(0)
    enc = IdentityEncoder(CLIPTextModel(config).eval(), tokenizer)
    seen = {}
    enc.text_encoder.embeddings.register_forward_hook(
        lambda module, args, kwargs, output: seen.update(inputs=kwargs["inputs_embeds"]), with_kwargs=True
    )
    ids = torch.randn(2, 512)
    with torch.no_grad():
        enc(ids)
        plain = enc.text_encoder.embeddings.token_embedding(enc.prompt_ids)
    inputs, p = seen["inputs"], enc.id_position
    assert torch.equal(inputs[:, p, :512], ids)
    assert torch.equal(inputs[:, p, 512:], torch.zeros(2, 32))
    others = [i for i in range(77) if i != p]
    assert torch.equal(inputs[:, others], plain.expand(2, -1, -1)[:, others])


def test_rejects_wrong_shapes_and_narrow_encoders(tiny_pipe):
    with pytest.raises(FacegenError, match="id_embeds"):
        tiny_pipe.identity_encoder(torch.randn(2, 128))
    tokenizer = tiny_pipe.tokenizer
    narrow = CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2))
    with pytest.raises(FacegenError, match="width"):
        IdentityEncoder(narrow, tokenizer)
