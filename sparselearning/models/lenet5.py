"""LeNet-5-Caffe: the variant used by the sparse-training literature (20 and 50 5x5 filters, 500 hidden)."""

from __future__ import annotations

import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.models.widths import small_dense_width


class LeNet5(nn.Module):
    """conv(20, 5x5) - pool - conv(50, 5x5) - pool - fc(500) - fc(classes), ReLU; `density` narrows widths."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, density: float = 1.0):
        super().__init__()
        c1, c2, hidden = (small_dense_width(w, density) for w in (20, 50, 500))
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=5)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise SparseLearningError(f"lenet5 needs images of at least 16x16 pixels, got {image_size}x{image_size}")
        self.fc3 = nn.Linear(c2 * side * side, hidden)
        self.fc4 = nn.Linear(hidden, num_classes)
        self.pool = nn.MaxPool2d(2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.pool(torch.relu(self.conv1(inputs)))
        hidden = self.pool(torch.relu(self.conv2(hidden)))
        hidden = torch.relu(self.fc3(hidden.flatten(1)))
        return self.fc4(hidden)
