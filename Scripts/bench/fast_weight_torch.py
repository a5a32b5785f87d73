"""A straightforward per-time-step PyTorch implementation of lmtrain's fast-weight models, for
measuring training speed on the same machine (Docs/performance.md). Not used by the tests.

Each model is the stack of Docs/formal-languages.md: an embedding, L layers of a mixer
(linear Transformer, DeltaNet, Recurrent DeltaNet or SRWM) and a feedforward sublayer, an
output layer. The mixers run a Python loop over the T positions with tensor operations batched
over sequences and heads, as one writes them without custom kernels; autograd does the
backward pass. Prints one JSON line per model with the median training tokens/s.

    python3 Scripts/bench/fast_weight_torch.py --threads 2 --batch 32 --length 64 \
        --d-model 128 --heads 4 --layers 2 --ff-factor 4 --steps 5

Needs torch (pip install torch).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def phi(x):
    return F.elu(x) + 1


class ProjectedMixer(nn.Module):
    """LN, one projection to q, k, v (, b) per head, the fast-weight recurrence, W_o."""

    def __init__(self, kind, d_model, heads):
        super().__init__()
        self.kind, self.h, self.d = kind, heads, d_model // heads
        width = 3 * self.d + (0 if kind == "lt" else 1)
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, heads * width, bias=False)
        self.output = nn.Linear(heads * self.d, d_model, bias=False)
        if kind == "rdn":
            std = 1 / self.d ** 0.5
            self.r_q = nn.Parameter(torch.randn(heads, self.d, self.d) * std)
            self.r_k = nn.Parameter(torch.randn(heads, self.d, self.d) * std)
            self.r_v = nn.Parameter(torch.randn(heads, self.d, self.d) * std)
            self.r_b = nn.Parameter(torch.randn(heads, self.d) * std)

    def forward(self, x):
        b, t, _ = x.shape
        h, d = self.h, self.d
        p = self.projection(self.norm(x)).view(b, t, h, -1)
        w = x.new_zeros(b, h, d, d)
        y_prev = x.new_zeros(b, h, d)
        outputs = []
        for i in range(t):
            q, k, v = p[:, i, :, :d], p[:, i, :, d:2 * d], p[:, i, :, 2 * d:3 * d]
            if self.kind == "lt":
                w = w + phi(k).unsqueeze(-1) * v.unsqueeze(-2)
                y = torch.einsum("bhe,bhem->bhm", phi(q), w)
            else:
                beta_x = p[:, i, :, 3 * d]
                if self.kind == "rdn":
                    s = torch.tanh(y_prev)
                    q = torch.softmax(q + torch.einsum("bhe,hem->bhm", s, self.r_q), -1)
                    k = torch.softmax(k + torch.einsum("bhe,hem->bhm", s, self.r_k), -1)
                    v = v + torch.einsum("bhe,hem->bhm", s, self.r_v)
                    beta = torch.sigmoid(beta_x + (s * self.r_b).sum(-1))
                else:
                    q, k = phi(q), phi(k)
                    q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
                    beta = torch.sigmoid(beta_x)
                v_bar = torch.einsum("bhe,bhem->bhm", k, w)
                w = w + k.unsqueeze(-1) * (beta.unsqueeze(-1) * (v - v_bar)).unsqueeze(-2)
                y = torch.einsum("bhe,bhem->bhm", q, w)
            y_prev = y
            outputs.append(y)
        return x + self.output(torch.stack(outputs, 1).reshape(b, t, h * d))


class SelfReferentialMixer(nn.Module):
    """y = SRWM(x) on the raw input, h' = LN(x) + W_o y."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.h, self.d = heads, d_model // heads
        std = 1 / self.d ** 0.5
        self.w_y = nn.Parameter(torch.randn(heads, self.d, self.d) * std)
        self.w_q = nn.Parameter(torch.randn(heads, self.d, self.d) * 0.01 * std)
        self.w_k = nn.Parameter(torch.randn(heads, self.d, self.d) * std)
        self.w_b = nn.Parameter(torch.randn(heads, self.d, 4) * std - 1)
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        h, d = self.h, self.d
        xs = x.view(b, t, h, d)
        w = [m.unsqueeze(0).expand(b, -1, -1, -1) for m in (self.w_y, self.w_q, self.w_k, self.w_b)]
        outputs = []
        for i in range(t):
            xi = xs[:, i]
            y = torch.einsum("bhe,bhem->bhm", xi, w[0])
            q = torch.softmax(torch.einsum("bhe,bhem->bhm", xi, w[1]), -1)
            k = torch.softmax(torch.einsum("bhe,bhem->bhm", xi, w[2]), -1)
            beta = torch.sigmoid(torch.einsum("bhe,bhem->bhm", xi, w[3]))
            new = []
            for j, m in enumerate(w):
                delta = torch.einsum("bhe,bhem->bhm", q, m) - torch.einsum("bhe,bhem->bhm", k, m)
                new.append(m + k.unsqueeze(-1) * (beta[..., j:j + 1] * delta).unsqueeze(-2))
            w = new
            outputs.append(y)
        return self.norm(x) + self.output(torch.stack(outputs, 1).reshape(b, t, h * d))


class Model(nn.Module):
    def __init__(self, kind, vocabulary, d_model, heads, layers, ff_factor):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, d_model)
        self.mixers = nn.ModuleList(
            SelfReferentialMixer(d_model, heads) if kind == "srwm" else ProjectedMixer(kind, d_model, heads)
            for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        self.ffs = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, ff_factor * d_model), nn.ReLU(), nn.Linear(ff_factor * d_model, d_model))
            for _ in range(layers))
        self.out = nn.Linear(d_model, vocabulary)

    def forward(self, x):
        h = self.embedding(x)
        for mixer, norm, ff in zip(self.mixers, self.norms, self.ffs):
            h = mixer(h)
            h = h + ff(norm(h))
        return self.out(h)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lt,deltanet,rdn,srwm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ff-factor", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    for kind in args.models.split(","):
        model = Model(kind, args.vocabulary, args.d_model, args.heads, args.layers, args.ff_factor)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.995), eps=1e-9)
        x = torch.randint(0, args.vocabulary, (args.batch, args.length))
        y = torch.randint(0, args.vocabulary, (args.batch, args.length))
        times = []
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x).reshape(-1, args.vocabulary), y.reshape(-1))
            loss.backward()
            optimizer.step()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        print(json.dumps({
            "model": kind, "torch": torch.__version__, "threads": args.threads, "batch": args.batch,
            "length": args.length, "d_model": args.d_model, "heads": args.heads, "layers": args.layers,
            "seconds_per_step_median": seconds, "tokens_per_s_median": args.batch * args.length / seconds}))


if __name__ == "__main__":
    main()
