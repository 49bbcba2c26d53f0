"""VisualBERT's embeddings with device-correct visual position ids.

rc10's `BertVisioLinguisticEmbeddings.forward` builds the visual position ids with `.cuda()` (embeddings.py:389, :408),
so it fails on CPU and puts tensors on the wrong GPU under DDP. This subclass creates them on the input's device,
and casts region features to the projection's dtype where they enter (the loader keeps fp16-stored features fp16).
"""
import torch
from mmf.modules.embeddings import BertVisioLinguisticEmbeddings


class DeviceAwareVisioLinguisticEmbeddings(BertVisioLinguisticEmbeddings):
    def forward(
        self,
        input_ids,
        token_type_ids=None,
        visual_embeddings=None,
        visual_embeddings_type=None,
        position_embeddings_visual=None,
        image_text_alignment=None,
    ):
        device = input_ids.device
        position_ids = torch.arange(input_ids.size(1), dtype=torch.long, device=device)
        position_ids = position_ids.unsqueeze(0).expand_as(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        if visual_embeddings is not None:
            # features may arrive fp16 (stored so, F28): cast where they enter; fp16 -> fp32 is exact
            visual_embeddings = self.projection(visual_embeddings.to(self.projection.weight.dtype))
            if visual_embeddings_type is None:
                visual_embeddings_type = torch.zeros(visual_embeddings.shape[:-1], dtype=torch.long, device=device)
            visual_type = self.token_type_embeddings_visual(visual_embeddings_type)
            position_ids_visual = torch.zeros(visual_embeddings.shape[:-1], dtype=torch.long, device=device)
            visual_positions = self.position_embeddings_visual(position_ids_visual)
            if image_text_alignment is not None:
                visual_positions = visual_positions + self._aligned_positions(image_text_alignment, visual_embeddings)
            embeddings = torch.cat((embeddings, visual_embeddings + visual_positions + visual_type), dim=1)
        return self.dropout(self.LayerNorm(embeddings))

    def _aligned_positions(self, alignment, visual_embeddings):
        """Mean of the word position embeddings each region is aligned to (-1 = padding), as in VisualBERT."""
        mask = (alignment != -1).long()
        positions = self.position_embeddings(mask * alignment) * mask.to(visual_embeddings.dtype).unsqueeze(-1)
        counts = mask.to(visual_embeddings.dtype).sum(2).clamp(min=1)
        positions = positions.sum(2) / counts.unsqueeze(-1)
        return positions[:, : visual_embeddings.size(1), :]
