"""ViT-tiny: a small Vision Transformer for 28x28 images (MNIST, Fashion-MNIST), small enough for a CPU.

Non-overlapping `patch_size` patches are embedded by a strided convolution, a learned class token and position
embedding are added, `depth` pre-norm Transformer encoder blocks (multi-head self-attention and a GELU MLP)
follow, and a Linear head reads the class token. Every weight matrix is one a `Masking` masks by default: the
patch embedding (a Conv2d), the attention projections, the MLP and the head. The class token and the position
table stay dense (they are added, not multiplied).
"""

from __future__ import annotations

import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.models.widths import small_dense_width


class VisionTransformer(nn.Module):
    """Patch embedding, class token, `depth` encoder blocks and a Linear head; `density` narrows the widths.

    :param num_classes: outputs of the head
    :param in_channels: channels of the input image
    :param image_size: side of the (square) input image
    :param patch_size: side of a patch; must divide `image_size`
    :param dim: width of the token embeddings
    :param depth: number of encoder blocks
    :param heads: attention heads per block
    :param mlp_ratio: width of each block's MLP over `dim`
    :param density: Small-Dense narrows `dim` and the MLP by sqrt(density) (the width stays a multiple of `heads`)
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int = 7,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 2,
        density: float = 1.0,
    ) -> None:
        super().__init__()
        if patch_size < 1 or image_size % patch_size:
            raise SparseLearningError(f"vit patch_size {patch_size} must divide the image size {image_size}")
        width = heads * small_dense_width(dim // heads, density) if dim % heads == 0 else 0
        if width == 0:
            raise SparseLearningError(f"vit dim {dim} must be a positive multiple of heads {heads}")
        hidden = small_dense_width(dim * mlp_ratio, density)
        tokens = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        block = nn.TransformerEncoderLayer(
            width, heads, hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # (batch, tokens, width)
        tokens = torch.cat([self.class_token.expand(patches.shape[0], -1, -1), patches], dim=1) + self.position
        return self.head(self.norm(self.blocks(tokens))[:, 0])
