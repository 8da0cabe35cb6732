"""Arc2Face identity encoder: an ArcFace embedding fed to the CLIP text transformer as the token "id".

The prompt "photo of a id person" is tokenised once; at run time the input (token) embedding at the
position of "id" is replaced by the 512-d ArcFace embedding zero-padded to the text width, and the
CLIP text transformer (positions, causal mask, final layer norm) turns the sequence into the UNet's
cross-attention context.

The unconditional context of eq. 6 (e(x_t, t)) is the empty prompt through the encoder *as it was when
the unconditional branch was trained* (Arc2Face's encoder, or the end of facegen's `base` stage). Training
the encoder later (the joint stage) must not move it, so it is captured once (:meth:`capture_uncond`),
stored with the model as ``text_encoder/uncond_context.safetensors`` (:data:`UNCOND_FILE`; read back
automatically from the folder the text encoder was loaded from) and used by :meth:`encode_uncond` from
then on. Folders without the file fall back to encoding the empty prompt live.

Only public module attributes of `CLIPTextModel` are used (`embeddings`, `encoder`,
`final_layer_norm`); the causal mask is built here, so nothing depends on transformers' private mask
helpers (which moved between 4.x and 5.x).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from facegen.errors import FacegenError
from facegen.labels import ID_EMBED_DIM

ID_PROMPT = "photo of a id person"
ID_TOKEN = "id"
#: The stored unconditional context, inside the text encoder's folder; tensor key = file stem.
UNCOND_FILE = "uncond_context.safetensors"
_UNCOND_KEY = "uncond_context"


def causal_mask(batch: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive (batch, 1, length, length) mask: 0 on and below the diagonal, dtype-min above."""
    upper = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    mask = torch.zeros(length, length, dtype=dtype, device=device)
    mask = mask.masked_fill(upper, torch.finfo(dtype).min)
    return mask[None, None].expand(batch, 1, length, length)


class IdentityEncoder(nn.Module):
    """Turns (B, 512) ArcFace embeddings into (B, 77, width) cross-attention contexts (Arc2Face scheme)."""

    def __init__(
        self,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        prompt: str = ID_PROMPT,
        id_token: str = ID_TOKEN,
        uncond_context: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.width = int(text_encoder.config.hidden_size)
        if self.width < ID_EMBED_DIM:
            raise FacegenError(
                f"text encoder width {self.width} is smaller than the {ID_EMBED_DIM}-d identity embedding",
                where="encoder/config.json",
            )
        length = int(text_encoder.config.max_position_embeddings)
        prompt_ids = _tokenize(tokenizer, prompt, length)
        token_ids = tokenizer(id_token, add_special_tokens=False).input_ids
        if len(token_ids) != 1:
            raise FacegenError(f"the tokenizer splits {id_token!r} into {len(token_ids)} tokens", where="tokenizer")
        positions = (prompt_ids[0] == token_ids[0]).nonzero().flatten()
        if len(positions) != 1:
            raise FacegenError(f"{id_token!r} occurs {len(positions)} times in {prompt!r}", where="tokenizer")
        self.id_position = int(positions[0])
        self.register_buffer("prompt_ids", prompt_ids, persistent=False)
        self.register_buffer("uncond_ids", _tokenize(tokenizer, "", length), persistent=False)
        if uncond_context is None:
            uncond_context = stored_uncond_context(text_encoder)
        if uncond_context is not None and tuple(uncond_context.shape) != (1, length, self.width):
            raise FacegenError(
                f"stored unconditional context has shape {tuple(uncond_context.shape)}, expected (1, {length}, {self.width})",
                where=f"text_encoder/{UNCOND_FILE}",
            )
        # frozen eq. 6 context (None = encode the empty prompt live); not a parameter, not in state dicts
        self.register_buffer("uncond_context", uncond_context, persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_encoder.embeddings.token_embedding.weight.dtype

    def forward(self, id_embeds: torch.Tensor) -> torch.Tensor:
        """(B, 512) identity embeddings (L2-normalised by the caller) -> (B, 77, width) context."""
        if id_embeds.ndim != 2 or id_embeds.shape[1] != ID_EMBED_DIM:
            raise FacegenError(
                f"id_embeds must have shape (B, {ID_EMBED_DIM}); got {tuple(id_embeds.shape)}", where="id_embeds"
            )
        batch = id_embeds.shape[0]
        ids = self._on_embedding_device(self.prompt_ids).expand(batch, -1)
        token_embeds = self.text_encoder.embeddings.token_embedding(ids)
        padded = torch.zeros(batch, self.width, dtype=token_embeds.dtype, device=token_embeds.device)
        padded[:, :ID_EMBED_DIM] = id_embeds.to(token_embeds.dtype)
        position = torch.arange(ids.shape[1], device=ids.device) == self.id_position
        token_embeds = torch.where(position[None, :, None], padded[:, None, :], token_embeds)
        return self.transform(token_embeds)

    def encode_uncond(self, batch: int) -> torch.Tensor:
        """Eq. 6's unconditional context, (batch, 77, width): the stored one if captured, else live."""
        if self.uncond_context is None:
            return self.encode_empty_prompt(batch)
        weight = self.text_encoder.embeddings.token_embedding.weight
        return self.uncond_context.to(weight.device, weight.dtype).expand(batch, -1, -1)

    def encode_empty_prompt(self, batch: int) -> torch.Tensor:
        """The empty prompt through the encoder's current weights (differentiable), (batch, 77, width)."""
        token_embeds = self.text_encoder.embeddings.token_embedding(self._on_embedding_device(self.uncond_ids))
        return self.transform(token_embeds).expand(batch, -1, -1)

    @torch.no_grad()
    def capture_uncond(self) -> torch.Tensor:
        """Freeze the encoder's current empty-prompt context as the model's unconditional context."""
        context = self.encode_empty_prompt(1).detach().float().cpu().clone()
        self.uncond_context = context
        return context

    def save_uncond(self, text_encoder_dir: str | Path) -> None:
        """Write the frozen unconditional context (if any) next to the text encoder's weights."""
        if self.uncond_context is not None:
            tensor = self.uncond_context.detach().float().cpu().contiguous()
            save_file({_UNCOND_KEY: tensor}, str(Path(text_encoder_dir) / UNCOND_FILE))

    def _on_embedding_device(self, ids: torch.Tensor) -> torch.Tensor:
        # The text encoder may sit elsewhere than this wrapper's buffers (pipeline `.to()`, CPU offload).
        return ids.to(self.text_encoder.embeddings.token_embedding.weight.device)

    def encode_token_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Plain text encoding of token ids through the same path (used to check it against CLIP)."""
        return self.transform(self.text_encoder.embeddings.token_embedding(input_ids))

    def transform(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """Input token embeddings (B, L, width) -> last hidden state after the final layer norm."""
        hidden = self.text_encoder.embeddings(inputs_embeds=token_embeds)
        mask = causal_mask(hidden.shape[0], hidden.shape[1], hidden.dtype, hidden.device)
        hidden = self.text_encoder.encoder(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
        return self.text_encoder.final_layer_norm(hidden)


def stored_uncond_context(text_encoder: CLIPTextModel) -> torch.Tensor | None:
    """The unconditional context stored beside the text encoder's weights (None if there is none)."""
    source = getattr(text_encoder, "name_or_path", "") or ""
    path = Path(source) / UNCOND_FILE
    if not source or not path.is_file():
        return None
    return load_file(str(path))[_UNCOND_KEY].float()


def _tokenize(tokenizer: CLIPTokenizer, text: str, length: int) -> torch.Tensor:
    ids = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    return ids.long()
