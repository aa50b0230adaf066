#!/usr/bin/env python3
"""Writes tests/data/golden/unet_small.safetensors: a small DDPM U-Net of the PyTorch reference
(../shared/ref/unet.py) with every parameter randomised (the zero-initialised ones included), its
inputs, its output and every gradient of  loss = sum(out * R)  for a fixed random R.

The C++ golden test (tests/nn/test_unet_golden.cpp) loads the file and checks UNet<T, B> against it;
running that test needs no Python. Regenerating the files needs python3-torch:

    /usr/bin/python3 tests/golden/make_unet_fixture.py [--ref-dir ../shared/ref] [--out FILE]
    /usr/bin/python3 tests/golden/make_unet_fixture.py --heads 4   # unet_small_heads4.safetensors

With --heads H > 1 the reference's single-head AttnBlock.forward is replaced by multi-head
attention in guided-diffusion's QKVAttentionLegacy layout: the qkv channels are H groups of
[q; k; v] with C / H channels each, every head attends with scale (C / H)^-1/2, and the heads'
outputs are concatenated in head order before proj. The parameters are the same as with one head.

The reference values are computed in float64 from the float32 weights and inputs (so they are
exact up to the final rounding to float32). In float64 the reference module's float32 casts
(GroupNorm32's x.float() and the softmax's w.float()) would lose precision, so for that run they
are replaced by the same maths without the casts; the script checks that the patched float64
model and the unpatched float32 model agree. The sinusoidal timestep embedding stays in float32,
as the reference computes it.
"""

import argparse
import json
import math
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CONFIG = dict(in_channels=2, out_channels=3, image_size=8, base_channels=16, channel_mults=(1, 2),
              num_res_blocks=1, attention_resolutions=(4,), num_classes=3, groups=4, dropout=0.0)
BATCH = 3
TIMESTEPS = [0, 17, 999]
LABELS = [0, 2, 3]  # 3 = the null class


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype string, shape, bytes). Format: 8-byte little-endian header
    length, JSON header padded with spaces to a multiple of 8, raw little-endian data."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref-dir", default=str(REPO.parent / "shared" / "ref"),
                    help="folder holding the reference unet.py (default: ../shared/ref from the repo root)")
    ap.add_argument("--out", default=None,
                    help="default: tests/data/golden/unet_small.safetensors, or "
                         "unet_small_heads<H>.safetensors with --heads H > 1")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--heads", type=int, default=1, help="attention heads (default 1: the reference)")
    args = ap.parse_args()
    heads = args.heads
    if args.out is None:
        name = "unet_small.safetensors" if heads == 1 else f"unet_small_heads{heads}.safetensors"
        args.out = str(REPO / "tests" / "data" / "golden" / name)

    sys.path.insert(0, str(Path(args.ref_dir).resolve()))
    import copy

    import numpy as np
    import torch
    import torch.nn as nn
    import unet as ref

    def multi_head_forward(cast):
        def forward(self, inp):
            b, c, hh, ww = inp.shape
            d = c // heads
            q, k, v = self.qkv(self.norm(inp)).reshape(b * heads, 3 * d, hh * ww).split(d, dim=1)
            w = torch.bmm(q.transpose(1, 2), k) * (d ** -0.5)            # (b heads, n_q, n_k)
            w = torch.softmax(w.float() if cast else w, dim=-1).to(v.dtype)
            h = torch.bmm(v, w.transpose(1, 2))                          # (b heads, d, n_q)
            return inp + self.proj(h.reshape(b, c, hh, ww))
        return forward

    if heads > 1:
        ref.AttnBlock.forward = multi_head_forward(cast=True)

    torch.manual_seed(args.seed)
    model = ref.UNet(**CONFIG)

    # randomise every parameter, the zero-initialised ones included, so no gradient vanishes
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name or name.startswith("norm_out"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.25 * torch.randn_like(p))
                else:
                    p.copy_(0.25 * torch.randn_like(p))
            elif name.startswith("class_emb"):
                p.copy_(torch.randn_like(p))
            else:
                weight = dict(model.named_parameters())[name.rsplit(".", 1)[0] + ".weight"]
                fan_in = weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                p.uniform_(-bound, bound)

    x = torch.randn(BATCH, CONFIG["in_channels"], CONFIG["image_size"], CONFIG["image_size"])
    t = torch.tensor(TIMESTEPS, dtype=torch.long)
    y = torch.tensor(LABELS, dtype=torch.long)
    R = torch.randn(BATCH, CONFIG["out_channels"], CONFIG["image_size"], CONFIG["image_size"])

    def run(m, dtype):
        xx = x.to(dtype).clone().requires_grad_(True)
        out = m(xx, t, y)
        (out * R.to(dtype)).sum().backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        return out.detach(), xx.grad.detach(), grads

    # float32, the reference module as it is
    out32, dx32, g32 = run(model, torch.float32)

    # float64: same weights, precision casts removed (same maths)
    def gn_forward(self, inp):
        return nn.GroupNorm.forward(self, inp)

    def attn_forward(self, inp):
        b, c, hh, ww = inp.shape
        q, k, v = self.qkv(self.norm(inp)).reshape(b, 3, c, hh * ww).unbind(1)
        w = torch.bmm(q.transpose(1, 2), k) * (c ** -0.5)
        w = torch.softmax(w, dim=-1)
        h = torch.bmm(v, w.transpose(1, 2))
        return inp + self.proj(h.reshape(b, c, hh, ww))

    model64 = copy.deepcopy(model).double()
    ref.GroupNorm32.forward = gn_forward
    ref.AttnBlock.forward = attn_forward if heads == 1 else multi_head_forward(cast=False)
    model64.time_mlp.register_forward_pre_hook(lambda m, inp: (inp[0].double(),))
    model64.zero_grad(set_to_none=True)
    out64, dx64, g64 = run(model64, torch.float64)

    def rel(a, b):
        return float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30))

    def elem(a, b, floor=0.05):  # the C++ test's metric (tests/support/gradient_check.hpp check_close)
        return float(((a.double() - b).abs() / (b.abs() + floor * b.abs().max())).max())

    worst = max([rel(out32, out64), rel(dx32, dx64)] + [rel(g32[n], g64[n]) for n in g64])
    worst_elem = max([elem(out32, out64), elem(dx32, dx64)] + [elem(g32[n], g64[n]) for n in g64])
    print(f"float32 reference vs float64: worst max-abs-relative difference {worst:.2e}, "
          f"worst element error relative to |value| + 5% of max {worst_elem:.2e}")
    assert worst < 1e-3, "the float64 patch changed the maths"

    temb = ref.timestep_embedding(t, CONFIG["base_channels"])  # float32, as the model computes it

    def f32(a):
        return np.ascontiguousarray(a.detach().to(torch.float32).numpy()).astype("<f4").tobytes()

    def i32(a):
        return np.ascontiguousarray(a.numpy()).astype("<i4").tobytes()

    tensors = []
    names = [n for n, _ in model.named_parameters()]
    for n, p in model.named_parameters():
        tensors.append(("param/" + n, "F32", p.shape, f32(p)))
    for n in names:
        tensors.append(("grad/" + n, "F32", g64[n].shape, f32(g64[n])))
    tensors += [
        ("input/x", "F32", x.shape, f32(x)),
        ("input/t", "I32", t.shape, i32(t)),
        ("input/labels", "I32", y.shape, i32(y)),
        ("input/R", "F32", R.shape, f32(R)),
        ("output/out", "F32", out64.shape, f32(out64)),
        ("output/dx", "F32", dx64.shape, f32(dx64)),
        ("debug/temb", "F32", temb.shape, f32(temb)),
    ]
    cfg = dict(CONFIG)
    if heads > 1:
        cfg["num_heads"] = heads
    cfg["channel_mults"] = list(cfg["channel_mults"])
    cfg["attention_resolutions"] = list(cfg["attention_resolutions"])
    metadata = {
        "config": json.dumps(cfg),
        "param_names": ",".join(names),
        "num_parameters": str(ref.count_params(model)),
        "loss": "sum(out * R)",
        "generator": "tests/golden/make_unet_fixture.py",
        "torch": torch.__version__,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_path, tensors, metadata)
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes, {len(names)} parameters tensors, "
          f"{ref.count_params(model)} parameters)")


if __name__ == "__main__":
    main()
