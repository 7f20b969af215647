"""PyTorch references for benchmarks/speed.py: the jaxml nets written as a PyTorch user would.

Only the benchmark imports this module, and only when `import torch` works; jaxml never does.
Each net has the same layer shapes (so the same matmul/conv FLOPs) as its jaxml counterpart;
initialisation follows PyTorch's defaults, which does not change the cost of a step. Where
PyTorch's idiom differs from ours the difference is named beside the class (GRU gate form,
the IMDB LSTM's padding).
"""

import torch
from torch import nn
from torch.nn import functional as F


class SeedCNN(nn.Module):
  """conv 5x5x32 (same) + ReLU -> max-pool 2 -> conv 5x5x64 (same) + ReLU -> max-pool 2
  -> dense 1024 + ReLU -> dropout -> dense classes. x: f[batch, channels, H, W] (NCHW,
  PyTorch's native layout; jaxml's is NHWC)."""

  def __init__(self, channels: int, h: int, w: int, n_classes: int, dropout: float):
    super().__init__()
    self.conv1 = nn.Conv2d(channels, 32, 5, padding=2)
    self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
    self.dense1 = nn.Linear((h // 4) * (w // 4) * 64, 1024)
    self.out = nn.Linear(1024, n_classes)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    h = F.max_pool2d(F.relu(self.conv1(x)), 2)
    h = F.max_pool2d(F.relu(self.conv2(h)), 2)
    h = F.relu(self.dense1(h.flatten(1)))
    return self.out(self.dropout(h))


class LeNet5(nn.Module):
  """C1 conv 5x5x6 (same) -> S2 pool -> C3 conv 5x5x16 (valid) -> S4 pool -> C5 120 -> F6 84
  -> classes, ReLU and max-pooling (the lenet5_mnist defaults: pool "max", activation "relu")."""

  def __init__(self, channels: int, h: int, w: int, n_classes: int, dropout: float):
    super().__init__()
    fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
    self.c1 = nn.Conv2d(channels, 6, 5, padding=2)
    self.c3 = nn.Conv2d(6, 16, 5)
    self.c5 = nn.Linear(fh * fw * 16, 120)
    self.f6 = nn.Linear(120, 84)
    self.out = nn.Linear(84, n_classes)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    h = F.max_pool2d(F.relu(self.c1(x)), 2)
    h = F.max_pool2d(F.relu(self.c3(h)), 2)
    h = F.relu(self.c5(h.flatten(1)))
    h = F.relu(self.f6(h))
    return self.out(self.dropout(h))


class SequenceClassifier(nn.Module):
  """nn.GRU / nn.LSTM (one layer) -> mean over time -> MLP head (ReLU) -> logits.
  x: f[batch, time, features]. PyTorch's GRU applies the reset gate after the recurrent matmul,
  r * (h U + b), where ours computes (r * h) U: the same matmul sizes."""

  def __init__(self, cell: str, n_features: int, hidden: int, head: tuple, n_classes: int):
    super().__init__()
    rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[cell]
    self.rnn = rnn(n_features, hidden, batch_first=True)
    sizes = (hidden, *head, n_classes)
    self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

  def forward(self, x):
    hs, _ = self.rnn(x)
    h = hs.mean(1)
    for i, layer in enumerate(self.head):
      h = layer(F.relu(h) if i else h)
    return h


class TextClassifier(nn.Module):
  """Embedding -> dropout -> bidirectional nn.LSTM -> masked mean+max pooling -> dropout
  -> dense 1 -> logits (0, z). tokens: int64[batch, time], 0 = padding.

  nn.LSTM runs over every position, padding included, like our masked scan (which computes
  every step and keeps the carry where the mask is 0), so both do the same matmuls; unlike ours
  its state is not frozen on padding (a packed sequence would skip those steps, and so do fewer
  FLOPs than the jaxml net).
  """

  def __init__(self, vocab_size: int, embed_dim: int, hidden: int, embed_dropout: float,
               dropout: float):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed_dim)
    self.rnn = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
    self.out = nn.Linear(4 * hidden, 1)
    self.embed_dropout = nn.Dropout(embed_dropout)
    self.dropout = nn.Dropout(dropout)

  def forward(self, tokens):
    mask = (tokens != 0).unsqueeze(-1)
    hs, _ = self.rnn(self.embed_dropout(self.embed(tokens)))
    mean = (hs * mask).sum(1) / mask.sum(1).clamp(min=1)
    mx = hs.masked_fill(~mask, float("-inf")).amax(1)
    z = self.out(self.dropout(torch.cat([mean, mx], -1)))
    return torch.cat([torch.zeros_like(z), z], -1)


class NgramLM(nn.Module):
  """Bengio's 4-gram LM: embed 3 words (D each) -> sigmoid P -> logits over V.
  x: int64[batch, 3]; dropout on the concatenated embeddings and on the hidden units."""

  def __init__(self, vocab_size: int, embed_dim: int, hidden: int, dropout: float):
    super().__init__()
    self.embed = nn.Embedding(vocab_size, embed_dim)
    self.hidden = nn.Linear(3 * embed_dim, hidden)
    self.out = nn.Linear(hidden, vocab_size)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    e = self.dropout(self.embed(x).flatten(1))
    return self.out(self.dropout(torch.sigmoid(self.hidden(e))))


def make_step(model: nn.Module, *, optimizer: str, learning_rate: float, grad_clip: float,
              weight_decay: float = 0.0):
  """(x, y) -> loss: one training step, as a PyTorch loop writes it (zero_grad, forward,
  cross-entropy, backward, optional global-norm clipping, optimizer step)."""
  if optimizer not in ("adam", "adamw", "sgd"):
    raise ValueError(f"no PyTorch reference for optimizer {optimizer!r}")
  extra = {"weight_decay": weight_decay} if optimizer == "adamw" else {}
  opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[
      optimizer](model.parameters(), lr=learning_rate, **extra)
  model.train()

  def step(x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if grad_clip > 0:
      nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss

  return step
